"""`make quality` (issue 12, part 2): the whole pipeline on tiny sizes, its table checked against the run files.

Real data: 2 seeds, population 4, 1 generation, evolution samples of 6, a 6-network held-out sample, batch 8. The
table's numbers are recomputed here from the per-run CSVs (scipy's Kendall tau of the scores against the accuracy),
not read back from what the pipeline printed.
"""

from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest
from scipy.stats import kendalltau

from conftest import gm
from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.proxies.proxyfile import load_proxy
from greenmachine.proxies.scoring import score_tokens
from greenmachine.quality import BASELINES, BASELINES_SUMMARY, DEFAULT_BASELINES, QualityPlan, parse_settings, setting_dir
from greenmachine.search.proxy_gp import ProxyEvolution, run_evolution
from greenmachine.spaces.truth import load_table
from greenmachine.workspace import probe_settings

TINY = ["--seeds", 2, "--heldout", 6, "--population", 4, "--generations", 1, "--sample-size", 6, "--batch-size", 8]


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| setting"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def _fmt(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3f}"


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tau(values, accuracy) -> float:
    return float(kendalltau(np.array(values, dtype=float), np.array(accuracy, dtype=float)).statistic)


def _check_setting(runs, space, dataset, cells, csv_rows):
    folder = setting_dir(runs, space, dataset)
    held = json.loads((folder / "heldout.json").read_text())["indices"]
    assert len(held) == 6
    taus, expressions = [], []
    for k in range(2):
        run = folder / f"seed-{k}"
        proxy = json.loads((run / "proxy.json").read_text())
        assert proxy["seed"] == k and proxy["dataset"] == dataset and proxy["config"]["population"] == 4
        assert not set(held) & set(proxy["sample_indices"])  # disjoint from EVERY seed's evolution sample
        rows = _csv(run / "heldout_scores.csv")
        assert [int(r["index"]) for r in rows] == held  # the same architectures for every seed
        tau = _tau([r["score"] for r in rows], [r["accuracy"] for r in rows])
        summary = json.loads((run / "heldout_scores.summary.json").read_text())
        assert summary["expression"] == proxy["expression"] and math.isclose(summary["kendall_tau"], tau, abs_tol=1e-12)
        assert cells[3 + k] == _fmt(tau)
        taus.append(tau)
        expressions.append(proxy["expression"])
    assert cells[1] == "6"
    assert cells[2] == f"{_fmt(statistics.fmean(taus))} ± {_fmt(statistics.stdev(taus))}"
    base_rows = _csv(folder / BASELINES)
    assert [int(r["index"]) for r in base_rows] == held  # and for the baselines
    for pos, name in enumerate(DEFAULT_BASELINES):
        values = np.array([float(r[name]) for r in base_rows])
        assert np.isfinite(values).all()
        tau = _tau(values, [r["accuracy"] for r in base_rows])
        assert cells[5 + pos] == _fmt(tau), name
        row = next(r for r in csv_rows if r["setting"] == f"{space}/{dataset}" and r["proxy"] == name)
        assert math.isclose(float(row["kendall_tau"]), tau, abs_tol=1e-12)
    assert cells[-1] == "<br>".join(f"{k}: `{e}`" for k, e in enumerate(expressions))
    for k in range(2):
        row = next(r for r in csv_rows if r["setting"] == f"{space}/{dataset}" and r["proxy"] == f"seed-{k}")
        assert row["kind"] == "evolved" and row["expression"] == expressions[k]
        assert math.isclose(float(row["kendall_tau"]), taus[k], abs_tol=1e-12)


