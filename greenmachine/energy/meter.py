"""Energy meters: what a command spends, measured where the machine allows it, estimated (and labelled) otherwise.

The fall-back chain, decided once per command by :func:`make_meter`:

1. ``nvml`` -- probing on a CUDA device: the GPU's cumulative energy counter
   (``nvmlDeviceGetTotalEnergyConsumption``), read through zeus' :class:`~zeus.monitor.ZeusMonitor`. If the host
   also exposes RAPL, the CPU package energy of the same windows is added (``components_j`` says how much of each).
2. ``rapl`` -- no GPU in use, but ``/sys/class/powercap/intel-rapl`` is readable: the CPU package counters, again
   through zeus. RAPL counts the whole package, i.e. every process on the machine, not only this one.
3. ``estimate`` -- neither is readable (a container, a VM, an AMD host without the powercap driver, no root): the
   CPU time of this process and of its probing workers, times a configurable power per busy core,
   ``cpu_watts_per_core`` (default :data:`DEFAULT_CPU_WATTS_PER_CORE` = 12 W). The default is the "Any" row of the
   Green Algorithms processor table (Lannelongue et al., Adv. Sci. 2021, ``data/TDP_cpu.csv`` of
   GreenAlgorithms/green-algorithms-tool): TDP per core of an unknown CPU. CPU time rather than wall time, because on a
   shared machine the wall clock also runs while other users' jobs hold the cores. Every figure from this meter
   carries ``estimated: true`` and ``source: "estimate"``.

Windows are opened around batches of networks (one per :func:`~greenmachine.probing.cache.probe_sample` call), never
around single sub-second calls: NVML's counter moves every few tens of milliseconds and RAPL's every millisecond, so
a window of one 50 ms pass would read mostly quantisation. A meter also keeps a running total from its creation;
:meth:`Meter.joules` returns it (the search engine writes it to ``history.csv`` after every generation).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

DEFAULT_CPU_WATTS_PER_CORE = 12.0
SOURCES = ("nvml", "rapl", "estimate")
APPORTIONING = (
    "a window's joules (one window per batch of networks) are split over the probe passes run in it in proportion "
    "to their probe seconds; with several workers on one device every worker's draw lands in the same window, so a "
    "network's share is its own probe seconds over the summed probe seconds of all networks in that window "
    "(overheads in the window, such as cache writes, are shared the same way)"
)


def apportion(joules: float, seconds: Sequence[float]) -> list[float]:
    """Split ``joules`` over jobs in proportion to their ``seconds`` (evenly when no job took measurable time).

    Why seconds and not wall time x power: with W workers sharing a device, W networks run at once and the device
    counter sees their summed draw; each network's busy seconds are its share of that draw."""
    if not seconds:
        return []
    total = float(sum(seconds))
    if total <= 0.0:
        return [joules / len(seconds)] * len(seconds)
    return [joules * s / total for s in seconds]


@dataclass
class Window:
    """One measured window: a batch of networks (or any labelled stretch of work)."""

    label: str
    seconds: float = 0.0
    joules: float = 0.0
    components_j: dict[str, float] = field(default_factory=dict)


@dataclass
class PassEnergy:
    """Seconds and joules of one probe pass of one network (joules apportioned from its window)."""

    index: int
    arch: str
    group: str
    seconds: float
    joules: float


class Meter:
    """A cumulative energy counter with nested windows. Subclasses supply :meth:`_read` (cumulative joules per
    component since the meter started); everything else (windows, totals, per-network records) is shared."""

    source: str = "estimate"
    estimated: bool = True

    def __init__(self, detail: str = ""):
        self.detail = detail  # why this source (e.g. why no RAPL): goes into the JSON
        self.windows: list[Window] = []
        self.passes: list[PassEnergy] = []  # per network and per probe pass, filled by probe_sample
        self.cached_networks: set[int] = set()  # probed networks read back from the cache (nothing spent here)
        self.workers = 1  # the most workers that shared the device in any probing window
        self._t0 = time.perf_counter()

    # -- to implement --------------------------------------------------------------------------------------------
    def _read(self) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------------------------------
    def joules(self) -> float:
        """Cumulative joules measured so far by this meter (since it was created, in this process)."""
        return sum(self._read().values())

    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def add_worker_cpu_seconds(self, seconds: float) -> None:
        """CPU time spent by a probing worker in another process. Only the estimate needs it: NVML and RAPL count
        the device, whoever runs on it."""

    @contextmanager
    def window(self, label: str) -> Iterator[Window]:
        """Measure the enclosed work; the window is recorded (and returned) when the block ends."""
        win = Window(label)
        t0, e0 = time.perf_counter(), self._read()
        try:
            yield win
        finally:
            e1 = self._read()
            win.seconds = time.perf_counter() - t0
            win.components_j = {k: e1.get(k, 0.0) - e0.get(k, 0.0) for k in e1}
            win.joules = sum(win.components_j.values())
            self.windows.append(win)

    def record_window(self, window: Window, networks: Sequence[tuple[int, str, dict[str, float]]],
                      workers: int = 1) -> list[PassEnergy]:
        """Apportion ``window``'s joules over the ``(index, arch, {pass: seconds})`` probed in it (see
        :data:`APPORTIONING`) and keep the per-pass records."""
        flat = [(i, a, g, s) for i, a, per_pass in networks for g, s in per_pass.items()]
        shares = apportion(window.joules, [s for *_, s in flat])
        records = [PassEnergy(i, a, g, s, j) for (i, a, g, s), j in zip(flat, shares)]
        self.passes.extend(records)
        self.workers = max(self.workers, int(workers))
        return records

    def probing_joules(self) -> float:
        return sum(p.joules for p in self.passes)

    def probed_networks(self) -> int:
        """Distinct networks probed (not read from the cache) while this meter ran."""
        return len({p.index for p in self.passes})

    def describe(self) -> str:
        """Short label for tables: ``measured, NVML`` or ``estimated, CPU``."""
        if self.source == "nvml":
            return "measured, NVML"
        if self.source == "rapl":
            return "measured, RAPL"
        return "estimated, CPU"

    def info(self) -> dict[str, Any]:
        """How this meter measures, for the JSON block."""
        return {"detail": self.detail}


