"""The search engine's guarantees for a new user (issue 13): the simplest best tree, a resumable run from the very
start, no empty folder after a failed start, and totals that add up over the parts of a resumed run."""

import csv
import json

import pytest

import greenmachine.search.proxy_gp as proxy_gp
from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.proxies.proxyfile import load_proxy
from greenmachine.search.engine import CHECKPOINT, RunTotals
from greenmachine.search.proxy_gp import ParsimonyHallOfFame, run_evolution

TINY = EvolveConfig(sample_size=12, population=10, generations=3, batch_size=16, max_height=6, init_max_depth=4,
                    strata=4, seed=7)
SMALL = ["k_logdet_sum", "relu_kernel"]
BLOATED = ["mul", "c_two", "mul", "k_logdet_sum", "relu_kernel", "c_ten"]  # the same ranking, rescaled by 20


class _Fit:
    def __init__(self, v):
        self.values = (v,)
        self.valid = True


class _Ind(list):
    def __init__(self, tokens, fit):
        super().__init__(tokens)
        self.fitness = _Fit(fit)


def test_parsimony_orders_equal_fitness_by_size(monkeypatch):
    monkeypatch.setattr(proxy_gp, "tree_tokens", lambda ind: list(ind))
    hof = ParsimonyHallOfFame(3, tolerance=1e-6)
    hof.update([_Ind(BLOATED, 0.5), _Ind(SMALL, 0.5 - 1e-7), _Ind(["a", "b", "c"], 0.4)])
    assert hof[0][0] == SMALL  # within the tolerance, the smaller wins although its fitness is a hair lower
    assert hof[1][0] == BLOATED
    hof.update([_Ind(["x"], 0.45)])  # better than 0.4 by more than the tolerance: fitness decides
    assert [t for t, _ in hof.items] == [SMALL, BLOATED, ["x"]]
    strict = ParsimonyHallOfFame(2, tolerance=0.0)
    strict.update([_Ind(BLOATED, 0.5), _Ind(SMALL, 0.5 - 1e-7)])
    assert strict[0][0] == BLOATED


def test_simplest_best_tree_named_everywhere(tmp_path, data_dir, tss_truth, cache, monkeypatch):
    """Two trees with the same tau (one a rescaling of the other): proxy.json, hall_of_fame.json and history.csv
    all name the smaller one."""
    real = proxy_gp.make_toolbox

    def toolbox(config, fitness, executor):
        tb = real(config, fitness, executor)
        tb.register("population", lambda n: [proxy_gp._individual(BLOATED), proxy_gp._individual(SMALL)])
        return tb

    monkeypatch.setattr(proxy_gp, "make_toolbox", toolbox)
    res = run_evolution(TINY.override(generations=0, population=2), tss_truth, data_dir, tmp_path / "p", cache=cache)
    fits = {" ".join(t): f for t, f in res.hall_of_fame}
    assert fits[" ".join(SMALL)] == fits[" ".join(BLOATED)]  # truly the same tau
    assert res.best_tokens == SMALL
    assert load_proxy(tmp_path / "p" / "proxy.json").tokens == SMALL
    hof = json.loads((tmp_path / "p" / "hall_of_fame.json").read_text())
    assert hof[0]["tokens"] == SMALL and hof[0]["size"] == 2
    rows = list(csv.DictReader(open(tmp_path / "p" / "history.csv")))
    assert rows[-1]["best_expression"] == "k_logdet_sum(relu_kernel)" and rows[-1]["best_size"] == "2"


def test_interrupt_before_first_checkpoint_then_resume(tmp_path, data_dir, tss_truth, cache, monkeypatch):
    """Ctrl-C during probing leaves a checkpoint that --resume accepts; the resumed run equals a straight one."""
    straight = run_evolution(TINY, tss_truth, data_dir, tmp_path / "straight", cache=cache)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(proxy_gp, "probe_sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_evolution(TINY, tss_truth, data_dir, tmp_path / "run", cache=cache)
    check = json.loads((tmp_path / "run" / CHECKPOINT).read_text())
    assert check["generation"] == -1 and check["state"] is None
    monkeypatch.undo()
    with pytest.raises(GreenmachineError, match="pass --resume"):
        run_evolution(TINY, tss_truth, data_dir, tmp_path / "run", cache=cache)
    resumed = run_evolution(TINY, tss_truth, data_dir, tmp_path / "run", cache=cache, resume=True)
    assert resumed.best_tokens == straight.best_tokens
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)


