"""Disk cache of network probes, and probing of a whole sample through an executor.

A probe is stored per (probe settings, architecture index, arch string, pass) under a SHA-256 key of all of them,
as a ``torch.save`` file that is read back with ``weights_only=True`` (tensors only, no code). Results are written
as each network finishes, so an interrupted run keeps every probe it had made.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from greenmachine.probing.datasets import probe_batch
from greenmachine.errors import GreenmachineError
from greenmachine.executor import Executor, SerialExecutor
from greenmachine.probing.probe import GROUPS, NetworkProbe, ProbeSettings, probe_network


def default_cache_dir() -> Path:
    env = os.environ.get("GREENMACHINE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "greenmachine"


@dataclass
class ProbeCache:
    """A folder of cached probes; ``root=None`` disables caching."""

    root: Path | None

    def _path(self, settings: ProbeSettings, index: int, arch: str, group: str) -> Path:
        assert self.root is not None
        key = json.dumps({"settings": settings.key(), "index": index, "arch": arch, "group": group}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / settings.space / settings.dataset / f"{group}-{digest}.pt"

    def load(self, settings: ProbeSettings, index: int, arch: str, group: str) -> tuple[dict, float] | None:
        if self.root is None:
            return None
        path = self._path(settings, index, arch, group)
        if not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return obj["tensors"], float(obj["seconds"])
        except Exception:  # a file cut short by a killed run: probe again
            return None

    def save(self, settings: ProbeSettings, probe: NetworkProbe, group: str) -> None:
        if self.root is None:
            return
        path = self._path(settings, probe.index, probe.arch, group)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tensors = {k: probe.tensors[k] for k in GROUPS[group]}
            torch.save({"tensors": tensors, "seconds": probe.seconds}, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise GreenmachineError(f"cannot write the probe cache under {self.root}: {exc}") from None


def _probe_job(settings: ProbeSettings, images, labels, job: tuple[int, str, tuple[str, ...]]) -> NetworkProbe:
    index, arch, groups = job
    return probe_network(index, arch, settings, images, labels, groups)


def probe_sample(
    items: Sequence[tuple[int, str]],
    settings: ProbeSettings,
    data_dir: str | Path,
    groups: Iterable[str] = tuple(GROUPS),
    cache: ProbeCache | None = None,
    executor: Executor | None = None,
    progress: Callable[[Iterable, int], Iterable] = lambda it, total: it,
) -> list[NetworkProbe]:
    """Probe every ``(index, arch)`` of a sample, reading the cache first; returns probes in input order."""
    cache = cache or ProbeCache(None)
    executor = executor or SerialExecutor()
    groups = tuple(groups)
    images, labels = probe_batch(str(data_dir), settings.dataset, settings.batch_size, settings.batch_seed)
    found: dict[int, NetworkProbe] = {}
    jobs = []
    for index, arch in items:
        tensors: dict = {}
        seconds = 0.0
        missing = []
        for g in groups:
            hit = cache.load(settings, index, arch, g)
            if hit is None:
                missing.append(g)
            else:
                tensors.update(hit[0])
                seconds += hit[1]
        found[index] = NetworkProbe(index, arch, tensors, seconds)
        if missing:
            jobs.append((index, arch, tuple(missing)))
    fn = partial(_probe_job, settings, images, labels)
    for result in progress(executor.map(fn, jobs), len(jobs)):
        for g in GROUPS:
            if set(GROUPS[g]) <= set(result.tensors):
                cache.save(settings, result, g)
        probe = found[result.index]
        probe.tensors.update(result.tensors)
        probe.seconds += result.seconds
    return [found[i] for i, _ in items]
