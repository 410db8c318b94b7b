"""Disk cache of network probes, and probing of a whole sample through an executor.

A probe is stored per (probe settings, digest of the probe minibatch, architecture index, arch string, pass) under a
SHA-256 key of all of them, as a ``torch.save`` file that holds its key and is read back with ``weights_only=True``
(tensors only, no code) and checked (see :class:`ProbeCache`). Results are written
as each network finishes, so an interrupted run keeps every probe it had made.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import torch

from greenmachine.probing.datasets import images_digest, probe_batch
from greenmachine.errors import GreenmachineError
from greenmachine.executor import Executor, SerialExecutor
from greenmachine.files import atomic_open, check_writable_dir
from greenmachine.probing.memory import trim_heap
from greenmachine.probing.probe import DEFAULT_GROUPS, GROUPS, KERNEL_SIDE, NetworkProbe, ProbeSettings, probe_network

if TYPE_CHECKING:
    from greenmachine.energy.meter import Meter


def default_cache_dir() -> Path:
    env = os.environ.get("GREENMACHINE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "greenmachine"


MAX_GB_ENV = "GREENMACHINE_CACHE_MAX_GB"
# after going over its cap the cache is pruned to this fraction of it, so that the next few hundred entries are
# written without a scan of the folder each
PRUNE_TO = 0.9
# a temporary file of a writer killed mid-write is removed by a prune once it is this old (a live writer's file
# exists for the milliseconds of one write)
STALE_TMP_SECONDS = 3600.0


def max_bytes_from_env() -> int | None:
    """The cache cap of ``$GREENMACHINE_CACHE_MAX_GB`` (GB = 10^9 bytes), or None when unset or empty."""
    text = os.environ.get(MAX_GB_ENV, "").strip()
    if not text:
        return None
    return gb_to_bytes(text, f"${MAX_GB_ENV}")


def gb_to_bytes(value: float | str, what: str, allow_zero: bool = False) -> int:
    """A size in GB (10^9 bytes) given by a person, as bytes; anything but a finite positive number (or 0 where
    allowed) is a one-line error."""
    try:
        gb = float(value)
    except ValueError:
        raise GreenmachineError(f"{what} must be a number of GB, got {str(value)[:40]!r}") from None
    if not (0 <= gb if allow_zero else 0 < gb) or gb == float("inf"):
        raise GreenmachineError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} number of GB, "
                                f"got {str(value)[:40]!r}")
    return int(gb * 1e9)


def cache_root(cache_dir: str | Path | None) -> Path:
    """The cache folder a command uses: ``--cache-dir``, else ``$GREENMACHINE_CACHE``, else ~/.cache/greenmachine."""
    return Path(cache_dir) if cache_dir else default_cache_dir()


def open_cache(cache_dir: str | Path | None, no_cache: bool, data_dir: str | Path | None = None) -> "ProbeCache":
    """The probe cache of a command (:func:`cache_root`); none with ``--no-cache``; capped by
    ``$GREENMACHINE_CACHE_MAX_GB``. A folder that cannot be written is refused here, before probing, not at the
    first network's save."""
    if no_cache:
        return ProbeCache(None, data_dir=data_dir)
    root = cache_root(cache_dir)
    check_writable_dir(root, "--cache-dir" if cache_dir else "the probe cache folder")
    return ProbeCache(root, data_dir=data_dir, max_bytes=max_bytes_from_env())


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    space: str
    dataset: str
    group: str
    size: int
    last_used: float  # mtime: set when written and touched on every hit, so the oldest is the least recently used


@dataclass(frozen=True)
class PruneResult:
    removed: int
    freed: int  # bytes
    kept: int
    kept_bytes: int


CACHE_FORMAT = "greenmachine-probe-cache"
CACHE_FORMAT_VERSION = 2  # 2: the key holds the minibatch digest, the entry holds its key


