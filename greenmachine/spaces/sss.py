"""NATS-Bench SSS (size space): the best TSS cell with 5 channel counts from {8, ..., 64}; 32,768 networks.

The official SSS order *is* a product order (the last stage varies fastest), so the arch list is generated and a
table or official directory is checked against it. Networks are xautodl's ``infer.shape.tiny`` with the fixed cell.
"""

from __future__ import annotations

import itertools
import math
import random
from functools import lru_cache
from typing import Sequence

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.base import one_point
from greenmachine.spaces.nats import NatsSpace

SSS_CHANNELS = (8, 16, 24, 32, 40, 48, 56, 64)
SSS_STAGES = 5
SSS_SIZE = len(SSS_CHANNELS) ** SSS_STAGES
# The fixed cell of the size space: the best TSS cell, as in every official SSS record (``get_net_config``).
SSS_GENOTYPE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
_CHOICES = tuple(str(c) for c in SSS_CHANNELS)


@lru_cache(maxsize=1)
def sss_archs() -> tuple[str, ...]:
    """All 32,768 SSS channel strings in the official index order."""
    return tuple(":".join(str(c) for c in combo) for combo in itertools.product(SSS_CHANNELS, repeat=SSS_STAGES))


class SSS(NatsSpace):
    name = "sss"
    nats_name = "sss"
    hp = "90"
    official_glob = "NATS-sss-v1_0-*-simple"
    size = SSS_SIZE
    example = "8:16:24:32:64"
    # Which stage is wide decides SSS accuracy (CIFAR-100: mostly the last), and only the structural terminals let a
    # tree weight layers by position (README, "Proxy quality")
    evolve_defaults = {"structural": True}

    def validate(self, arch: str) -> str:
        parts = arch.split(":") if isinstance(arch, str) else []
        if len(parts) != SSS_STAGES or any(p not in _CHOICES for p in parts):
            raise GreenmachineError(
                f"{str(arch)[:120]!r} is not an SSS channel string: 5 values from {list(SSS_CHANNELS)} joined by ':'"
            )
        return arch

    def net_config(self, arch: str, dataset: str) -> dict:
        return {"name": "infer.shape.tiny", "channels": arch, "genotype": SSS_GENOTYPE,
                "num_classes": self.num_classes(dataset)}

    def check_order(self, archs: Sequence[str]) -> None:
        if tuple(archs) != sss_archs():
            raise GreenmachineError("the SSS architecture list is not the official 32,768 channel strings in order")

    def finish_table(self, archs, source):
        official = sss_archs()
        for i, a in enumerate(archs):
            if a is not None and a != official[i]:
                raise GreenmachineError(f"ground-truth table {source}: index {i} is {official[i]!r} in SSS, not {a!r}")
        return list(official)

    def encode(self, arch: str) -> list[float]:
        """log2 of the 5 channel counts (accuracy is close to linear in them: README, Proxy quality)."""
        return [math.log2(int(c)) for c in self.validate(arch).split(":")]

    def encoding_names(self) -> list[str]:
        return [f"log2 channels at position {k + 1}" for k in range(SSS_STAGES)]

    def random_arch(self, rng: random.Random) -> str:
        return ":".join(rng.choice(_CHOICES) for _ in range(SSS_STAGES))

    def mutate(self, arch: str, rng: random.Random) -> str:
        parts = self.validate(arch).split(":")
        k = rng.randrange(SSS_STAGES)
        parts[k] = rng.choice([c for c in _CHOICES if c != parts[k]])
        return ":".join(parts)

    def crossover(self, a: str, b: str, rng: random.Random) -> tuple[str, str]:
        x, y = one_point(self.validate(a).split(":"), self.validate(b).split(":"), rng)
        return ":".join(x), ":".join(y)
