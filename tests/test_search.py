"""Multi-objective architecture search: NSGA-II against a brute-force front, hypervolume by hand, exact resume,
one-line errors for bad inputs, and a real (small) run through the command line."""

import csv
import itertools
import json
import random

import numpy as np
import pytest

import greenmachine.search.architecture as arch
from greenmachine.cli import main
from greenmachine.errors import GreenmachineError
from greenmachine.search.architecture import (
    SearchConfig, hypervolume, knee_index, nondominated, parse_seeds, run_search, run_seeds,
)
from greenmachine.spaces.truth import GroundTruth

GENES, VALUES = 4, 4  # a 256-architecture space: small enough to enumerate


class FakeSpace:
    """The operator interface of a space (random_arch, mutate, crossover), over strings like '0-3-1-2'."""

    name = "fake"

    def random_arch(self, rng):
        return "-".join(str(rng.randrange(VALUES)) for _ in range(GENES))

    def mutate(self, a, rng):
        g = a.split("-")
        k = rng.randrange(GENES)
        g[k] = str(rng.choice([v for v in range(VALUES) if str(v) != g[k]]))
        return "-".join(g)

    def crossover(self, a, b, rng):
        x, y = a.split("-"), b.split("-")
        cut = rng.randrange(1, GENES)
        return "-".join(x[:cut] + y[cut:]), "-".join(y[:cut] + x[cut:])


class FakeTruth(GroundTruth):
    def index_of(self, a):
        if a not in self._index:
            raise GreenmachineError(f"{a!r} is not in the fake space")
        return self._index[a]


def fake_truth(seed=0):
    archs = ["-".join(map(str, g)) for g in itertools.product(range(VALUES), repeat=GENES)]
    rng = np.random.default_rng(seed)
    genes = np.array([[int(x) for x in a.split("-")] for a in archs])
    # accuracy rises with the genes (with noise); training time rises with them too: a real trade-off
    acc = 60 + 8 * genes.sum(1) ** 0.7 + rng.normal(0, 1.5, len(archs))
    secs = 5 + 3 * genes.sum(1) + rng.uniform(0, 4, len(archs))
    return FakeTruth("fake", "200", archs, {"cifar10": acc}, {"cifar10": secs}, source="fake")


def config(**kw):
    base = dict(space="fake", dataset="cifar10", objective="accuracy", cost="train-energy", budget=64, population=16,
                seed=3)
    return SearchConfig(**{**base, **kw})


def test_nondominated_matches_brute_force():
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.integers(0, 20, 300), rng.integers(0, 20, 300)]).astype(float)
    brute = np.array([not any(q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1]) for q in pts)
                      for p in pts])
    assert (nondominated(pts) == brute).all()


def test_hypervolume_by_hand():
    # maximise x, minimise y, ref (70, 2): boxes 20x1 and 10x2 overlapping in 10x1 -> 30
    assert hypervolume(np.array([[90.0, 1.0], [80.0, 0.0]]), (70.0, 2.0)) == pytest.approx(30.0)
    # a point beyond the reference adds nothing; a dominated point adds nothing
    assert hypervolume(np.array([[90.0, 1.0], [80.0, 0.0], [60.0, -5.0], [85.0, 1.5]]), (70.0, 2.0)) == \
        pytest.approx(30.0)
    assert hypervolume(np.zeros((0, 2)), (70.0, 2.0)) == 0.0
    # the knee: normalised, (88, 0.3) lies 0.35 beyond the line from (90, 1) to (80, 0), towards the ideal point
    assert knee_index(np.array([[90.0, 1.0], [88.0, 0.3], [80.0, 0.0]]), (70.0, 2.0)) == 1
    # on a straight front the largest hypervolume contribution decides: A 5x1 = 5, B 5x0.5, C 10x0.5 = 5 (first)
    assert knee_index(np.array([[90.0, 1.0], [85.0, 0.5], [80.0, 0.0]]), (70.0, 2.0)) == 0
    assert knee_index(np.array([[60.0, 1.0]]), (70.0, 2.0)) is None


