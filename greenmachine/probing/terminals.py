"""The terminals of a sample of networks, concatenated for vectorised tree evaluation.

Evaluating a tree layer by layer and network by network would cost tens of thousands of small torch calls.
Instead every terminal of every layer of every network is concatenated into one flat tensor per family (weight
side: Conv/Linear layers; activation side: ReLUs), with the segment lengths kept beside it. An elementwise
primitive is then one torch call over the whole sample, a per-layer reduction is one ``segment_reduce``, and the
per-network aggregation is one more. Kernels (B x B per ReLU, or one per network) are stacked along a first axis.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch

from greenmachine.probing.memory import trim_heap
from greenmachine.probing.probe import (
    ACT_TERMINALS,
    KERNEL_TERMINALS,
    NET_KERNEL_TERMINALS,
    NET_SCALAR_TERMINALS,
    SPECTRUM_TERMINALS,
    WEIGHT_TERMINALS,
    NetworkProbe,
)


class Family:
    """One side of the network (weighted layers, or ReLUs): flat terminals plus their segment structure."""

    def __init__(self, probes: Sequence[NetworkProbe], names: Sequence[str], device, consume: bool = False):
        self.data: dict[str, torch.Tensor] = {}
        present = [n for n in names if all(n in p.tensors for p in probes)]
        self.lengths = torch.zeros(0, dtype=torch.long)
        self.layers_per_net = torch.zeros(len(probes), dtype=torch.long)
        if present:
            ref = present[0]
            self.lengths = torch.tensor([t.numel() for p in probes for t in p.tensors[ref]], device=device)
            self.layers_per_net = torch.tensor([len(p.tensors[ref]) for p in probes], device=device)
        for name in present:
            # kept in the probe's dtype: weights and gradients float32 (what the network computed), synflow
            # gradients float64 (they reach 1e38); float32 arithmetic is 3-6x faster on the CPU
            self.data[name] = torch.cat([t.flatten() for p in probes for t in p.tensors[name]]).to(device)
            if consume:  # free the per-layer copies now: peak memory stays near one copy of the sample
                for p in probes:
                    del p.tensors[name]
                # ... and give their pages back: they sit in the heap, the concatenation is a fresh mapping, so
                # without a trim the process would hold both copies (probing/memory.py)
                trim_heap(force=True)

    @property
    def n_layers(self) -> int:
        return int(self.lengths.numel())

    def per_layer(self, x: torch.Tensor, reduce: str) -> torch.Tensor:
        return torch.segment_reduce(x, reduce, lengths=self.lengths, unsafe=True)

    def per_net(self, layer_values: torch.Tensor, reduce: str) -> torch.Tensor:
        return torch.segment_reduce(layer_values, reduce, lengths=self.layers_per_net, unsafe=True)

    def broadcast(self, layer_values: torch.Tensor) -> torch.Tensor:
        """Per-layer values repeated over each layer's elements."""
        return torch.repeat_interleave(layer_values, self.lengths)


def chunked_batches(probes: list[NetworkProbe], size: int, device: str = "cpu") -> list["ProbeBatch"]:
    """Consecutive batches of at most ``size`` networks, each taking over its probes (``consume=True``).

    Trees score each network independently, so evaluating chunk by chunk gives the same scores while the
    temporaries of a tree (one float64 copy of every weight of the sample per elementwise op) stay small."""
    return [ProbeBatch(probes[i : i + size], device=device, consume=True) for i in range(0, len(probes), size)]


