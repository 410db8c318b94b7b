"""Give the heap back to the operating system between networks, so that a process's resident memory is what it
holds and not what it once touched.

Why: probing a network allocates a few hundred megabytes of short-lived activations, gradients and kernels,
most of them below glibc's (dynamic, up to 32 MiB) mmap threshold, so they come from the heap. When they are
freed, the heap keeps them: the next network's tensors have other sizes and land elsewhere, and the freed pages
stay resident. Measured on TSS / CIFAR-10 (batch 64, 40 networks probed in one process and their probes kept,
0.39 GB of them): 2.99 GB resident without trimming, 0.66 GB with ``malloc_trim`` after every network. The default
200-network evolution peaked at 12.4 GB for 2.1 GB of probes before this module.

Lowering the mmap threshold instead (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``) bounds memory too but made probing
2.4x slower (every large tensor is fresh zeroed pages); trimming after every network cost about 20 %. So the heap
is trimmed only when the resident set has grown by :data:`TRIM_GROWTH_BYTES` (256 MiB) since the last trim: after
each probed network and after each evaluation chunk of a tree. Measured on the default evolution from a warm
probe cache (2.07 GB of terminals, 64 MiB chunks): no trimming 4.95 GB peak and 36.6 s; 512 MiB 3.02 GB, 42.3 s;
256 MiB 2.84 GB, 56.3 s; 128 MiB 2.71 GB, 59.9 s (each trim gives pages back that the next chunk faults in
again). Probing pays the same way: ``make bench`` (20 TSS networks) gives probe / forward+backward 1.43 without
trimming, 1.47 with a 1 GiB threshold and 1.77 with 256 MiB, on a machine (a microVM) where page faults are
expensive. The default keeps the evolution's memory bound; ``GREENMACHINE_TRIM_BYTES`` trades it for speed.
Outside glibc (macOS, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

# trim when resident memory has grown by this much since the last trim: the most a process holds above its live
# data (``GREENMACHINE_TRIM_BYTES`` overrides it)
TRIM_GROWTH_BYTES = 256 * 2**20
TRIM_ENV = "GREENMACHINE_TRIM_BYTES"
# ``GREENMACHINE_MEMORY_CHECK=0`` lets an evolution go on where :func:`check_room_for` would stop it
MEMORY_CHECK_ENV = "GREENMACHINE_MEMORY_CHECK"
# what probing one more network and evaluating a tree's chunk take beside the terminals held (the transients that
# the trimming above bounds: a few hundred MB on TSS and SSS)
WORKING_MARGIN_BYTES = 512 * 2**20

_last_trim_rss = 0


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is none."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def resident_bytes() -> int:
    """This process's resident set size now, in bytes (0 where /proc is not readable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_growth_bytes() -> int:
    """:data:`TRIM_GROWTH_BYTES`, or ``GREENMACHINE_TRIM_BYTES`` where set (a non-negative integer; 0 trims after
    every network and chunk)."""
    raw = os.environ.get(TRIM_ENV, "").strip()
    if not raw:
        return TRIM_GROWTH_BYTES
    if not raw.isdigit():
        from greenmachine.errors import GreenmachineError

        raise GreenmachineError(f"{TRIM_ENV} must be a non-negative integer number of bytes, not {raw!r}")
    return int(raw)


def trim_heap(force: bool = False) -> bool:
    """Return freed heap pages to the OS if the resident set grew by :data:`TRIM_GROWTH_BYTES` since the last trim
    (or always, with ``force``); True when a trim ran."""
    global _last_trim_rss
    trim = _malloc_trim()
    if trim is None:
        return False
    rss = resident_bytes()
    if not force and rss - _last_trim_rss < trim_growth_bytes():
        return False
    trim(0)
    _last_trim_rss = resident_bytes()
    return True


def meminfo_bytes(field: str) -> int | None:
    """One field of /proc/meminfo (``MemTotal``, ``MemAvailable``, ...) in bytes; None where it cannot be read
    (macOS)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> int | None:
    """The memory the kernel says a new allocation can take now without swapping (``MemAvailable``), in bytes."""
    return meminfo_bytes("MemAvailable")


def check_room_for(more: int, what: str, remedy: str) -> None:
    """Stop, with one line, before holding ``more`` bytes that this machine does not have.

    Why: an evolution keeps every probe of its sample in memory for the whole run, once per initialisation and per
    dataset (``--inits``, ``--datasets``). The first set of probes says what each next one holds exactly, so the
    run stops there, with its probes in the cache, rather than being killed by the kernel an hour later. ``what``
    names what would hold them ("evolve: 2 more probings of the sample"), ``remedy`` what to change;
    ``GREENMACHINE_MEMORY_CHECK=0`` skips the check (for a machine whose swap is meant to take it)."""
    if os.environ.get(MEMORY_CHECK_ENV, "").strip() == "0":
        return
    free = available_bytes()
    if free is None or more + WORKING_MARGIN_BYTES <= free:
        return
    from greenmachine.errors import GreenmachineError

    raise GreenmachineError(
        f"{what} would hold about {more / 1e9:.1f} GB more of probes, and {free / 1e9:.1f} GB of memory is available"
        f" (less {WORKING_MARGIN_BYTES // 2**20} MB to work in); {remedy}, or set {MEMORY_CHECK_ENV}=0 to go on")