def test_quality_pipeline_tiny(tmp_path, env, capsys, data_dir, cache, monkeypatch):
    runs, table = tmp_path / "runs", tmp_path / "results" / "quality.md"
    code, out, err = gm(capsys, "quality", "--settings", "tss/cifar10,sss/cifar100", *TINY, "--out", runs,
                        "--table", table, "--quiet")
    assert code == 0, err
    md = table.read_text()
    rows = _table_rows(md)
    assert list(rows) == ["tss/cifar10", "sss/cifar100"]
    assert md.splitlines()[0].split(" | ")[3:5] == ["seed 0", "seed 1"]
    csv_rows = _csv(table.with_suffix(".csv"))
    assert len(csv_rows) == 2 * (2 + len(DEFAULT_BASELINES))
    _check_setting(runs, "tss", "cifar10", rows["tss/cifar10"], csv_rows)
    _check_setting(runs, "sss", "cifar100", rows["sss/cifar100"], csv_rows)
    assert f"table={table}" in out

    # run again: every step is complete, nothing changes, and no finished evolution is set up (probed) again
    history = (setting_dir(runs, "tss", "cifar10") / "seed-1" / "history.csv").read_text()

    def no_setup(*args, **kwargs):
        raise AssertionError("a finished evolution was set up again")

    with monkeypatch.context() as m:
        m.setattr(ProxyEvolution, "setup", no_setup)
        code, _, err = gm(capsys, "quality", "--settings", "tss/cifar10,sss/cifar100", *TINY, "--out", runs,
                          "--table", table, "--quiet")
        assert code == 0, err
        assert table.read_text() == md
        assert (setting_dir(runs, "tss", "cifar10") / "seed-1" / "history.csv").read_text() == history

    # a run stopped during seed 0's evolution (after generation 0) resumes to the same table row
    stopped = tmp_path / "stopped"
    truth = load_table(data_dir / "nats" / "tss-hp200.csv", "tss")
    config = EvolveConfig(seed=0, population=4, generations=0, sample_size=6, batch_size=8)
    run_evolution(config, truth, data_dir, setting_dir(stopped, "tss", "cifar10") / "seed-0", cache=cache)
    code, _, err = gm(capsys, "quality", "--settings", "tss/cifar10", *TINY, "--out", stopped,
                      "--table", tmp_path / "stopped.md", "--quiet")
    assert code == 0, err
    assert _table_rows((tmp_path / "stopped.md").read_text())["tss/cifar10"] == rows["tss/cifar10"]

    # another held-out size into the same folders is refused, not mixed
    code, _, err = gm(capsys, "quality", "--settings", "tss/cifar10", *TINY[:2], "--heldout", 7, *TINY[4:],
                      "--out", runs, "--table", table, "--quiet")
    assert code == 2 and "another held-out sample" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--settings", "tss/mnist"], "unknown dataset 'mnist'"),
    (["--settings", "tss-cifar10"], "is not SPACE/DATASET"),
    (["--settings", "ecnas-4v/cifar100"], "ground truth for"),
    (["--settings", "nope/cifar10"], "unknown search space"),
    (["--baselines", "params,bogus"], "unknown baseline proxy bogus"),
    (["--heldout", 1], "at least 2"),
    (["--population", 0], "population must be at least 1"),
])
def test_quality_bad_arguments(tmp_path, env, capsys, args, message):
    code, _, err = gm(capsys, "quality", *args, "--out", tmp_path / "runs", "--table", tmp_path / "q.md", "--quiet")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs").exists()


def test_parse_settings_and_plan():
    assert parse_settings("tss/cifar10, sss/cifar100 tss/ImageNet16-120") == (
        ("tss", "cifar10"), ("sss", "cifar100"), ("tss", "ImageNet16-120"))
    plan = QualityPlan().validate()
    assert [f"{s}/{d}" for s, d in plan.settings] == ["tss/cifar10", "tss/cifar100", "tss/ImageNet16-120",
                                                      "sss/cifar10", "sss/cifar100"]
    assert plan.seeds == 3 and plan.heldout == 2000 and plan.baselines == ("params", "synflow", "naswot", "meco")
    with pytest.raises(GreenmachineError, match="twice"):
        QualityPlan(settings=(("tss", "cifar10"), ("tss", "cifar10"))).validate()
    assert plan.evolve_config("tss", "cifar10", 0).sampling == "stratified"  # the package default
    random_plan = QualityPlan(overrides={"sampling": "random"}).validate()
    assert {random_plan.evolve_config(s, d, 1).sampling for s, d in random_plan.settings} == {"random"}


