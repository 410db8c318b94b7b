"""Disk cache of network probes, and probing of a whole sample through an executor.

A probe is stored per (probe settings, architecture index, arch string, pass) under a SHA-256 key of all of them,
as a ``torch.save`` file that is read back with ``weights_only=True`` (tensors only, no code). Results are written
as each network finishes, so an interrupted run keeps every probe it had made.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch

from greenmachine.probing.datasets import probe_batch
from greenmachine.errors import GreenmachineError
from greenmachine.executor import Executor, SerialExecutor
from greenmachine.probing.probe import GROUPS, NetworkProbe, ProbeSettings, probe_network

if TYPE_CHECKING:
    from greenmachine.energy.meter import Meter


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


@dataclass
class JobResult:
    """What one probing job returns: its value (a :class:`NetworkProbe`, or a baseline's scores), and what it cost.

    ``pass_seconds`` holds the seconds of each pass (probe group, or baseline proxy) run for the network;
    ``cpu_seconds`` the CPU time the job used in the process that ran it (``pid``), which the estimate meter adds
    when that process is a worker and not the one holding the meter."""

    index: int
    arch: str
    value: Any
    pass_seconds: dict[str, float]
    cpu_seconds: float
    pid: int


def _probe_job(settings: ProbeSettings, images, labels, job: tuple[int, str, tuple[str, ...]]) -> JobResult:
    """Probe one network, pass by pass, so that each pass has its own seconds (and its cache entry its own cost).

    Each pass builds the network afresh with the same seed (``init_network``), which gives the same tensors as one
    build shared by the passes (synflow works on a copy, the spectrum pass only moves BatchNorm running statistics,
    which train-mode outputs do not use) for the price of a build (10-100 ms on a CPU) per extra pass."""
    index, arch, groups = job
    cpu0 = time.process_time()
    tensors: dict = {}
    pass_seconds: dict[str, float] = {}
    for g in groups:
        part = probe_network(index, arch, settings, images, labels, (g,))
        tensors.update(part.tensors)
        pass_seconds[g] = part.seconds
    probe = NetworkProbe(index, arch, tensors, sum(pass_seconds.values()))
    return JobResult(index, arch, probe, pass_seconds, time.process_time() - cpu0, os.getpid())


def metered_map(
    fn: Callable[[Any], JobResult],
    jobs: Sequence[Any],
    executor: Executor | None = None,
    meter: "Meter | None" = None,
    progress: Callable[[Iterable, int], Iterable] = lambda it, total: it,
    label: str = "probing",
) -> Iterator[JobResult]:
    """The one metered probing loop: runs ``fn`` over ``jobs`` through ``executor`` inside one meter window (a
    batch of networks, never a single call), yields each result as it comes, and when the batch is done
    apportions the window's joules over the networks and passes by their seconds (``energy.meter.APPORTIONING``).

    ``probe_sample`` (evolve, score, the evolved columns of baselines, bench, search) and the baseline proxies of
    ``baselines`` both run through here."""
    executor = executor or SerialExecutor()
    if not jobs:
        return
    if meter is None:
        yield from progress(executor.map(fn, jobs), len(jobs))
        return
    me = os.getpid()
    done: list[tuple[int, str, dict[str, float]]] = []
    with meter.window(label) as win:
        for result in progress(executor.map(fn, jobs), len(jobs)):
            if result.pid != me:
                meter.add_worker_cpu_seconds(result.cpu_seconds)
            done.append((result.index, result.arch, result.pass_seconds))
            yield result
    meter.record_window(win, done, workers=getattr(executor, "workers", 1))


def probe_sample(
    items: Sequence[tuple[int, str]],
    settings: ProbeSettings,
    data_dir: str | Path,
    groups: Iterable[str] = tuple(GROUPS),
    cache: ProbeCache | None = None,
    executor: Executor | None = None,
    progress: Callable[[Iterable, int], Iterable] = lambda it, total: it,
    meter: "Meter | None" = None,
) -> list[NetworkProbe]:
    """Probe every ``(index, arch)`` of a sample, reading the cache first; returns probes in input order.

    A probe's ``seconds`` is what producing it took, once: a cached pass stores its own seconds, so a probe read
    back from the cache reports the sum of its passes, not that sum once per pass. With a ``meter``, the networks
    probed here are measured in one window (see :func:`metered_map`) and the ones read back from the cache are
    counted as such."""
    cache = cache or ProbeCache(None)
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
        elif meter is not None:
            meter.cached_networks.add(index)
    fn = partial(_probe_job, settings, images, labels)
    for result in metered_map(fn, jobs, executor, meter, progress, "probing"):
        fresh: NetworkProbe = result.value
        for g, s in result.pass_seconds.items():  # each pass file keeps the seconds of that pass only
            cache.save(settings, NetworkProbe(fresh.index, fresh.arch, fresh.tensors, s), g)
        probe = found[result.index]
        probe.tensors.update(fresh.tensors)
        probe.seconds += fresh.seconds
    return [found[i] for i, _ in items]
