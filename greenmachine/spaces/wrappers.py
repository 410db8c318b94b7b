"""Adapters that give every space's networks the one forward contract of greenmachine: logits only."""

from __future__ import annotations

import torch.nn as nn


class LogitsOnly(nn.Module):
    """Wrap a network whose ``forward`` returns ``(features, logits)`` (xautodl's) so that it returns the logits.

    ``feature_module`` is kept as a plain attribute (not a registered child), so ``modules()``, ``parameters()`` and
    ``state_dict()`` see every layer exactly once, under ``net.``; ``copy.deepcopy`` keeps it pointing into the copy.
    """

    def __init__(self, net: nn.Module, feature_module: nn.Module):
        super().__init__()
        self.net = net
        self.__dict__["feature_module"] = feature_module

    def forward(self, x):
        return self.net(x)[1]
