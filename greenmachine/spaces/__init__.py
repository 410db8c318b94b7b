"""The search-space registry: one line per space. Everything else asks here for the list of spaces and datasets.

A space is one :class:`greenmachine.spaces.base.SearchSpace` object in one module (architectures, validation,
networks returning logits, ground truth, search operators); adding a benchmark is that module plus one line below.
"""

from __future__ import annotations

from functools import lru_cache

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.base import SearchSpace, count_params

_REGISTRY: dict[str, tuple[str, str]] = {  # name -> (module, class)
    "tss": ("greenmachine.spaces.tss", "TSS"),
    "sss": ("greenmachine.spaces.sss", "SSS"),
    "ecnas-4v": ("greenmachine.spaces.ecnas", "ECNAS4V"), "ecnas-5v": ("greenmachine.spaces.ecnas", "ECNAS5V"),
}


def space_names() -> tuple[str, ...]:
    """The registered spaces, in registry order (the ``--space`` choices)."""
    return tuple(_REGISTRY)


@lru_cache(maxsize=None)
def get_space(name: str) -> SearchSpace:
    """The space registered as ``name``; a one-line error names the known ones otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise GreenmachineError(f"unknown search space {str(name)[:40]!r}; choose one of: {', '.join(_REGISTRY)}")
    import importlib

    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


def dataset_names() -> tuple[str, ...]:
    """Every dataset some registered space has ground truth for (the ``--dataset`` choices), in first-seen order."""
    seen: dict[str, None] = {}
    for name in _REGISTRY:
        seen.update(dict.fromkeys(get_space(name).datasets))
    return tuple(seen)


__all__ = ["SearchSpace", "count_params", "dataset_names", "get_space", "space_names"]