class ProbeBatch:
    """All terminals of a sample; ``memo`` caches small subtree results (per layer or per network).

    ``dtype`` is the dtype of constants and kernels; scores come out in float64 whatever the terminals' dtype.
    ``consume=True`` empties the probes as their tensors are concatenated (the caller no longer needs them).
    """

    MEMO_BYTES = 256 * 2**20  # at most, per batch
    # ... and at most this fraction of the batch's own terminal bytes: a sample cut into many small chunks
    # (probing/chunking.py) must not hold a full memo per chunk, or memory would grow with the chunk count
    MEMO_FRACTION = 8

    def __init__(
        self, probes: Sequence[NetworkProbe], device: str = "cpu", dtype=torch.float64, consume: bool = False
    ):
        if not probes:
            raise ValueError("a ProbeBatch needs at least one network")
        self.n = len(probes)
        self.indices = [p.index for p in probes]
        self.device = torch.device(device)
        self.dtype = dtype
        self.weight = Family(probes, WEIGHT_TERMINALS, self.device, consume)
        self.act = Family(probes, ACT_TERMINALS, self.device, consume)
        self.spectrum = Family(probes, SPECTRUM_TERMINALS, self.device, consume)  # per ReLU: scores land on ALayer
        self.kernels: dict[str, torch.Tensor] = {}
        self.kernel_layers_per_net = torch.zeros(self.n, dtype=torch.long)
        present = [n for n in KERNEL_TERMINALS if all(n in p.tensors for p in probes)]
        for name in present:
            self.kernel_layers_per_net = torch.tensor([len(p.tensors[name]) for p in probes], device=self.device)
            self.kernels[name] = torch.stack([k for p in probes for k in p.tensors[name]]).to(self.device, dtype)
            if consume:
                for p in probes:
                    del p.tensors[name]
                trim_heap(force=True)
        # one B x B kernel per network (the jacobian and ntk passes): stacked N x B x B, network i at row i
        self.net_kernels = self._one_per_network(probes, NET_KERNEL_TERMINALS, torch.stack, consume)
        # one number per network (the swap pass): a vector, network i at position i
        self.net_scalars = self._one_per_network(probes, NET_SCALAR_TERMINALS, torch.cat, consume)
        # the ReLU-side layer structure, from whichever ReLU-side terminals were probed (a tree may need only one)
        relu_sides = [f.layers_per_net for f in (self.act, self.spectrum) if f.data] + (
            [self.kernel_layers_per_net] if self.kernels else []
        )
        self.relu_layers_per_net = relu_sides[0] if relu_sides else torch.zeros(self.n, dtype=torch.long)
        self.memo: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._memo_bytes = 0
        self.memo_budget = max(2**20, min(self.MEMO_BYTES, self.nbytes() // self.MEMO_FRACTION))

    def _one_per_network(self, probes: Sequence[NetworkProbe], names: Sequence[str], join,
                         consume: bool) -> dict[str, torch.Tensor]:
        """The terminals that hold one tensor per network, each joined over the networks in order (``join``:
        ``torch.stack`` for kernels, ``torch.cat`` for one-element counts)."""
        out: dict[str, torch.Tensor] = {}
        for name in (n for n in names if all(n in p.tensors for p in probes)):
            out[name] = join([p.tensors[name][0] for p in probes]).to(self.device, self.dtype)
            if consume:
                for p in probes:
                    del p.tensors[name]
        return out

    def relu_per_net(self, layer_values: torch.Tensor, reduce: str) -> torch.Tensor:
        return torch.segment_reduce(layer_values, reduce, lengths=self.relu_layers_per_net, unsafe=True)

    def terminals(self) -> set[str]:
        return (set(self.weight.data) | set(self.act.data) | set(self.spectrum.data) | set(self.kernels)
                | set(self.net_kernels) | set(self.net_scalars))

    def nbytes(self) -> int:
        tensors = [*self.weight.data.values(), *self.act.data.values(), *self.spectrum.data.values(),
                   *self.kernels.values(), *self.net_kernels.values(), *self.net_scalars.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def remember(self, key: tuple, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.memo_budget // 8:
            return
        self.memo[key] = value
        self._memo_bytes += size
        while self._memo_bytes > self.memo_budget:
            _, old = self.memo.popitem(last=False)
            self._memo_bytes -= old.numel() * old.element_size()

    def recall(self, key: tuple) -> torch.Tensor | None:
        value = self.memo.get(key)
        if value is not None:
            self.memo.move_to_end(key)
        return value
