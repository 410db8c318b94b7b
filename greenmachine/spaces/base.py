"""What a search space is to greenmachine: one object that knows its architectures, networks, ground truth and
search operators.

Why one object per space (as ``nats_bench.create()`` dispatches to one API class per space, or NASLib's search-space
classes): the rest of the package (CLI choices, configs, sampling, probing, cache keys, reports, the searches) asks
the registry in :mod:`greenmachine.spaces` and this interface, never ``if space == ...``. Adding a benchmark is then
one module and one registry line.

Contracts every space keeps:

* an architecture is a **canonical string** (TSS: the NAS-Bench-201 cell string; SSS: the channel string; EC-NAS:
  the NAS-Bench-101 module hash); :meth:`SearchSpace.validate` refuses anything else with a one-line
  :class:`GreenmachineError`;
* :meth:`SearchSpace.build_network` returns an untrained ``nn.Module`` whose ``forward`` returns the **logits only**
  (B x classes), and whose ``feature_module`` attribute names the module whose output is the feature map before
  global pooling (Zen-score reads it);
* the ground truth is a :class:`greenmachine.spaces.truth.GroundTruth` over the whole space, indices ``0..size-1``
  in the order the space states;
* the search operators draw from a ``random.Random`` passed in, so a seeded search is reproducible across processes.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from greenmachine.errors import GreenmachineError

if TYPE_CHECKING:  # torch is imported where a network is built: the registry and the CLI choices stay torch-free
    import torch.nn as nn

    from greenmachine.spaces.truth import GroundTruth

Progress = Callable[[Iterable[int]], Iterable[int]]


def count_params(net: "nn.Module") -> int:
    """Trainable parameters, the count the benchmarks publish (each parameter object once)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


class SearchSpace(ABC):
    """A search space (see the module docstring for the contracts)."""

    #: the registry name, the ``--space`` choice, and the first part of probe-cache paths
    name: str
    #: datasets this space has ground truth (and networks) for
    datasets: tuple[str, ...]
    #: number of architectures (the ground truth's index range)
    size: int
    #: one valid architecture, shown in error messages
    example: str
    #: settings that a default ``evolve`` on this space uses instead of the package-wide defaults
    evolve_defaults: dict = {}

    def __repr__(self) -> str:
        return f"<search space {self.name}: {self.size} architectures, {', '.join(self.datasets)}>"

    # --- architectures -------------------------------------------------------------------------------------------

    @abstractmethod
    def validate(self, arch: str) -> str:
        """Return ``arch`` if it is a canonical architecture string of this space, else raise (one line)."""

    def check_dataset(self, dataset: str) -> str:
        """Refuse (one line) a dataset this space has no ground truth for."""
        if dataset not in self.datasets:
            raise GreenmachineError(
                f"the {self.name} space has ground truth for {', '.join(self.datasets)} only, not {dataset!r}"
            )
        return dataset

    def num_classes(self, dataset: str) -> int:
        from greenmachine.probing.datasets import DATASETS

        return DATASETS[self.check_dataset(dataset)].num_classes

    # --- networks ------------------------------------------------------------------------------------------------

    @abstractmethod
    def build_network(self, arch: str, dataset: str) -> "nn.Module":
        """The untrained network; ``forward`` returns logits only; ``feature_module`` is set."""

    # --- ground truth --------------------------------------------------------------------------------------------

    @abstractmethod
    def find_truth(self, data_dir: str | Path) -> Path:
        """Where this space's ground truth lives under a data folder (file or directory); raise if absent."""

    @abstractmethod
    def load_truth(self, source: str | Path, progress: Progress = lambda it: it) -> "GroundTruth":
        """Read the ground truth from what :meth:`find_truth` returned (or a user-given path)."""

    def check_order(self, archs: list[str]) -> None:
        """Check that an architecture list read from data is this space in its stated order (default: nothing)."""

    # --- search operators ----------------------------------------------------------------------------------------

    def encode(self, arch: str) -> list[float]:
        """A fixed-length numeric encoding of an architecture, for predictors fitted on the ground truth
        (``greenmachine ceiling``); a space without one says so."""
        raise GreenmachineError(f"the {self.name} space has no architecture encoding (greenmachine ceiling)")

    def encoding_names(self) -> list[str]:
        """One readable name per :meth:`encode` entry, in its order (what ``ceiling --scores`` reports)."""
        raise GreenmachineError(f"the {self.name} space has no architecture encoding (greenmachine ceiling)")

    @abstractmethod
    def random_arch(self, rng: random.Random) -> str:
        """A uniformly random architecture of the space."""

    @abstractmethod
    def mutate(self, arch: str, rng: random.Random) -> str:
        """A neighbour of ``arch``: one operation (or one channel choice, or one edge) changed; never ``arch``."""

    @abstractmethod
    def crossover(self, a: str, b: str, rng: random.Random) -> tuple[str, str]:
        """Two children of ``a`` and ``b`` (one-point crossover over the space's genes); both valid archs."""


def one_point(a: list, b: list, rng: random.Random) -> tuple[list, list]:
    """One-point crossover of two equal-length gene lists (a cut between 1 and len-1)."""
    if len(a) != len(b):
        raise ValueError("one-point crossover needs equal-length genes")
    if len(a) < 2:
        return list(a), list(b)
    cut = rng.randrange(1, len(a))
    return a[:cut] + b[cut:], b[:cut] + a[cut:]
