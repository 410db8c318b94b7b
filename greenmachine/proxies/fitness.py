"""Fitness of a proxy: Kendall tau (scipy) between its scores and ground-truth accuracy.

A tree that fails, returns NaN or infinity for any network, or gives every network the same score ranks
nothing: it gets WORST_FITNESS and the run goes on.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import kendalltau, spearmanr

WORST_FITNESS = -1.0


def valid_scores(scores: np.ndarray) -> bool:
    scores = np.asarray(scores, dtype=np.float64)
    return bool(scores.size >= 2 and np.all(np.isfinite(scores)) and np.ptp(scores) > 0)


def kendall_fitness(scores: np.ndarray, accuracy: np.ndarray) -> float:
    if not valid_scores(scores):
        return WORST_FITNESS
    tau = kendalltau(scores, accuracy).statistic
    return float(tau) if math.isfinite(tau) else WORST_FITNESS


def rank_correlations(scores: np.ndarray, accuracy: np.ndarray) -> tuple[float, float]:
    """(Kendall tau, Spearman rho); NaN where the scores cannot rank (non-finite or constant)."""
    if not valid_scores(scores):
        return math.nan, math.nan
    return float(kendalltau(scores, accuracy).statistic), float(spearmanr(scores, accuracy).statistic)


def combine_taus(taus, rule: str) -> float:
    """One fitness from the Kendall taus of a tree on several datasets (the same architectures on each).

    ``mean`` (the default) rewards an improvement on any dataset, which gives selection a smoother landscape;
    ``min`` scores only the worst dataset, a guarantee for every one but flat wherever another dataset is the
    bottleneck. A tree that ranks nothing on some dataset (WORST_FITNESS there: it fails, is non-finite or
    constant) gets WORST_FITNESS whatever the rule: a proxy that breaks on one dataset is no proxy for all of them.
    """
    values = [float(t) for t in taus]
    if not values:
        raise ValueError("no taus to combine")
    if any(v == WORST_FITNESS for v in values):
        return WORST_FITNESS
    if rule == "mean":
        return float(math.fsum(values) / len(values))
    if rule == "min":
        return min(values)
    raise ValueError(f"unknown combine rule {rule!r}")