class EstimateMeter(Meter):
    """CPU time x watts per core (see the module docstring for the default and its source)."""

    source = "estimate"
    estimated = True

    def __init__(self, cpu_watts_per_core: float = DEFAULT_CPU_WATTS_PER_CORE, detail: str = "",
                 process_time: Callable[[], float] = time.process_time):
        if not (math.isfinite(cpu_watts_per_core) and cpu_watts_per_core > 0):
            raise ValueError(f"cpu_watts_per_core must be positive and finite, not {cpu_watts_per_core}")
        super().__init__(detail)
        self.cpu_watts_per_core = float(cpu_watts_per_core)
        self._process_time = process_time
        self._cpu0 = process_time()
        self._worker_cpu = 0.0

    def add_worker_cpu_seconds(self, seconds: float) -> None:
        self._worker_cpu += max(0.0, float(seconds))

    def cpu_seconds(self) -> float:
        return self._process_time() - self._cpu0 + self._worker_cpu

    def _read(self) -> dict[str, float]:
        return {"cpu": self.cpu_seconds() * self.cpu_watts_per_core}

    def info(self) -> dict[str, Any]:
        return {"detail": self.detail, "cpu_watts_per_core": self.cpu_watts_per_core,
                "cpu_seconds": round(self.cpu_seconds(), 3),
                "rule": "CPU time of this process and of its probing workers x cpu_watts_per_core"}


class ZeusMeter(Meter):
    """NVML (GPU) and/or RAPL (CPU package) energy through one zeus ``ZeusMonitor``.

    zeus measures windows, not a free-running counter, so the cumulative reading closes and reopens one private
    window (``greenmachine-total``): nested and overlapping user windows then cost nothing extra."""

    estimated = False
    _KEY = "greenmachine-total"

    def __init__(self, monitor, source: str, detail: str = ""):
        super().__init__(detail)
        self.source = source
        self.monitor = monitor
        self._acc = {"gpu": 0.0, "cpu": 0.0}
        self.monitor.begin_window(self._KEY)

    def _read(self) -> dict[str, float]:
        m = self.monitor.end_window(self._KEY)
        self.monitor.begin_window(self._KEY)
        self._acc["gpu"] += sum((m.gpu_energy or {}).values())
        self._acc["cpu"] += sum((m.cpu_energy or {}).values())
        return {k: v for k, v in self._acc.items() if k == "gpu" and self.monitor.gpu_indices
                or k == "cpu" and self.monitor.cpu_indices}

    def info(self) -> dict[str, Any]:
        return {"detail": self.detail, "gpu_indices": list(self.monitor.gpu_indices),
                "cpu_packages": list(self.monitor.cpu_indices)}


def _zeus_monitor(gpu_indices: list[int], cpu_indices: list[int] | None):
    import logging

    from zeus.monitor import ZeusMonitor

    logging.getLogger("zeus").setLevel(logging.WARNING)  # zeus logs every window at INFO
    return ZeusMonitor(gpu_indices=gpu_indices, cpu_indices=cpu_indices)


def _cuda_index(device: str) -> int | None:
    """The CUDA device index a ``--device`` string names, or None when it is not a usable CUDA device."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    d = torch.device(device)
    return d.index if d.index is not None else torch.cuda.current_device()


def make_meter(device: str = "cpu", cpu_watts_per_core: float = DEFAULT_CPU_WATTS_PER_CORE,
               monitor_factory: Callable[..., Any] | None = None) -> Meter:
    """The best meter this machine allows for work on ``device`` (the chain in the module docstring).

    ``monitor_factory(gpu_indices, cpu_indices)`` builds the zeus monitor; tests hand in fakes."""
    factory = monitor_factory or _zeus_monitor
    reasons = []
    gpu = _cuda_index(device)
    if gpu is not None:
        try:
            mon = factory(gpu_indices=[gpu], cpu_indices=None)
            if list(mon.gpu_indices):
                rapl = " and CPU package energy from RAPL" if list(mon.cpu_indices) else " (no readable RAPL: GPU only)"
                return ZeusMeter(mon, "nvml", f"GPU {gpu} energy counter via NVML (zeus){rapl}")
            reasons.append("zeus found no NVML energy counter")
        except Exception as exc:  # noqa: BLE001 - any failure of the driver means: fall back, and say why
            reasons.append(f"NVML unavailable ({type(exc).__name__}: {exc})")
    elif device.startswith("cuda"):
        reasons.append("no CUDA device")
    try:
        mon = factory(gpu_indices=[], cpu_indices=None)
        if list(mon.cpu_indices):
            why_not_gpu = f" ({'; '.join(reasons)})" if reasons else ""
            return ZeusMeter(mon, "rapl", f"CPU package energy via RAPL (zeus), packages {list(mon.cpu_indices)}; "
                                          f"RAPL counts every process on the package{why_not_gpu}")
        reasons.append("no readable RAPL counters (/sys/class/powercap absent or not readable)")
    except Exception as exc:  # noqa: BLE001
        reasons.append(f"RAPL unavailable ({type(exc).__name__}: {exc})")
    return EstimateMeter(cpu_watts_per_core, detail="; ".join(reasons))

