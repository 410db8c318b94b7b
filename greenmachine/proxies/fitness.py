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
