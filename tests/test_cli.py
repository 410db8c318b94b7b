"""The command line end to end on real data, and its one-line errors."""

import csv
import json
import subprocess
import sys

import pytest

from conftest import DATA, gm
from fake_sss import data_dir_with_sss
from greenmachine.cli import main
from greenmachine.spaces.truth import load_official, load_table

TINY = ["--sample-size", "10", "--population", "6", "--generations", "1", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def evolved(tmp_path_factory, cache_dir, monkeypatch_module):
    out = tmp_path_factory.mktemp("run") / "run"
    with pytest.raises(SystemExit) as exc:
        main(["evolve", "--space", "tss", "--dataset", "cifar10", *TINY, "--out", str(out)])
    assert exc.value.code == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module(cache_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("GREENMACHINE_DATA", str(DATA))
    mp.setenv("GREENMACHINE_CACHE", str(cache_dir))
    yield mp
    mp.undo()


def test_evolve_writes_its_results(evolved):
    proxy = json.loads((evolved / "proxy.json").read_text())
    assert proxy["space"] == "tss" and proxy["dataset"] == "cifar10" and len(proxy["sample_indices"]) == 10
    for name in ("history.csv", "hall_of_fame.json", "checkpoint.json", "evolve.log"):
        assert (evolved / name).is_file()


def test_score_held_out_and_transfer(evolved, tmp_path, capsys, monkeypatch_module):
    out = tmp_path / "scores.csv"
    code, stdout, _ = gm(capsys, "score", evolved / "proxy.json", "--sample-size", 8, "--exclude-evolution-sample",
                         "--out", out, "--quiet")
    assert code == 0
    tau = float(next(line for line in stdout.splitlines() if line.startswith("kendall_tau=")).split("=")[1])
    assert -1 <= tau <= 1 and "spearman_rho=" in stdout
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 8 and {"index", "arch", "score", "accuracy"} <= set(rows[0])
    evo = set(json.loads((evolved / "proxy.json").read_text())["sample_indices"])
    assert not evo & {int(r["index"]) for r in rows}
    assert json.loads((tmp_path / "scores.summary.json").read_text())["architectures"] == 8
    # an --out that would overwrite the proxy file is refused
    shared = tmp_path / "p.summary.json"
    shared.write_text((evolved / "proxy.json").read_text())
    code, _, err = gm(capsys, "score", shared, "--archs", "3,17", "--out", tmp_path / "p.csv")
    assert code == 2 and "overwrite" in err
    code, _, err = gm(capsys, "score", evolved / "proxy.json", "--archs", "3,17", "--out", evolved / "proxy.json")
    assert code == 2 and "overwrite" in err
    # transfer: the same proxy scored on CIFAR-100 and ImageNet16-120 ground truth
    for ds in ("cifar100", "ImageNet16-120"):
        code, stdout, _ = gm(capsys, "score", evolved / "proxy.json", "--dataset", ds, "--archs", "3,17,284", "--quiet")
        assert code == 0 and f"dataset={ds}" in stdout


def test_swap_from_the_command_line(tmp_path, capsys, monkeypatch_module):
    """``evolve --swap`` opens the GP language to SWAP (the classic ``swap`` tree is in generation 0 with
    --seed-baselines, and the config says so); a proxy file that reads ``swap`` scores through ``score``, as the
    ``swap`` baseline ranks the same networks."""
    out = tmp_path / "run"
    code, _, err = gm(capsys, "evolve", "--space", "tss", "--dataset", "ImageNet16-120", "--sample-size", 8,
                      "--population", 8, "--generations", 0, "--batch-size", 16, "--swap", "--seed-baselines",
                      "--out", out, "--quiet")
    assert code == 0, err
    check = json.loads((out / "checkpoint.json").read_text())
    assert ["swap"] in [t for t, _ in check["state"]["population"]]
    assert json.loads((out / "proxy.json").read_text())["config"]["swap"] is True
    tree = tmp_path / "swap.json"
    tree.write_text(json.dumps({"format": "greenmachine-proxy", "format_version": 1, "expression": "swap",
                                "space": "tss", "dataset": "ImageNet16-120", "probe": {"batch_size": 16}}))
    archs = "3,17,284,1000,5000"
    code, stdout, _ = gm(capsys, "score", tree, "--archs", archs, "--quiet")
    assert code == 0
    tau = float(next(line for line in stdout.splitlines() if line.startswith("kendall_tau=")).split("=")[1])
    code, _, _ = gm(capsys, "baselines", "--space", "tss", "--dataset", "ImageNet16-120", "--archs", archs,
                    "--proxies", "swap", "--batch-size", 16, "--out", tmp_path / "b.csv", "--quiet")
    assert code == 0
    (swap,) = json.loads((tmp_path / "b.summary.json").read_text())["proxies"]
    assert swap["name"] == "swap" and swap["valid"] == 5 and swap["kendall_tau"] == pytest.approx(tau, abs=1e-12)


@pytest.mark.parametrize(
    "args,message",
    [
        (["evolve", "--space", "nas101"], "'nas101' is not one of"),
        (["evolve", "--dataset", "mnist"], "'mnist' is not one of"),
        (["evolve", "--sample-size", "99999", "--generations", "0", "--quiet"], "larger than"),
        (["score", "{proxy}", "--archs", "15625"], "outside the tss space"),
        (["score", "{proxy}", "--archs", "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "is not a TSS"),
        (["score", "{proxy}", "--space", "sss", "--archs", "8:8:8:8"], "not an SSS channel string"),
        (["score", "{proxy}", "--sample-size", "20000"], "larger than"),
        (["score", "{bad_json}"], "not valid JSON"),
        (["score", "{foreign}"], "not a greenmachine proxy"),
        (["score", "{evil}"], "unknown primitive"),
        (["score", "{missing}"], "proxy file not found"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(args, message, evolved, tmp_path, capsys, monkeypatch_module):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"tree": "synflow"}))
    evil = json.loads((evolved / "proxy.json").read_text())
    evil["tokens"] = ["__import__('os').system('touch /tmp/pwned')"]
    (tmp_path / "evil.json").write_text(json.dumps(evil))
    paths = {"proxy": evolved / "proxy.json", "bad_json": tmp_path / "bad.json", "foreign": tmp_path / "foreign.json",
             "evil": tmp_path / "evil.json", "missing": tmp_path / "nope.json"}
    args = [a.format(**paths) for a in args]
    if args[0] == "evolve":
        args += ["--out", str(tmp_path / "run")]
    code, _, err = gm(capsys, *args)
    assert code != 0
    lines = err.strip().splitlines()  # progress bars may come first; the error is one line, the last
    assert message in lines[-1] and lines[-1].startswith("error: ")
    assert sum(line.startswith("error") for line in lines) == 1 and "Traceback" not in err


def test_missing_data_files_are_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GREENMACHINE_DATA", str(tmp_path))
    code, _, err = gm(capsys, "evolve", "--out", tmp_path / "r", "--quiet")
    assert code != 0 and "tss-hp200.csv" in err and str(tmp_path) in err
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / "tss-hp200.csv").symlink_to(DATA / "nats" / "tss-hp200.csv")
    code, _, err = gm(capsys, "evolve", "--out", tmp_path / "r", "--generations", "0", "--quiet")
    assert code != 0 and "cifar-10-batches-py" in err
    monkeypatch.delenv("GREENMACHINE_DATA")
    code, _, err = gm(capsys, "evolve", "--quiet")
    assert code != 0 and "GREENMACHINE_DATA" in err


def test_sss_end_to_end_on_an_official_format_directory(tmp_path, capsys, cache_dir, monkeypatch):
    monkeypatch.setenv("GREENMACHINE_CACHE", str(cache_dir))
    data, indices = data_dir_with_sss(tmp_path / "data", DATA, 24)
    official = data / "nats" / "NATS-sss-v1_0-50262-simple"
    run = tmp_path / "sss-run"
    code, stdout, err = gm(capsys, "evolve", "--space", "sss", "--dataset", "cifar10", "--data-dir", data, *TINY,
                           "--out", run)
    assert code == 0, err
    proxy = json.loads((run / "proxy.json").read_text())
    assert proxy["space"] == "sss" and set(proxy["sample_indices"]) <= set(indices)
    code, stdout, err = gm(capsys, "score", run / "proxy.json", "--data-dir", data, "--sample-size", 10,
                           "--exclude-evolution-sample", "--quiet")
    assert code == 0 and "kendall_tau=" in stdout, err
    # the compact export of the same directory gives the same ground truth
    table = tmp_path / "sss-hp90.csv"
    code, stdout, _ = gm(capsys, "truth", "export", "--space", "sss", "--official", official, "--out", table, "--quiet")
    assert code == 0 and "wrote 24" in stdout
    a, b = load_official(official, "sss"), load_table(table, "sss")
    assert all(a.accuracy["cifar10"][i] == pytest.approx(b.accuracy["cifar10"][i]) for i in indices)


def test_console_script_runs_as_a_process(tmp_path):
    """The installed entry point, in a real process: help works, and an error is one line."""
    res = subprocess.run([sys.executable, "-m", "greenmachine", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "evolve" in res.stdout and "score" in res.stdout
    res = subprocess.run([sys.executable, "-m", "greenmachine", "score", str(tmp_path / "x.json")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "not found" in res.stderr