def test_nsga2_front_against_brute_force(tmp_path):
    truth = fake_truth()
    res = run_search(config(budget=96), truth, tmp_path, tmp_path / "s", space_ops=FakeSpace())
    s = res.summary
    assert s["evaluated"] == 96
    rows = list(csv.DictReader(open(tmp_path / "s" / "evaluated.csv")))
    ev = [int(r["index"]) for r in rows]
    assert len(set(ev)) == 96
    # the found front is exactly the brute-force non-dominated set of what was evaluated (accuracy up, cost down)
    acc, cost = truth.accuracy["cifar10"], truth.train_seconds_per_epoch["cifar10"]
    brute = {i for i in ev if not any(acc[j] >= acc[i] and cost[j] <= cost[i] and (acc[j] > acc[i] or cost[j] < cost[i])
                                      for j in ev)}
    front = {int(r["index"]) for r in csv.DictReader(open(tmp_path / "s" / "front.csv"))}
    assert front == brute
    # the true front is the brute force over the whole space
    whole = range(len(truth.archs))
    true_front = {i for i in whole if not any(acc[j] >= acc[i] and cost[j] <= cost[i] and (acc[j] > acc[i] or cost[j] < cost[i])
                                              for j in whole)}
    assert set(res.judgement.true_front) == true_front
    # 96 of 256 architectures, driven by the oracle: most of the true front's hypervolume is found
    assert 0.9 <= s["hv_ratio"] <= 1.0
    ref = s["reference_point"]
    assert ref["accuracy"] == pytest.approx(float(np.median(acc)))
    assert ref["log10_cost"] == pytest.approx(float(np.log10(cost * 200 * 250 / 3.6e6).max()))
    assert s["knee"]["index"] in front and s["cost_saved_at_knee"]["fraction"] >= 0
    assert (tmp_path / "s" / "front.png").stat().st_size > 10_000


def test_nsga2_beats_random_search_on_the_same_budget(tmp_path):
    truth = fake_truth()
    nsga = [run_search(config(budget=48, seed=s), truth, tmp_path, tmp_path / f"n{s}", space_ops=FakeSpace())
            .summary["hv_ratio"] for s in range(3)]
    rand = [run_search(config(budget=48, seed=s, algorithm="random"), truth, tmp_path, tmp_path / f"r{s}",
                       space_ops=FakeSpace()).summary["hv_ratio"] for s in range(3)]
    assert np.mean(nsga) > np.mean(rand)


def test_resume_continues_exactly(tmp_path, monkeypatch):
    truth = fake_truth()
    straight = run_search(config(budget=80), truth, tmp_path, tmp_path / "straight", space_ops=FakeSpace())
    real_step = arch.ArchitectureSearch.step

    def stop_at_3(self, generation):
        if generation == 3:
            raise KeyboardInterrupt
        return real_step(self, generation)

    monkeypatch.setattr(arch.ArchitectureSearch, "step", stop_at_3)
    with pytest.raises(KeyboardInterrupt):
        run_search(config(budget=80), truth, tmp_path, tmp_path / "stopped", space_ops=FakeSpace())
    monkeypatch.undo()
    assert json.loads((tmp_path / "stopped" / "checkpoint.json").read_text())["generation"] == 2
    resumed = run_search(config(budget=80), truth, tmp_path, tmp_path / "stopped", space_ops=FakeSpace(), resume=True)
    read = lambda p: (p / "evaluated.csv").read_text()  # noqa: E731
    assert read(tmp_path / "stopped") == read(tmp_path / "straight")
    assert (tmp_path / "stopped" / "front.csv").read_text() == (tmp_path / "straight" / "front.csv").read_text()
    assert resumed.summary["hv_ratio"] == straight.summary["hv_ratio"]
    assert resumed.summary["parts"] == 2


def test_forged_search_checkpoint_refused(tmp_path):
    truth = fake_truth()
    run_search(config(budget=32), truth, tmp_path, tmp_path / "s", space_ops=FakeSpace())
    path = tmp_path / "s" / "checkpoint.json"
    data = json.loads(path.read_text())
    data["state"]["scores"][0][1] = 99.0  # the oracle's score is the truth: a forged one cannot pass
    path.write_text(json.dumps(data))
    with pytest.raises(GreenmachineError, match="forged"):
        run_search(config(budget=32), truth, tmp_path, tmp_path / "s", space_ops=FakeSpace(), resume=True)


def test_seeds_mean_and_std(tmp_path):
    truth = fake_truth()
    summary = run_seeds(config(budget=32), [0, 1, 2], truth, tmp_path, tmp_path / "m", space_ops=FakeSpace())
    hv = [r["hv_ratio"] for r in summary["per_seed"]]
    assert summary["mean"]["hv_ratio"] == pytest.approx(np.mean(hv))
    assert summary["std"]["hv_ratio"] == pytest.approx(np.std(hv, ddof=1))
    rows = list(csv.DictReader(open(tmp_path / "m" / "seeds.csv")))
    assert [r["seed"] for r in rows] == ["0", "1", "2", "mean", "std"]


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("1,5") == [1, 5]
    for bad in ("4-0", "x", "", "1,1", "-3"):
        with pytest.raises(GreenmachineError):
            parse_seeds(bad)


