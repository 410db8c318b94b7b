"""Hand-designed zero-cost proxies, one module each, registered with ``@measure("name")`` (as in NASLib and
foresight). Each takes a :class:`ProxyInputs` and returns one float per network; higher is meant to be better.

Every proxy works on a copy of the *same* freshly initialised network and the same probe minibatch, so
proxies and evolved trees are compared on identical networks, images and seeds. snip, grad_norm and fisher share
one cross-entropy forward/backward (:meth:`ProxyInputs.ce_pass`); the others need a pass of their own
(float64 BN-free for synflow, a Hessian-vector product for GRASP, Gaussian inputs for Zen, ...).
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from greenmachine.errors import GreenmachineError

REGISTRY: dict[str, Callable[["ProxyInputs"], float]] = {}
MODULES = ("synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "naswot", "zen", "params", "flops", "zico",
           "meco", "ntk_cond", "swap")


def measure(name: str):
    """Register a proxy under ``name`` (the column name in tables and CSVs)."""

    def wrap(fn):
        REGISTRY[name] = fn
        return fn

    return wrap


@dataclass
class ProxyInputs:
    network: nn.Module  # the initialised network: never modified, proxies get copies
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    seed: int  # for proxies that draw random inputs (zen)
    _ce: tuple[nn.Module, list[torch.Tensor]] | None = field(default=None, repr=False)

    def ce_pass(self) -> tuple[nn.Module, list[torch.Tensor]]:
        """One train-mode cross-entropy forward/backward on a copy, made once and shared: the network (its
        weights hold their gradients) and the output of every Conv/Linear layer (holding its gradient)."""
        if self._ce is None:
            net = self.fresh().train()
            outputs: list[torch.Tensor] = []

            def hook(_m, _inp, out):
                out.retain_grad()
                outputs.append(out)

            handles = [m.register_forward_hook(hook) for m in layers(net)]
            try:
                F.cross_entropy(logits(net, self.images), self.labels).backward()
            finally:
                for h in handles:
                    h.remove()
            self._ce = (net, outputs)
        return self._ce

    def fresh(self) -> nn.Module:
        net = copy.deepcopy(self.network)
        net.zero_grad(set_to_none=True)
        for m in net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        return net


def layers(net: nn.Module) -> list[nn.Module]:
    """Conv2d and Linear layers: the layers the gradient-based proxies score (NASLib's convention)."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's logits: every space's network returns them alone (``SearchSpace.build_network``)."""
    return net(x)


def hooked_forward(net: nn.Module, images: torch.Tensor, modules: list[nn.Module], hook: Callable) -> None:
    """One forward of ``images`` under ``no_grad`` with ``hook`` as a forward hook on ``modules`` (the activation-
    only proxies: NASWOT and SWAP on the ReLUs, MeCo on every module), the hooks removed afterwards."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            logits(net, images)
    finally:
        for h in handles:
            h.remove()


def load_all() -> dict[str, Callable[[ProxyInputs], float]]:
    for mod in MODULES:
        importlib.import_module(f"greenmachine.proxies.baselines.{mod}")
    return REGISTRY


def get_proxy(name: str) -> Callable[[ProxyInputs], float]:
    registry = load_all()
    if name not in registry:
        raise GreenmachineError(f"unknown baseline proxy {name!r}; known: {', '.join(registry)}")
    return registry[name]
