"""Chunks bounded by bytes (issue 9 follow-up): scoring, comparison and GP evaluation never hold more than the
budget of terminals per chunk (one oversized network alone), and keep the 50-network chunks where the budget is
not reached (TSS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from greenmachine.errors import GreenmachineError
from greenmachine.probing import chunking
from greenmachine.probing.chunking import estimated_bytes, plan_chunks, split
from greenmachine.probing.probe import NetworkProbe
from greenmachine.search.shards import ShardedFitness, shard_bounds, shard_chunks


def test_plan_chunks_respects_budget_and_count():
    sizes = [300, 300, 300, 900, 2000, 100, 100, 100]
    lengths = plan_chunks(sizes, budget=1000, max_networks=50)
    assert sum(lengths) == len(sizes)
    pos = 0
    for n in lengths:
        part = sizes[pos : pos + n]
        assert n >= 1 and (sum(part) <= 1000 or n == 1)  # an oversized network is a chunk alone
        pos += n
    assert lengths == [3, 1, 1, 3]
    assert plan_chunks([1] * 120, budget=10**9, max_networks=50) == [50, 50, 20]  # the old fixed chunks
    assert plan_chunks([], budget=10) == []


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv(chunking.BUDGET_ENV, "123")
    assert chunking.chunk_budget() == 123
    for bad in ("0", "-5", "1GB"):
        monkeypatch.setenv(chunking.BUDGET_ENV, bad)
        with pytest.raises(GreenmachineError):
            chunking.chunk_budget()


def test_estimates_from_ground_truth_params():
    class Truth:
        space = "fake"

        def metric(self, name, dataset):
            return np.array([1.0e6, 2.5e6, 4.0e6]) if name == "params" else None

    assert estimated_bytes(Truth(), "cifar10", [2, 0]) == [32_000_000, 8_000_000]
    # NATS-Bench stores millions of parameters
    Truth.metric = lambda self, name, dataset: np.array([0.5, 1.5])
    assert estimated_bytes(Truth(), "cifar10", [1]) == [12_000_000]


def _fake_probe(index: int, layers: int, width: int, rng: torch.Generator) -> NetworkProbe:
    w = [torch.randn(width, generator=rng) for _ in range(layers)]
    g = [torch.randn(width, generator=rng) for _ in range(layers)]
    return NetworkProbe(index=index, arch=str(index), tensors={"weight": w, "grad": g}, seconds=0.0)


def test_sharded_fitness_chunks_by_bytes_with_same_scores():
    rng = torch.Generator().manual_seed(0)
    widths = [10, 400, 30, 30, 500, 20, 20, 20, 20, 60]
    accuracy = np.linspace(50, 90, len(widths))
    key = "w_sum_layers w_min w_standardize w_sigmoid grad"  # the EC-NAS evolved proxy

    def probes():
        rng.manual_seed(0)
        return [_fake_probe(i, 3, w, rng) for i, w in enumerate(widths)]

    sizes = [p.nbytes() for p in probes()]
    budget = 3 * 400 * 4 * 2  # fits the 400-wide network and a few small ones, not both big ones
    bounded = ShardedFitness(probes(), accuracy, chunk=50, budget=budget)
    assert sum(bounded.chunk_lengths) == len(widths) and len(bounded.chunk_lengths) > 1
    for part in split(sizes, bounded.chunk_lengths):
        assert sum(part) <= budget or len(part) == 1
    assert sum(bounded.nbytes()) == sum(sizes)
    whole = ShardedFitness(probes(), accuracy, chunk=50, budget=10**12)
    assert whole.chunk_lengths == [len(widths)]
    np.testing.assert_array_equal(bounded.scores([key]), whole.scores([key]))  # chunking never changes a score
    assert bounded.compute(key) == whole.compute(key)


def test_shard_bounds_fall_on_byte_chunks():
    lengths = [3, 1, 1, 3, 2]
    bounds = shard_bounds(10, lengths, 2)
    assert bounds[0][0] == 0 and bounds[-1][1] == 10
    starts = set(np.cumsum([0] + lengths).tolist())
    assert all(a in starts and b in starts for a, b in bounds)
    per = shard_chunks(lengths, bounds)
    assert [sum(c) for c in per] == [b - a for a, b in bounds]
    assert [n for c in per for n in c] == lengths


def test_shards_balance_bytes_not_chunk_counts():
    """Byte-bounded chunks differ in size: two shards must split the bytes about evenly, not the chunk count."""
    lengths = [4, 4, 4, 4]
    weights = [100.0, 20.0, 20.0, 20.0]  # MB of terminals per chunk
    assert shard_bounds(16, lengths, 2, weights) == [(0, 4), (4, 16)]  # 100 | 60 MB: nearest half of 160 MB
    assert shard_bounds(16, lengths, 2) == [(0, 8), (8, 16)]  # by networks
    assert shard_bounds(16, lengths, 3, weights) == [(0, 4), (4, 8), (8, 16)]  # cuts nearest 53 and 107 MB
    assert shard_bounds(16, lengths, 9, weights) == [(0, 4), (4, 8), (8, 12), (12, 16)]  # a chunk per shard at most
    with pytest.raises(ValueError, match="chunk weights"):
        shard_bounds(16, lengths, 2, [1.0])