def test_budget_larger_than_space_refused(tmp_path):
    with pytest.raises(GreenmachineError, match="larger than the space"):
        run_search(config(budget=257), fake_truth(), tmp_path, tmp_path / "b", space_ops=FakeSpace())
    assert not (tmp_path / "b").exists()


def _cli_error(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return exit_.value.code, err


@pytest.mark.parametrize("args, needle", [
    (["--cost", "latency:no_such_device"], "no such column"),
    (["--cost", "watts"], "unknown --cost"),
    (["--budget", "20000"], "larger than the space"),
    (["--objective", "no_such_proxy"], "neither a proxy.json"),
    (["--population", "10"], "multiple of 4"),
])
def test_bad_inputs_one_line_exit_2(args, needle, capsys, env, tmp_path):
    base = ["search", "--space", "tss", "--dataset", "cifar10", "--objective", "accuracy", "--out",
            str(tmp_path / "bad"), "--quiet"]
    code, err = _cli_error(capsys, base + args)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not (tmp_path / "bad").exists()


def test_proxy_of_another_space_refused(capsys, env, tmp_path):
    p = tmp_path / "sss.json"
    p.write_text(json.dumps({"format": "greenmachine-proxy", "format_version": 1, "space": "sss",
                             "expression": "k_logdet_sum(relu_kernel)"}))
    code, err = _cli_error(capsys, ["search", "--space", "tss", "--objective", str(p), "--out",
                                    str(tmp_path / "o"), "--quiet"])
    assert code == 2 and len(err) == 1 and "proxy of the sss space" in err[0]


def test_real_search_end_to_end(capsys, env, tmp_path):
    """TSS / CIFAR-10 on the real data: the README's proxy (tiny budget) and the params baseline, latency cost."""
    out = tmp_path / "proxy"
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--objective", "configs/readme-proxy.json", "--budget", "8", "--population", "4",
              "--out", str(out), "--quiet"])
    assert exit_.value.code == 0, capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    assert s["evaluated"] == 8 and s["cost"]["unit"] == "kWh" and 0 <= s["hv_ratio"] <= 1
    with open(out / "front.csv") as f:
        assert next(csv.reader(f))[:6] == ["index", "arch", "objective", "cost", "accuracy", "true_cost"]
    out2 = tmp_path / "params"
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--objective", "params", "--cost", "latency:pixel3", "--algorithm", "random", "--budget", "8",
              "--population", "4", "--out", str(out2), "--quiet"])
    assert exit_.value.code == 0, capsys.readouterr().err
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["cost"]["name"] == "latency:pixel3" and s2["evaluated"] == 8


def test_random_is_reproducible_and_uses_the_random_module_only(tmp_path):
    truth = fake_truth()
    a = run_search(config(budget=40), truth, tmp_path, tmp_path / "a", space_ops=FakeSpace())
    random.seed(12345)  # the global state before a run must not matter: the engine seeds it
    b = run_search(config(budget=40), truth, tmp_path, tmp_path / "b", space_ops=FakeSpace())
    assert (tmp_path / "a" / "evaluated.csv").read_text() == (tmp_path / "b" / "evaluated.csv").read_text()
    assert a.summary["hv_ratio"] == b.summary["hv_ratio"]


def test_search_table_markdown(tmp_path):
    """make search-table's markdown: one line per row that has run, mean ± std, rows from --also marked."""
    from greenmachine.search.table import ROWS, table

    truth = fake_truth()
    here = run_seeds(config(budget=16), [0, 1], truth, tmp_path, tmp_path / "runs" / "oracle", space_ops=FakeSpace())
    run_seeds(config(budget=16, algorithm="random"), [0, 1], truth, tmp_path, tmp_path / "gpu" / "random",
              space_ops=FakeSpace())
    text = table(tmp_path / "runs", ROWS, 16, "0-1", also=tmp_path / "gpu", also_note="elsewhere")
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 2  # header, rule, oracle, random
    assert f"{here['mean']['hv_ratio']:.3f} ± {here['std']['hv_ratio']:.3f}" in lines[2]
    assert lines[3].startswith("| random search") and "†" in lines[3] and "† measured in" in text
    assert "#params" not in text  # rows that have not run are left out, never filled in
