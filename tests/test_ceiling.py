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
