"""Chunks of networks bounded by bytes, not only by a count.

Scoring, the baselines comparison and GP fitness evaluation probe and evaluate a sample chunk by chunk, so that
memory does not grow with the sample size. A fixed count of 50 networks bounded memory for NATS-Bench TSS
networks (about 0.1-1.5 M parameters), but a NAS-Bench-101 network (128-channel stem, 1-10 M parameters) keeps
about 8 bytes of terminals per parameter (float32 weights and gradients): 50 of them hold several GB of terminals,
and a tree's elementwise temporaries over those terminals add about 3-4 times as much again (measured: 30 EC-NAS
cells, 1.3 GB of terminals, 7.1 GB peak RSS). So a chunk is closed when the next network would take its
terminal bytes past a budget, *or* at the old count (each network is scored independently of its chunk, so the
chunking never changes a score, bit for bit).

The budget is 64 MiB. Measured on the default TSS evolution sample (200 networks, 2.07 GB of terminals, 120 random
trees of depth 2-6, one process): budget 512 MiB peaked at 3.71 GB and took 75.5 s, 256 MiB 3.32 GB / 57.9 s,
128 MiB 3.27 GB / 44.2 s, 64 MiB 2.96 GB / 39.2 s. Smaller chunks bound the temporaries *and* run faster on a
CPU: a tree's elementwise temporaries of one chunk then stay in cache. On a GPU larger chunks may pay; set
``GREENMACHINE_CHUNK_BYTES``.

Before probing, a network's terminal bytes are estimated from its parameter count (``BYTES_PER_PARAM``); after
probing (GP evaluation), the probes' own ``nbytes()`` are used.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

MAX_NETWORKS = 50  # networks per chunk at most (the former fixed chunk)
BYTES_PER_PARAM = 8  # terminal bytes one parameter keeps: float32 weight + float32 gradient (measured 8.4 on EC-NAS)
DEFAULT_BUDGET = 64 * 2**20  # terminal bytes per chunk; a tree's temporaries are a few times this (see above)
BUDGET_ENV = "GREENMACHINE_CHUNK_BYTES"


def chunk_budget() -> int:
    """Terminal bytes per chunk: ``GREENMACHINE_CHUNK_BYTES`` where set (a positive integer), else 64 MiB."""
    from greenmachine.errors import GreenmachineError

    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET
    try:
        value = int(raw)
    except ValueError:
        raise GreenmachineError(f"{BUDGET_ENV} must be a positive integer number of bytes, not {raw!r}") from None
    if value <= 0:
        raise GreenmachineError(f"{BUDGET_ENV} must be a positive integer number of bytes, not {raw!r}")
    return value


def plan_chunks(sizes: Sequence[int], budget: int | None = None, max_networks: int = MAX_NETWORKS) -> list[int]:
    """Lengths of consecutive chunks over networks of byte ``sizes``, in order.

    A chunk is closed before a network that would take it past ``budget`` bytes, or at ``max_networks``
    networks; a chunk always holds at least one network (a network larger than the budget is a chunk alone)."""
    budget = chunk_budget() if budget is None else budget
    out: list[int] = []
    count = used = 0
    for size in sizes:
        if count and (count >= max_networks or used + size > budget):
            out.append(count)
            count = used = 0
        count += 1
        used += int(size)
    if count:
        out.append(count)
    return out


def split(items: Sequence, lengths: Sequence[int]) -> list[list]:
    """``items`` cut into consecutive lists of the given ``lengths``."""
    out, lo = [], 0
    for n in lengths:
        out.append(list(items[lo : lo + n]))
        lo += n
    return out


def estimated_bytes(truth, dataset: str, indices: Sequence[int],
                    params_of: Callable[[int], int] | None = None) -> list[int]:
    """Estimated terminal bytes of each network before probing: parameters x ``BYTES_PER_PARAM``.

    The parameter counts come from the ground truth's ``params`` metric where the benchmark has it (EC-NAS'
    ``trainable_params``, NATS-Bench's cost info in millions), else from building the network."""
    params = truth.metric("params", dataset) if hasattr(truth, "metric") else None
    if params is not None:
        counts = [float(params[int(i)]) for i in indices]
        if counts and max(counts) < 1000:  # NATS-Bench reports millions of parameters
            counts = [c * 1e6 for c in counts]
        return [int(c * BYTES_PER_PARAM) for c in counts]
    if params_of is None:
        from greenmachine.spaces import get_space
        from greenmachine.spaces.base import count_params

        space = get_space(truth.space)

        def params_of(i: int) -> int:
            return count_params(space.build_network(truth.arch(int(i)), dataset))

    return [int(params_of(int(i)) * BYTES_PER_PARAM) for i in indices]


__all__ = ["MAX_NETWORKS", "BYTES_PER_PARAM", "DEFAULT_BUDGET", "chunk_budget", "plan_chunks", "split",
           "estimated_bytes"]
