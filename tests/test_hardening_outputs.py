"""Results never lost or overwritten: unique temporary names, --out twins that never collide with each other or with
an input proxy, and an unwritable --out refused before any work starts (CLI via ``main([...])``, exit code 2, one
``error:`` line)."""

from __future__ import annotations

import json
import threading

import pytest

from conftest import DATA, gm
from greenmachine import files

PROXY = {"format": "greenmachine-proxy", "format_version": 1, "expression": "k_logdet_sum(relu_kernel)",
         "space": "tss", "dataset": "cifar10", "probe": {"batch_size": 8, "batch_seed": 0, "init_seed": 0}}
CHEAP = ["--archs", "3,17", "--quiet"]


def one_error_line(err: str, *parts: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], err
    for part in parts:
        assert part in lines[0], (part, lines[0])


@pytest.fixture()
def no_work(monkeypatch):
    """Fail loudly if a command gets as far as reading the ground truth (the first step of any real work)."""
    import greenmachine.workspace as workspace

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(workspace, "load_space_truth", forbidden)


# ---- temporary files get unique names ---------------------------------------------------------------------------


def test_two_writers_of_one_result_file_do_not_share_a_temporary_file(tmp_path):
    """Interleaved writers (two runs writing the same summary): each file is whole, the last one closed wins."""
    target = tmp_path / "out" / "table.summary.json"
    a_text, b_text = json.dumps({"writer": "a", "rows": list(range(3000))}), json.dumps({"writer": "b"})
    with files.atomic_open(target) as a:
        a.write(a_text[:100])
        with files.atomic_open(target) as b:
            b.write(b_text)
        a.write(a_text[100:])
    assert target.read_text() == a_text
    assert [p.name for p in target.parent.iterdir()] == ["table.summary.json"]  # no temporary file left behind
    # a writer killed mid-write leaves the previous file whole and no temporary file
    with pytest.raises(RuntimeError):
        with files.atomic_open(target) as f:
            f.write("{half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == a_text
    assert [p.name for p in target.parent.iterdir()] == ["table.summary.json"]


def test_concurrent_atomic_writes_are_never_mixed(tmp_path):
    target = tmp_path / "scores.csv"
    texts = [f"{i}\n" * 20000 for i in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(texts))

    def write(text):
        try:
            barrier.wait()
            for _ in range(10):
                files.write_text_atomic(target, text)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


# ---- baselines --out never overwrites its twins or an input proxy ------------------------------------------------


@pytest.mark.parametrize(
    "out_name,include_name,message",
    [
        ("table.png", "p.json", "same file"),  # the CSV would be overwritten by the PNG
        ("p.csv", "p.summary.json", "overwrite the input proxy file"),  # the summary would replace the proxy
        ("p.csv", "p.png", "overwrite the input proxy file"),  # the figure would replace the proxy
        ("p.json", "p.json", "overwrite the input proxy file"),  # the CSV would replace the proxy
    ],
)
def test_baselines_out_never_overwrites_twins_or_inputs(tmp_path, capsys, env, no_work, out_name, include_name,
                                                         message):
    include = tmp_path / include_name
    include.write_text(json.dumps(PROXY))
    before = include.read_bytes()
    code, _, err = gm(capsys, "baselines", "--proxies", "params", "--batch-size", 8, "--include", include,
                      "--out", tmp_path / out_name, *CHEAP)
    assert code == 2
    one_error_line(err, message)
    assert include.read_bytes() == before


def test_baselines_out_through_a_link_to_the_proxy_is_refused(tmp_path, capsys, env):
    proxy = tmp_path / "evolved.json"
    proxy.write_text(json.dumps(PROXY))
    (tmp_path / "link.summary.json").symlink_to(proxy)
    code, _, err = gm(capsys, "baselines", "--proxies", "params", "--include", proxy, "--out", tmp_path / "link.csv",
                      *CHEAP)
    assert code == 2
    one_error_line(err, "overwrite the input proxy file")
    assert json.loads(proxy.read_text()) == PROXY
    # the checks refuse only what would fail or overwrite: a plain --out writes its CSV, summary and figure
    out = tmp_path / "new" / "table.csv"
    code, stdout, err = gm(capsys, "baselines", "--proxies", "params", "--batch-size", 8, "--include", proxy,
                           "--out", out, "--data-dir", DATA, *CHEAP)
    assert code == 0, err
    assert out.is_file() and out.with_name("table.summary.json").is_file()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


# ---- an unwritable --out is refused before any probing starts --------------------------------------------------


@pytest.mark.parametrize("command", ["score", "baselines", "evolve"])
def test_unwritable_out_is_refused_before_work(tmp_path, capsys, env, no_work, command):
    proxy = tmp_path / "p.json"
    proxy.write_text(json.dumps(PROXY))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    if command == "score":
        args = ["score", proxy, "--out", blocker / "scores.csv", *CHEAP]
    elif command == "baselines":
        args = ["baselines", "--proxies", "params", "--out", blocker / "table.csv", *CHEAP]
    else:
        args = ["evolve", "--out", blocker / "run", "--generations", "0", "--sample-size", 4, "--quiet"]
    code, _, err = gm(capsys, *args)
    assert code == 2
    one_error_line(err, str(blocker))
    assert blocker.read_text() == "not a folder\n"


def test_score_out_that_is_a_folder_is_refused_before_work(tmp_path, capsys, env, no_work):
    proxy = tmp_path / "p.json"
    proxy.write_text(json.dumps(PROXY))
    (tmp_path / "scores.summary.json").mkdir()
    code, _, err = gm(capsys, "score", proxy, "--out", tmp_path / "scores.csv", *CHEAP)
    assert code == 2
    one_error_line(err, "scores.summary.json", "folder")


def test_unwritable_cache_dir_is_refused_before_probing(tmp_path, capsys, env, monkeypatch):
    import greenmachine.probing.cache as cache_module

    def forbidden(*args, **kwargs):
        raise AssertionError("probing started before --cache-dir was checked")

    monkeypatch.setattr(cache_module, "probe_network", forbidden)
    proxy = tmp_path / "p.json"
    proxy.write_text(json.dumps(PROXY))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    code, _, err = gm(capsys, "score", proxy, "--cache-dir", blocker / "cache", *CHEAP)
    assert code == 2
    one_error_line(err, str(blocker))