def test_resume_from_cli_after_interrupt(tmp_path, env, data_dir, tss_truth, cache, monkeypatch):
    """The command the interrupt message suggests (the same command plus --resume) works."""
    import subprocess
    import sys

    monkeypatch.setattr(proxy_gp, "probe_sample", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    out = tmp_path / "cli"
    config = TINY.override(generations=1)
    with pytest.raises(KeyboardInterrupt):
        run_evolution(config, tss_truth, data_dir, out, cache=cache)
    args = [sys.executable, "-m", "greenmachine", "evolve", "--sample-size", "12", "--population", "10",
            "--generations", "1", "--batch-size", "16", "--seed", "7", "--out", str(out), "--quiet", "--resume"]
    tiny_toml = tmp_path / "tiny.toml"
    tiny_toml.write_text("max_height = 6\ninit_max_depth = 4\nstrata = 4\n")
    res = subprocess.run(args + ["--config", str(tiny_toml)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert len(list(csv.DictReader(open(out / "history.csv")))) == 2


def test_failed_start_leaves_no_folder(tmp_path, data_dir, tss_truth, cache, monkeypatch):
    out = tmp_path / "never"
    with pytest.raises(GreenmachineError):  # a sample larger than the space: refused before the folder exists
        run_evolution(TINY.override(sample_size=20000), tss_truth, data_dir, out, cache=cache)
    assert not out.exists()

    def broken(*args, **kwargs):  # a user error during the setup (e.g. the images missing)
        raise GreenmachineError("probe images not found")

    monkeypatch.setattr(proxy_gp, "probe_sample", broken)
    with pytest.raises(GreenmachineError, match="probe images"):
        run_evolution(TINY, tss_truth, data_dir, out, cache=cache)
    assert not out.exists()
    monkeypatch.undo()
    run_evolution(TINY.override(generations=0), tss_truth, data_dir, out, cache=cache)  # the next attempt just runs
    assert (out / "proxy.json").is_file()


def test_resumed_summary_adds_up_both_parts(tmp_path, data_dir, tss_truth, cache):
    first = run_evolution(TINY.override(generations=1), tss_truth, data_dir, tmp_path / "r", cache=cache)
    second = run_evolution(TINY, tss_truth, data_dir, tmp_path / "r", cache=cache, resume=True)
    assert [r["generation"] for r in second.history] == [0, 1, 2, 3]
    assert second.evaluations == sum(int(r["evaluations"]) for r in second.history)
    assert second.evaluations > first.evaluations
    assert second.seconds > first.seconds  # the first part's time is counted
    assert second.probe_seconds >= first.probe_seconds
    assert second.extra["parts"] == 2
    totals = RunTotals.from_json(json.loads((tmp_path / "r" / CHECKPOINT).read_text())["totals"], "t")
    assert totals.parts == 2 and totals.seconds == pytest.approx(second.seconds, rel=0.2)


def test_meter_joules_in_history(tmp_path, data_dir, tss_truth, cache):
    from greenmachine.energy.meter import EstimateMeter

    clock = iter(range(1000))  # a CPU clock that advances one second per reading: 12 J per reading
    meter = EstimateMeter(12.0, process_time=lambda: float(next(clock)))
    res = run_evolution(TINY.override(generations=2), tss_truth, data_dir, tmp_path / "m", cache=cache, meter=meter)
    rows = list(csv.DictReader(open(tmp_path / "m" / "history.csv")))
    joules = [float(r["joules"]) for r in rows]
    assert joules == sorted(joules) and joules[0] > 0 and joules[-1] > joules[0]  # cumulative
    assert res.extra["joules"] >= joules[-1]


def test_progress_lines_land_in_the_run_log(tmp_path, data_dir, tss_truth, cache):
    """A run nobody watches (quiet, not a terminal) still records its progress in evolve.log, and the log is
    detached from the reporter when the run ends."""
    from greenmachine.ui import Reporter

    reporter = Reporter(quiet=True, plain=True, every=1)
    run_evolution(TINY, tss_truth, data_dir, tmp_path / "log", cache=cache, reporter=reporter)
    text = (tmp_path / "log" / "evolve.log").read_text()
    assert "evolving: 4/4" in text and "generation 3:" in text
    assert reporter._logs == []
