"""Multi-dataset fitness: one tree, the SAME architectures, several datasets, one combined Kendall tau.

Why the same architectures: a proxy is meant to rank networks, whatever the data they will be trained on; scoring it
on one sample of networks under every dataset measures exactly that, and keeps the datasets' taus comparable (the
differences come from the images and the ground truth, not from another draw of networks). The sample is drawn once,
stratified (when stratified) by the accuracy on the FIRST dataset, from the architectures that have ground truth on
every dataset.

Each dataset is probed on its own images (its own probe settings, one probe cache), and each gets its own
:class:`~greenmachine.search.shards.ShardedFitness` over its probes: the sharding, the worker processes or Ray
actors, the chunking and the per-network scores are those of a single-dataset run. This class only asks every
dataset's shards for the taus of the trees not yet scored and folds them with
:func:`~greenmachine.proxies.fitness.combine_taus`. The fitness stays a pure function of the tree (memoised by its
tokens, on the driver), so checkpoints resume exactly and every executor gives the same run.
"""

from __future__ import annotations

from typing import Sequence

from greenmachine.proxies.fitness import combine_taus
from greenmachine.search.shards import MemoisedFitness, ShardedFitness


class MultiDatasetFitness(MemoisedFitness):
    """The combined fitness of trees over one :class:`ShardedFitness` per dataset; the interface of ShardedFitness
    that :class:`~greenmachine.search.proxy_gp.ProxyEvolution` uses (prefetch, __call__ and compute from
    :class:`~greenmachine.search.shards.MemoisedFitness`; evaluations, nbytes, shards, close), plus
    :meth:`dataset_taus`."""

    def __init__(self, parts: dict[str, ShardedFitness], combine: str, memo: dict[str, float] | None = None):
        if len(parts) < 2:
            raise ValueError("a multi-dataset fitness needs two or more datasets")
        self.parts = dict(parts)
        self.datasets = list(parts)
        self.combine = combine
        self.memo = memo if memo is not None else {}
        # per-dataset taus of every tree scored, in ``self.datasets`` order (history.csv, proxy.json)
        self.taus: dict[str, tuple[float, ...]] = {}
        self.evaluations = 0

    @property
    def shards(self) -> int:
        return sum(p.shards for p in self.parts.values())

    def fitness_of(self, keys: Sequence[str]) -> list[float]:
        """Each tree's combined fitness; one round over every dataset's shards for all of ``keys``."""
        keys = list(keys)
        per_dataset = [self.parts[d].fitness_of(keys) for d in self.datasets]
        out = []
        for pos, key in enumerate(keys):
            row = tuple(float(col[pos]) for col in per_dataset)
            self.taus[key] = row
            out.append(combine_taus(row, self.combine))
        return out

    def dataset_taus(self, key: str) -> dict[str, float]:
        """The per-dataset taus of a tree (recomputed, without counting an evaluation, when not known: after a
        resume only the checkpointed combined fitness is in the memo; the taus are a pure function of the tree)."""
        if key not in self.taus:
            self.fitness_of([key])
        return dict(zip(self.datasets, self.taus[key]))

    def nbytes(self) -> list[int]:
        return [n for d in self.datasets for n in self.parts[d].nbytes()]

    def peak_rss(self) -> list[int]:
        return [n for d in self.datasets for n in self.parts[d].peak_rss()]

    def close(self) -> None:
        for part in self.parts.values():
            part.close()


__all__ = ["MultiDatasetFitness"]
