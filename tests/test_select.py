"""`greenmachine select`: one tree out of several evolution runs, chosen by its Kendall tau on the other runs'
evolution samples under each sample's own probe protocol; the chosen file counts every candidate's sample as seen."""

import csv
import itertools
import json

import numpy as np
import pytest

from conftest import gm
from scipy.stats import kendalltau

from greenmachine.errors import GreenmachineError
from greenmachine.proxies.classic import classic_tokens
from greenmachine.proxies.proxyfile import Proxy, save_proxy
from greenmachine.search.selection import check_candidates

BATCH = 8
# three runs' samples, overlapping (11 and 40 are in two of them) so that a candidate's own networks must be left
# out of another candidate's sample; each run has its own probe seed, as evolve --seed S gives
RUNS = {
    "run-a": ("meco_relu", [1, 11, 40, 284, 500, 777], 0),
    "run-b": ("synflow", [11, 900, 1200, 3000, 4000, 5100], 1),
    "run-c": ("grad_norm", [40, 2222, 6000, 7001, 8123, 9999], 2),
}


_RUN = itertools.count()


def _write_runs(tmp_path) -> dict[str, object]:
    paths = {}
    for name, (classic, sample, seed) in RUNS.items():
        path = tmp_path / name / "proxy.json"
        path.parent.mkdir()
        save_proxy(Proxy(classic_tokens(classic), space="tss", dataset="cifar10", fitness=0.5, sampling="stratified",
                         sample_indices=sample, seed=seed,
                         probe={"batch_size": BATCH, "batch_seed": seed, "init_seed": seed}), path)
        paths[name] = path
    return paths


def _baseline_scores(capsys, tmp_path, paths, archs, probe_seed, dataset="cifar10") -> dict[int, dict[str, float]]:
    """Per network, every candidate's score and the accuracy from `baselines --include`: what the table should rank."""
    out = tmp_path / f"b-{next(_RUN)}.csv"
    args = ["baselines", "--dataset", dataset, "--archs", ",".join(map(str, archs)), "--proxies", "params",
            "--batch-size", BATCH, "--probe-seed", probe_seed, "--quiet", "--out", out]
    for p in paths.values():
        args += ["--include", p]
    code, _, err = gm(capsys, *args)
    assert code == 0, err
    return {int(r["index"]): {k.removeprefix("evolved_"): float(v) for k, v in r.items() if k not in ("index", "arch")}
            for r in csv.DictReader(open(out))}


def _tau(rows: dict[int, dict[str, float]], name: str, archs) -> float:
    return kendalltau([rows[a][name] for a in archs], [rows[a]["accuracy"] for a in archs])[0]


def test_select_scores_every_candidate_on_the_other_samples_and_records_all_as_seen(tmp_path, capsys, env):
    paths = _write_runs(tmp_path)
    code, stdout, err = gm(capsys, "select", *paths.values(), "--out", tmp_path / "best", "--quiet")
    assert code == 0, err
    rows = {r["candidate"]: r for r in csv.DictReader(open(tmp_path / "best" / "selection.csv"))}
    assert list(rows) == list(RUNS)
    names = list(RUNS)
    scored = {other: _baseline_scores(capsys, tmp_path, paths, RUNS[other][1], RUNS[other][2]) for other in names}
    for name in names:
        own = set(RUNS[name][1])
        taus = []
        for other in names:
            archs = RUNS[other][1] if other == name else [a for a in RUNS[other][1] if a not in own]
            assert int(rows[name][f"networks_on_{other}"]) == len(archs)
            assert float(rows[name][f"tau_on_{other}"]) == pytest.approx(_tau(scored[other], name, archs), abs=1e-12)
            if other != name:
                taus.append(float(rows[name][f"tau_on_{other}"]))
        assert float(rows[name]["criterion"]) == pytest.approx(np.mean(taus), abs=1e-12)
    criteria = [float(rows[n]["criterion"]) for n in names]
    chosen = names[int(np.argmax(criteria))]
    assert [n for n in names if rows[n]["chosen"] == "1"] == [chosen]
    assert f"chosen={chosen}" in stdout
    # the taus are not all alike, or choosing shows nothing
    assert len({round(c, 6) for c in criteria}) == 3

    written = json.loads((tmp_path / "best" / "proxy.json").read_text())
    assert written["tokens"] == classic_tokens(RUNS[chosen][0])
    assert written["probe"]["batch_seed"] == RUNS[chosen][2]
    seen = sorted({i for _, sample, _ in RUNS.values() for i in sample})
    assert written["sample_indices"] == seen
    assert written["selection"]["own_sample_indices"] == RUNS[chosen][1]
    assert written["selection"]["chosen"] == chosen
    assert [c["name"] for c in written["selection"]["candidates"]] == names

    # a held-out score of the chosen tree stays outside every candidate's sample
    code, _, _ = gm(capsys, "score", tmp_path / "best" / "proxy.json", "--sample-size", 12,
                    "--exclude-evolution-sample", "--out", tmp_path / "held.csv", "--quiet")
    assert code == 0
    held = {int(r["index"]) for r in csv.DictReader(open(tmp_path / "held.csv"))}
    assert len(held) == 12 and not held & set(seen)


def test_select_validates_on_another_dataset(tmp_path, capsys, env):
    """--dataset ranks the samples by another dataset's accuracy (a choice for transfer), on its own images."""
    paths = _write_runs(tmp_path)
    code, _, err = gm(capsys, "select", paths["run-a"], paths["run-b"], "--dataset", "ImageNet16-120", "--quiet",
                      "--out", tmp_path / "best")
    assert code == 0, err
    rows = {r["candidate"]: r for r in csv.DictReader(open(tmp_path / "best" / "selection.csv"))}
    archs = [a for a in RUNS["run-b"][1] if a not in RUNS["run-a"][1]]
    scored = _baseline_scores(capsys, tmp_path, {"run-a": paths["run-a"]}, RUNS["run-b"][1], 1, "ImageNet16-120")
    assert float(rows["run-a"]["tau_on_run-b"]) == pytest.approx(_tau(scored, "run-a", archs), abs=1e-12)
    assert json.loads((tmp_path / "best" / "proxy.json").read_text())["selection"]["dataset"] == "ImageNet16-120"


def test_select_refuses_what_it_cannot_compare(tmp_path, capsys, env):
    paths = _write_runs(tmp_path)
    other = tmp_path / "c100" / "proxy.json"
    other.parent.mkdir()
    save_proxy(Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar100", sample_indices=[3, 4, 5],
                     probe={"batch_size": BATCH, "batch_seed": 0, "init_seed": 0}), other)
    bare = tmp_path / "bare.json"
    save_proxy(Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10"), bare)
    for args, message in [
        ([paths["run-a"]], "at least two proxy files"),
        ([paths["run-a"], paths["run-a"]], "given twice"),
        ([paths["run-a"], other], "pass --dataset"),
        ([paths["run-a"], bare], "records no evolution sample"),
        ([paths["run-a"], paths["run-b"], "--out", paths["run-a"].parent], "overwrite the input proxy file"),
    ]:
        code, _, err = gm(capsys, "select", *args, "--quiet")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_candidates_from_two_spaces_are_refused():
    tss = Proxy(classic_tokens("meco_relu"), space="tss", dataset="cifar10", sample_indices=[1, 2])
    sss = Proxy(classic_tokens("meco_relu"), space="sss", dataset="cifar10", sample_indices=[1, 2])
    with pytest.raises(GreenmachineError, match="one search space"):
        check_candidates({"a": tss, "b": sss}, None)