def test_quality_sampling_option_reaches_every_evolution(tmp_path, env, capsys, monkeypatch):
    """--sampling overrides the config for every setting and seed (and bad values are one-line errors)."""
    import greenmachine.quality as quality_module

    seen = {}

    def fake_run(plan, *args, **kwargs):
        seen["configs"] = [plan.evolve_config(s, d, k) for s, d in plan.settings for k in range(plan.seeds)]
        raise GreenmachineError("stop here")

    monkeypatch.setattr(quality_module, "run_quality", fake_run)
    code, _, err = gm(capsys, "quality", "--settings", "tss/cifar10,sss/cifar100", "--sampling", "random",
                      "--out", tmp_path / "runs", "--table", tmp_path / "q.md", "--quiet")
    assert code == 2 and "stop here" in err
    assert len(seen["configs"]) == 6 and {c.sampling for c in seen["configs"]} == {"random"}
    code, _, err = gm(capsys, "quality", "--sampling", "uniform", "--out", tmp_path / "runs", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "uniform" in err


def test_quality_transfer_tables_and_inits_tiny(tmp_path, env, capsys, data_dir, cache):
    """Two datasets of one space: every seed's proxy is scored on the other dataset's held-out sample (its own
    evolution sample left out), and the transfer table's cells are recomputed from those CSVs; then the same
    folders again with --inits."""
    runs, table = tmp_path / "runs", tmp_path / "q.md"
    code, _, err = gm(capsys, "quality", "--settings", "tss/cifar10,tss/cifar100", *TINY, "--baselines", "params",
                      "--out", runs, "--table", table, "--quiet")
    assert code == 0, err
    md = table.read_text()
    rows = _table_rows(md)
    cells = {}
    for source, target in (("cifar10", "cifar100"), ("cifar100", "cifar10")):
        held = json.loads((setting_dir(runs, "tss", target) / "heldout.json").read_text())["indices"]
        taus = []
        for k in range(2):
            proxy = json.loads((setting_dir(runs, "tss", source) / f"seed-{k}" / "proxy.json").read_text())
            scored = _csv(setting_dir(runs, "tss", target) / "transfer" / f"from-{source}-seed-{k}.csv")
            assert [int(r["index"]) for r in scored] == [i for i in held if i not in proxy["sample_indices"]]
            taus.append(_tau([r["score"] for r in scored], [r["accuracy"] for r in scored]))
        cells[(source, target)] = f"{_fmt(statistics.fmean(taus))} ± {_fmt(statistics.stdev(taus))}"
    transfer = [line for line in md.splitlines() if line.startswith("| cifar10 |") or line.startswith("| cifar100 |")]
    assert transfer == [
        f"| cifar10 | **{rows['tss/cifar10'][2]}** | {cells[('cifar10', 'cifar100')]} |",
        f"| cifar100 | {cells[('cifar100', 'cifar10')]} | **{rows['tss/cifar100'][2]}** |",
    ]
    kinds = [(r["kind"], r["evolved_on"], r["dataset"]) for r in _csv(table.with_suffix(".csv"))]
    assert kinds.count(("transfer", "cifar10", "cifar100")) == 2 and kinds.count(("transfer", "cifar100", "cifar10")) == 2
    code, _, err = gm(capsys, "quality", "--settings", "tss/cifar10,tss/cifar100", *TINY, "--baselines", "params",
                      "--no-transfer", "--out", runs, "--table", table, "--quiet")
    assert code == 0, err
    assert "Transfer" not in table.read_text() and "| cifar10 |" not in table.read_text()
    # --inits N into the finished folders: the evolutions stay, every held-out, baseline and transfer step is
    # scored again as the mean over N initialisations (checked against a single-initialisation score at the next
    # probe seed), each summary records N, the table says so, and a second call finds every step done
    args = ["quality", "--settings", "tss/cifar10,tss/cifar100", *TINY, "--baselines", "params", "--out", runs,
            "--table", table, "--quiet"]
    run = setting_dir(runs, "tss", "cifar10") / "seed-0"
    history = (run / "history.csv").read_text()
    single = [float(r["score"]) for r in _csv(run / "heldout_scores.csv")]
    code, _, err = gm(capsys, *args, "--inits", 2)
    assert code == 0, err
    assert (run / "history.csv").read_text() == history
    held = json.loads((setting_dir(runs, "tss", "cifar10") / "heldout.json").read_text())["indices"]
    proxy = load_proxy(run / "proxy.json")
    truth = load_table(data_dir / "nats" / "tss-hp200.csv", "tss")
    second_init = probe_settings("tss", "cifar10", 8, 1, "cpu", data_dir=data_dir)
    second = score_tokens(proxy.tokens, truth, "cifar10", held, second_init, data_dir, cache=cache).scores
    averaged = [float(r["score"]) for r in _csv(run / "heldout_scores.csv")]
    np.testing.assert_allclose(averaged, (np.array(single) + second) / 2, rtol=1e-12)
    for summary in (run / "heldout_scores.summary.json", setting_dir(runs, "tss", "cifar10") / BASELINES_SUMMARY,
                    setting_dir(runs, "tss", "cifar100") / "transfer" / "from-cifar10-seed-1.summary.json"):
        assert json.loads(summary.read_text())["inits"] == 2, summary
    md = table.read_text()
    assert "mean over 2 initialisations and minibatches (probe seeds 0..1)" in md
    mtimes = {p: p.stat().st_mtime_ns for p in runs.rglob("*.csv")}
    code, _, err = gm(capsys, *args, "--inits", 2)
    assert code == 0, err
    assert table.read_text() == md and {p: p.stat().st_mtime_ns for p in runs.rglob("*.csv")} == mtimes
    code, _, err = gm(capsys, *args, "--inits", 0)
    assert code == 2 and "--inits" in err and err.count("\n") == 1
    # --spectrum-images K into the same folders: every evolved held-out and transfer step is scored again with the
    # spectra of K images (each summary records K, the table says so); the baselines do not read it and stay
    baselines_csv = setting_dir(runs, "tss", "cifar10") / "baselines.csv"
    kept = baselines_csv.stat().st_mtime_ns
    code, _, err = gm(capsys, *args, "--inits", 2, "--spectrum-images", 2)
    assert code == 0, err
    assert baselines_csv.stat().st_mtime_ns == kept
    for summary in (run / "heldout_scores.summary.json",
                    setting_dir(runs, "tss", "cifar100") / "transfer" / "from-cifar10-seed-1.summary.json"):
        assert json.loads(summary.read_text())["spectrum_images"] == 2, summary
    assert "mean over the first 2 images of the minibatch" in table.read_text()


def test_quality_select_tiny(tmp_path, env, capsys, monkeypatch):
    """--select 2: each seed's proxy is the tree `select` chose among two evolutions (seeds 2k, 2k+1); it counts both
    samples as seen, so the held-out sample avoids all four; a second call chooses nothing again."""
    import greenmachine.search.selection as selection_module

    runs, table = tmp_path / "runs", tmp_path / "q.md"
    args = ["quality", "--settings", "tss/cifar10", *TINY, "--select", 2, "--baselines", "params", "--no-transfer",
            "--out", runs, "--table", table, "--quiet"]
    code, _, err = gm(capsys, *args)
    assert code == 0, err
    folder = setting_dir(runs, "tss", "cifar10")
    held = set(json.loads((folder / "heldout.json").read_text())["indices"])
    for k in range(2):
        candidates = {f"run-{m}": load_proxy(folder / f"seed-{k}" / f"run-{m}" / "proxy.json") for m in range(2)}
        assert [c.seed for c in candidates.values()] == [2 * k, 2 * k + 1]
        rows = _csv(folder / f"seed-{k}" / "selection.csv")
        chosen = max(rows, key=lambda r: float(r["criterion"]))["candidate"]  # the first of equal maxima
        assert [r["candidate"] for r in rows if r["chosen"] == "1"] == [chosen]
        proxy = load_proxy(folder / f"seed-{k}" / "proxy.json")
        assert proxy.tokens == candidates[chosen].tokens and proxy.seed == candidates[chosen].seed
        seen = {i for c in candidates.values() for i in c.sample_indices}
        assert set(proxy.sample_indices) == seen and not seen & held
        scores = _csv(folder / f"seed-{k}" / "heldout_scores.csv")
        assert {int(r["index"]) for r in scores} == held

    def no_selection(*a, **kw):
        raise AssertionError("a finished selection was made again")

    monkeypatch.setattr(selection_module, "select_proxy", no_selection)
    md = table.read_text()
    code, _, err = gm(capsys, *args)
    assert code == 0, err
    assert table.read_text() == md
    assert "tree `select` chose among 2 evolutions" in md
    code, _, err = gm(capsys, "quality", "--select", 0, "--out", tmp_path / "x", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "--select" in err


def test_quality_select_refuses_a_folder_of_single_runs(tmp_path, env, capsys):
    runs = tmp_path / "runs"
    base = ["quality", "--settings", "tss/cifar10", "--seeds", 1, *TINY[2:], "--baselines", "params",
            "--no-transfer", "--out", runs, "--table", tmp_path / "q.md", "--quiet"]
    code, _, err = gm(capsys, *base)
    assert code == 0, err
    code, _, err = gm(capsys, *base, "--select", 2)
    assert code == 2 and err.count("\n") == 1 and "holds a single evolution" in err