@dataclass
class ProbeCache:
    """A folder of cached probes; ``root=None`` disables caching.

    An entry is one ``torch.save`` file per (probe settings, minibatch digest, index, arch, pass), named by the
    SHA-256 of that key and holding the key itself. It is used only if it proves it belongs there: read with
    ``weights_only=True`` (tensors and plain containers, no code), its stored key equal to the one asked for,
    every terminal of the pass present with the shapes the pass produces, every value finite. Anything else (a
    file cut short, an entry of another architecture or minibatch, a pass missing, NaN or inf) is a miss: the
    network is probed again and the entry rewritten, never used and never a permanent failure. Writers go through
    a uniquely named temporary file and ``os.replace``, so two runs sharing a cache never leave a half or mixed
    entry.

    The minibatch digest comes from ``settings.images_digest`` or, where that is empty, from ``data_dir`` (the
    folder the images are read from); with neither, nothing is cached, since other images could then hit.
    """

    root: Path | None
    data_dir: str | Path | None = None
    # when set, the least recently used entries are removed once the folder holds more than this (see ``save``)
    max_bytes: int | None = None
    _bytes: int | None = field(default=None, repr=False, compare=False)  # this process's running estimate
    # set when a write found the disk full: from then on this process probes without caching (see ``save``)
    full: str | None = field(default=None, repr=False, compare=False)

    def key(self, settings: ProbeSettings, index: int, arch: str, group: str) -> str | None:
        """The entry's key as canonical JSON, or None when the minibatch digest cannot be known."""
        digest = getattr(settings, "images_digest", "")
        if not digest and self.data_dir is not None:
            digest = images_digest(str(self.data_dir), settings.dataset, settings.batch_size, settings.batch_seed)
        if not digest:
            return None
        fields = {**settings.key(), "images_digest": digest}
        return json.dumps({"format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, "settings": fields,
                           "index": int(index), "arch": arch, "group": group}, sort_keys=True)

    def _path(self, key: str, settings: ProbeSettings, group: str) -> Path:
        assert self.root is not None
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.root / settings.space / settings.dataset / f"{group}-{digest}.pt"

    def load(self, settings: ProbeSettings, index: int, arch: str, group: str) -> tuple[dict, float] | None:
        """The cached tensors and probe seconds of one pass, or None (a miss) unless the entry checks out."""
        if self.root is None or group not in GROUPS:
            return None
        key = self.key(settings, index, arch, group)
        if key is None:
            return None
        path = self._path(key, settings, group)
        if not path.is_file():  # also keeps a FIFO or device planted under the name from blocking the read
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # cut short by a killed run, or not a torch file at all
            return None
        if not isinstance(obj, dict) or obj.get("key") != key:
            return None
        tensors, seconds = obj.get("tensors"), obj.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < float("inf"):
            return None
        if not valid_pass(tensors, group, settings.batch_size):
            return None
        with contextlib.suppress(OSError):  # a hit is a use: the least recently used entries go first
            os.utime(path)
        return tensors, float(seconds)

    def save(self, settings: ProbeSettings, probe: NetworkProbe, group: str) -> None:
        """Store one pass of ``probe`` atomically (a probe that fails the load-time checks is not stored).

        A full disk (or quota) does not stop the run that hit it: hours of probing would be lost for a cache, which
        only saves time later. One warning line goes to stderr, the entry's temporary file is removed, and this
        process probes on without caching. Any other write error (a folder made read-only meanwhile) is the
        one-line cache error."""
        if self.root is None or self.full is not None:
            return
        key = self.key(settings, probe.index, probe.arch, group)
        if key is None:
            return
        tensors = {k: probe.tensors[k] for k in GROUPS[group]}
        if not valid_pass(tensors, group, settings.batch_size):
            return  # it would be a miss on load anyway
        path = self._path(key, settings, group)
        if path.is_dir():  # something planted under the entry's name: leave it, probing goes on uncached
            return
        # serialised in memory first: torch.save writing to a file on a full disk fails inside its zip writer
        # with a RuntimeError ("unexpected pos"), which would surface as an internal error; a plain write
        # raises OSError (ENOSPC), handled below
        buffer = io.BytesIO()
        torch.save({"key": key, "tensors": tensors, "seconds": float(probe.seconds)}, buffer)
        try:
            with atomic_open(path, binary=True) as f:
                f.write(buffer.getbuffer())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.full = str(exc)
                print(f"warning: the probe cache under {self.root} is out of space ({exc.strerror}): probing goes "
                      f"on without caching; free space, cap it with ${MAX_GB_ENV} or run `greenmachine cache "
                      f"prune`", file=sys.stderr, flush=True)
                return
            raise GreenmachineError(f"cannot write the probe cache under {self.root}: {exc}") from None
        if self.max_bytes is not None:
            self._account(buffer.getbuffer().nbytes)

    def _account(self, written: int) -> None:
        """Keep the folder under ``max_bytes``. The folder is scanned once, then this process adds what it writes;
        over the cap it scans again (other processes sharing the folder write too) and prunes to
        :data:`PRUNE_TO` of the cap, oldest entries first, so that a scan comes once per many writes."""
        assert self.max_bytes is not None
        if self._bytes is None:
            self._bytes = sum(e.size for e in self.entries())
        else:
            self._bytes += written
        if self._bytes > self.max_bytes:
            self._bytes = self.prune(int(self.max_bytes * PRUNE_TO)).kept_bytes

    def entries(self) -> list[CacheEntry]:
        """Every entry file under the root (``<space>/<dataset>/<pass>-<hash>.pt``), oldest use first."""
        out: list[CacheEntry] = []
        if self.root is None or not self.root.is_dir():
            return out
        for path in self.root.glob("*/*/*.pt"):
            group = path.name.partition("-")[0]
            if group not in GROUPS:  # also a writer's ".<name>.<random>.tmp", which the pattern does not match anyway
                continue
            try:
                st = path.stat()
            except OSError:  # removed meanwhile by another process
                continue
            if stat.S_ISREG(st.st_mode):
                out.append(CacheEntry(path, path.parent.parent.name, path.parent.name, group, st.st_size,
                                      st.st_mtime))
        out.sort(key=lambda e: (e.last_used, str(e.path)))
        return out

    def prune(self, max_bytes: int) -> PruneResult:
        """Remove the least recently used entries until the rest hold at most ``max_bytes``, and temporary files
        left by killed writers (older than :data:`STALE_TMP_SECONDS`)."""
        entries = self.entries()
        total = sum(e.size for e in entries)
        removed = freed = gone = 0
        for e in entries:
            if total <= max_bytes:
                break
            try:
                e.path.unlink()
                removed += 1
                freed += e.size
            except FileNotFoundError:  # another process pruned it first: neither ours to count nor kept
                gone += 1
            total -= e.size
        if self.root is not None and self.root.is_dir():
            now = time.time()
            for tmp in self.root.glob("*/*/.*.tmp"):
                with contextlib.suppress(OSError):
                    if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                        tmp.unlink()
        return PruneResult(removed, freed, len(entries) - removed - gone, total)


