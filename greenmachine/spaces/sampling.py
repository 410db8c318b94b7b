"""Seeded samples of architectures: random, or stratified by accuracy quantile.

Stratified sampling splits the candidates (sorted by ground-truth accuracy) into ``strata`` equal-size quantile
bins and draws the same number from each (the remainder goes to randomly chosen bins), so that the rare
high-accuracy and the degenerate low-accuracy architectures are both represented. Both samplers draw without
replacement and can exclude a set of indices, which makes an evaluation sample disjoint from the evolution sample.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.truth import GroundTruth

SAMPLINGS = ("stratified", "random")


def sample_indices(
    truth: GroundTruth,
    dataset: str,
    size: int,
    sampling: str = "random",
    seed: int = 0,
    exclude: Iterable[int] = (),
    strata: int = 10,
) -> list[int]:
    """Draw ``size`` architecture indices with a known accuracy on ``dataset``, ascending."""
    if sampling not in SAMPLINGS:
        raise GreenmachineError(f"unknown sampling {sampling!r}; choose one of: {', '.join(SAMPLINGS)}")
    if size < 2:
        raise GreenmachineError(f"a sample needs at least 2 architectures to rank, got {size}")
    pool = np.setdiff1d(truth.available(dataset), np.fromiter(exclude, dtype=np.int64))
    if size > len(pool):
        raise GreenmachineError(
            f"sample size {size} is larger than the {len(pool)} architectures with {dataset} ground truth"
            f" available in {truth.source}"
        )
    rng = np.random.default_rng(seed)
    if sampling == "random":
        chosen = rng.choice(pool, size=size, replace=False)
    else:
        strata = max(1, min(strata, size))
        order = pool[np.argsort(truth.accuracy[dataset][pool], kind="stable")]
        bins = np.array_split(order, strata)
        counts = np.full(strata, size // strata)
        counts[rng.choice(strata, size=size % strata, replace=False)] += 1
        chosen = np.concatenate([rng.choice(b, size=min(c, len(b)), replace=False) for b, c in zip(bins, counts)])
    return sorted(int(i) for i in chosen)
