"""`greenmachine ceiling`: the space encodings, and supervised predictors' ranking of held-out random samples."""

import math

import numpy as np
import pytest

from conftest import gm
from greenmachine.ceiling import encoding_ceiling
from greenmachine.errors import GreenmachineError
from greenmachine.proxies.fitness import rank_correlations
from greenmachine.spaces import get_space


def test_encodings():
    tss, sss = get_space("tss"), get_space("sss")
    code = tss.encode(tss.example)
    assert len(code) == 30 and sum(code) == 6  # one operation per edge
    assert code[5 * 0 + 3] == 1.0  # edge 1<-0 is nor_conv_3x3 (the 4th of TSS_OPS)
    assert sss.encode("8:16:24:32:64") == [3.0, 4.0, math.log2(24), 5.0, 6.0]
    with pytest.raises(GreenmachineError, match="not an SSS channel string"):
        sss.encode("8:16")
    with pytest.raises(GreenmachineError, match="no architecture encoding"):
        get_space("ecnas-4v").encode("x")


def test_ceiling_recomputed(data_dir):
    """The linear figure is recomputed here from the same split and draws; the predictors are trained on the truth."""
    from greenmachine.spaces.truth import load_table

    truth = load_table(data_dir / "nats" / "sss-hp90.csv", "sss")
    space = get_space("sss")
    r = encoding_ceiling(truth, space, "cifar100", sample_size=400, draws=4, seed=3)
    indices = np.flatnonzero(truth.available("cifar100"))  # the table lacks a few accuracies
    assert r.trained_on == len(indices) // 2 and (r.sample_size, r.draws) == (400, 4)
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(3)
    order = rng.permutation(len(indices))
    train, test = order[: len(order) // 2], order[len(order) // 2:]
    X = np.array([space.encode(truth.archs[i]) for i in indices])
    y = truth.acc("cifar100", indices)
    pred = LinearRegression().fit(X[train], y[train]).predict(X[test])
    taus = []
    for _ in range(4):  # the same generator, after the same permutation, draws the same samples
        pick = rng.choice(len(test), size=400, replace=False)
        taus.append(rank_correlations(pred[pick], y[test][pick])[0])
    assert r.linear[0] == pytest.approx(np.mean(taus), abs=1e-12)
    assert r.linear[1] == pytest.approx(np.std(taus, ddof=1), abs=1e-12)
    assert 0.8 < r.linear[0] < r.boosted[0] < 1.0  # SSS CIFAR-100 is nearly linear in the log channel counts


def test_ceiling_cli(env, capsys):
    code, out, err = gm(capsys, "ceiling", "--space", "tss", "--dataset", "cifar10", "--sample-size", 300,
                        "--draws", 2)
    assert code == 0, err
    assert "tss/cifar10: predictors fitted on 7,812 architectures" in out
    assert out.splitlines()[1].startswith("boosted_trees_kendall_tau=")
    for args, message in ((["--space", "ecnas-4v"], "no architecture encoding"),
                          (["--sample-size", 20000], "more than half"),
                          (["--draws", 0], "at least 1")):
        code, _, err = gm(capsys, "ceiling", *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def _tss_sample(data_dir, n=600, seed=0):
    from greenmachine.spaces.truth import load_table

    truth = load_table(data_dir / "nats" / "tss-hp200.csv", "tss")
    rng = np.random.default_rng(seed)
    indices = rng.choice(truth.available("cifar10"), size=n, replace=False)
    return truth, indices, truth.acc("cifar10", indices)


def test_proxy_gap_names_what_the_proxy_misses(data_dir, tmp_path):
    """A proxy that is the accuracy, blind to one encoding entry: the cross-fitted figures and the named entry."""
    from greenmachine.ceiling import proxy_gap

    truth, indices, acc = _tss_sample(data_dir)
    space = get_space("tss")
    archs = [truth.archs[i] for i in indices]
    skip_0_3 = np.array([space.encode(a)[space.encoding_names().index("skip_connect on edge 0->3")] for a in archs])
    assert 0 < skip_0_3.sum() < len(archs)
    exact = proxy_gap(truth, space, "cifar10", archs, acc.copy())
    assert exact.proxy == pytest.approx(1.0) and exact.scored == 600 and exact.dropped == 0
    assert exact.missed == ()  # a proxy that ranks like the accuracy makes no ranking error to follow
    blind = acc - 8.0 * skip_0_3  # under-rates every cell with a skip from input to output
    scores = np.concatenate([blind, [np.nan]])  # a row without a finite score is left out, and counted
    g = proxy_gap(truth, space, "cifar10", archs + [space.example], scores, folds=3, seed=1)
    assert (g.scored, g.dropped, g.folds) == (600, 1, 3)
    assert g.missed[0][0] == "skip_connect on edge 0->3" and g.missed[0][1] > 0.3
    assert proxy_gap(truth, space, "cifar10", archs, blind, plot=tmp_path / "gap.png") is not None
    assert (tmp_path / "gap.png").stat().st_size > 10_000  # the scatter, drawn
    assert g.encoding_plus_proxy > g.proxy + 0.05  # the trees put back the entry the proxy is blind to
    # the proxy's figure is its Kendall tau on the same folds, recomputed here
    order = np.random.default_rng(1).permutation(600)
    taus = [rank_correlations(blind[test], acc[test])[0] for test in np.array_split(order, 3)]
    assert g.proxy == pytest.approx(np.mean(taus), abs=1e-12)
    assert 0.0 < g.encoding < 1.0
    with pytest.raises(GreenmachineError, match="every score is the same"):
        proxy_gap(truth, space, "cifar10", archs, np.ones(600))
    with pytest.raises(GreenmachineError, match="at least 50 are needed"):
        proxy_gap(truth, space, "cifar10", archs[:40], acc[:40])
    with pytest.raises(GreenmachineError, match="names an architecture twice"):
        proxy_gap(truth, space, "cifar10", archs + archs[:1], np.concatenate([acc, acc[:1]]))
    with pytest.raises(GreenmachineError, match="--folds must be at least 2"):
        proxy_gap(truth, space, "cifar10", archs, acc, folds=1)


def test_ceiling_scores_cli(env, capsys, data_dir, tmp_path):
    truth, indices, acc = _tss_sample(data_dir, n=200, seed=2)
    path = tmp_path / "scores.csv"
    rows = ["index,arch,score,other"] + [f"{i},{truth.archs[i]},{a:.6f},{-a:.6f}" for i, a in zip(indices, acc)]
    path.write_text("\n".join(rows + [f"0,{truth.archs[0]},nan,"]) + "\n")
    code, out, err = gm(capsys, "ceiling", "--space", "tss", "--dataset", "cifar10", "--scores", path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("tss/cifar10: 200 scored architectures (1 without a finite score left out), 2-fold")
    assert lines[1] == "proxy_kendall_tau=1.0000"
    assert lines[2].startswith("encoding_kendall_tau=") and lines[3].startswith("encoding_plus_proxy_kendall_tau=")
    assert len(lines) == 5 + 5 and all(" on edge " in line for line in lines[5:])
    code, out, err = gm(capsys, "ceiling", "--space", "tss", "--dataset", "cifar10", "--scores", path,
                        "--score-column", "other", "--folds", 4, "--plot", tmp_path / "plots" / "gap.png")
    assert code == 0, err
    assert "4-fold" in out and "proxy_kendall_tau=-1.0000" in out
    assert out.splitlines()[-1] == f"plot={tmp_path / 'plots' / 'gap.png'}"
    assert (tmp_path / "plots" / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,score\n" + f"{truth.archs[indices[0]]},1\n" + "8:16:24:32:64,2\n")
    for args, message in ((["--scores", tmp_path / "none.csv"], "scores file not found"),
                          (["--scores", path, "--score-column", "synflow"], "has no 'synflow' column"),
                          (["--scores", bad], "is not a TSS (NAS-Bench-201) cell string"),
                          (["--scores", path, "--draws", 3], "do not apply with --scores"),
                          (["--folds", 3], "apply only with --scores"),
                          (["--plot", tmp_path / "x.png"], "apply only with --scores"),
                          (["--scores", path, "--plot", tmp_path], "is a directory"),
                          (["--scores", path, "--space", "ecnas-4v"], "no architecture encoding")):
        full = ["--space", "tss", "--dataset", "cifar10", *args] if "--space" not in args else ["--dataset", "cifar10", *args]
        code, _, err = gm(capsys, "ceiling", *full)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, (args, err)