def _tensor_list(value: object, ndim: int, dtype: torch.dtype) -> list[torch.Tensor] | None:
    if not isinstance(value, list) or not value:
        return None
    for t in value:
        if not isinstance(t, torch.Tensor) or t.dim() != ndim or t.dtype != dtype or not bool(torch.isfinite(t).all()):
            return None
    return value


def valid_pass(tensors: object, group: str, batch_size: int) -> bool:
    """Whether ``tensors`` is what the pass ``group`` of probe.py produces: every terminal of the pass, a
    non-empty list per terminal with the dtype, rank and (where fixed by the pass) shape it has, all values finite.

    Finite because no pass can produce NaN or inf: weights are finite, gradients come from a finite loss, kernels
    are counts and cosines, and the eigenvalues and the Jacobian correlations are kept with NaN entries zeroed.
    """
    if not isinstance(tensors, dict) or set(tensors) != set(GROUPS.get(group, ())):
        return False
    if group == "synflow":
        return _tensor_list(tensors["synflow_grad"], 1, torch.float64) is not None
    if group == "spectrum":
        return _tensor_list(tensors["corr_eig"], 1, torch.float64) is not None
    if group == "swap":  # one count per network
        counts = _tensor_list(tensors["swap"], 1, torch.float64)
        return counts is not None and len(counts) == 1 and counts[0].shape == (1,) and bool(counts[0][0] >= 0)
    if group in KERNEL_SIDE:  # one kernel per network
        (name,) = GROUPS[group]
        side = KERNEL_SIDE[group](batch_size)
        kernels = _tensor_list(tensors[name], 2, torch.float64)
        return kernels is not None and len(kernels) == 1 and kernels[0].shape == (side, side)
    weight = _tensor_list(tensors["weight"], 1, torch.float32)
    grad = _tensor_list(tensors["grad"], 1, torch.float32)
    act = _tensor_list(tensors["act"], 2, torch.float64)
    act_grad = _tensor_list(tensors["act_grad"], 2, torch.float64)
    kernels = [_tensor_list(tensors[k], 2, torch.float64) for k in ("relu_kernel", "act_cosine")]
    if weight is None or grad is None or act is None or act_grad is None or any(k is None for k in kernels):
        return False
    if len(weight) != len(grad) or any(w.shape != g.shape for w, g in zip(weight, grad)):
        return False
    n_relu = len(act)
    if len(act_grad) != n_relu or any(len(k) != n_relu for k in kernels):
        return False
    if any(a.shape != g.shape or a.shape[0] != batch_size for a, g in zip(act, act_grad)):
        return False
    return all(t.shape == (batch_size, batch_size) for k in kernels for t in k)


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
    """Probe one network: one build, the passes run by ``probe_network`` (the ce and spectrum passes share one
    forward when both are asked for), each pass with its own seconds (and its cache entry its own cost)."""
    index, arch, groups = job
    cpu0 = time.process_time()
    part = probe_network(index, arch, settings, images, labels, groups)
    pass_seconds = {g: part.pass_seconds.get(g, 0.0) for g in groups}
    probe = NetworkProbe(index, arch, part.tensors, sum(pass_seconds.values()))
    del part
    trim_heap()  # the network's transient tensors are freed: give their pages back (probing/memory.py)
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
    groups: Iterable[str] = DEFAULT_GROUPS,
    cache: ProbeCache | None = None,
    executor: Executor | None = None,
    progress: Callable[[Iterable, int], Iterable] = lambda it, total: it,
    meter: "Meter | None" = None,
) -> list[NetworkProbe]:
    """Probe every ``(index, arch)`` of a sample, reading the cache first; returns probes in input order.

    A probe's ``seconds`` is what producing it took, once: a cached pass stores its own seconds, so a probe read
    back from the cache reports the sum of its passes, not that sum once per pass; its ``pass_seconds`` has each
    pass's own, cached or fresh (so that several trees sharing one probe can each be charged their passes only).
    With a ``meter``, the networks probed here are measured in one window (see :func:`metered_map`) and the ones
    read back from the cache are counted as such."""
    cache = cache or ProbeCache(None)
    groups = tuple(groups)
    images, labels = probe_batch(str(data_dir), settings.dataset, settings.batch_size, settings.batch_seed)
    found: dict[int, NetworkProbe] = {}
    jobs = []
    for index, arch in items:
        tensors: dict = {}
        pass_seconds: dict[str, float] = {}
        missing = []
        for g in groups:
            hit = cache.load(settings, index, arch, g)
            if hit is None:
                missing.append(g)
            else:
                tensors.update(hit[0])
                pass_seconds[g] = hit[1]
        found[index] = NetworkProbe(index, arch, tensors, sum(pass_seconds.values()), pass_seconds)
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
        probe.pass_seconds.update(result.pass_seconds)
    return [found[i] for i, _ in items]
