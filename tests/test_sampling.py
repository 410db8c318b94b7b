"""Sampling: random and stratified, seeded, without replacement, disjoint on request."""

import numpy as np
import pytest

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.sampling import sample_indices


@pytest.mark.parametrize("sampling", ["random", "stratified"])
def test_seeded_without_replacement(tss_truth, sampling):
    a = sample_indices(tss_truth, "cifar10", 200, sampling, seed=5)
    assert a == sample_indices(tss_truth, "cifar10", 200, sampling, seed=5)
    assert a != sample_indices(tss_truth, "cifar10", 200, sampling, seed=6)
    assert len(set(a)) == 200


def test_stratified_draws_equally_from_accuracy_quantiles(tss_truth):
    idx = sample_indices(tss_truth, "cifar100", 100, "stratified", seed=0, strata=10)
    acc = tss_truth.accuracy["cifar100"]
    edges = np.quantile(acc, np.linspace(0, 1, 11))
    counts = np.histogram(acc[idx], bins=edges)[0]
    assert counts.min() >= 8 and counts.max() <= 12  # 10 each, give or take ties at the edges
    # a random sample of the same size misses the tails far more often
    top = acc >= edges[-2]
    assert top[idx].sum() >= 9


def test_disjoint_evaluation_sample(tss_truth):
    evo = sample_indices(tss_truth, "cifar10", 300, "stratified", seed=0)
    held = sample_indices(tss_truth, "cifar10", 500, "random", seed=0, exclude=evo)
    assert not set(evo) & set(held)


def test_errors(tss_truth):
    with pytest.raises(GreenmachineError, match="larger than"):
        sample_indices(tss_truth, "cifar10", 20000, "random")
    with pytest.raises(GreenmachineError, match="unknown sampling"):
        sample_indices(tss_truth, "cifar10", 10, "systematic")
