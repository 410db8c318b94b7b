"""Map-style executors: the one seam through which probing, fitness evaluation, scoring and search run.

This is DEAP's ``toolbox.map`` idiom: the GP code calls ``executor.map(fn, items)`` and never knows whether the
work runs in this process (``serial``), in a local process pool (``process``) or on a Ray cluster (``ray``), whose
``map`` has the same shape: results come back in the order of ``items``, lazily, so a caller can stream them.

Why Ray and not a home-made scheduler: researchers who outgrow one machine (1,000-5,000-network samples, several
datasets, many seeds) often already run a Ray cluster, and Ray places tasks on CPUs and GPU shares, moves
arguments through its object store and restarts nothing we would have to write. ``--ray-address`` is optional:
without it a local Ray instance sized to this machine is started (and shut down at the end); ``auto`` joins the
cluster that ``ray start --head`` made.

Stateful work (the fitness shards of :mod:`greenmachine.search.shards`, which keep a fixed part of the probed
sample in a worker across generations) uses :meth:`RayExecutor.actor` or a forked process per shard; plain
``map`` is for stateless jobs (one network to probe, one architecture to score).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import socket
import warnings
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

from greenmachine.errors import GreenmachineError

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("serial", "process", "ray")
# A probe or scoring task on a GPU node asks for this share of a GPU: small NAS-Bench networks at batch 64 use a
# few hundred MB and a fraction of the SMs, so four tasks share one GPU well; Ray never places more than that.
DEFAULT_GPU_SHARE = 0.25
ADDRESS_TIMEOUT_S = 5.0  # how long an explicit --ray-address may take to accept a TCP connection


class Executor(Protocol):
    workers: int
    # whether what the workers hold (an evolution's fitness shards) lives in this machine's memory
    local: bool

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


def set_torch_threads(threads: int) -> None:
    """One worker, ``threads`` cores: with N workers on N cores, torch's own intra-op threads would oversubscribe
    the machine (N x cores threads) and run slower than one thread each."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class SerialExecutor:
    """Runs everything in this process, lazily and in order (results stream as they are ready)."""

    kind = "serial"
    workers = 1
    local = True

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return map(fn, items)

    def close(self) -> None:
        pass


def _init_worker() -> None:
    set_torch_threads(1)  # one core per worker: the pool, not torch, parallelises


class ProcessExecutor:
    """A local process pool (fork); results come back in order. Functions and items must be picklable."""

    kind = "process"
    local = True

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
        )

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return self._pool.map(fn, items)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor moved to the CPU (lists, tuples, dicts and dataclasses walked): what a GPU
    worker sends back must be usable on a driver that has no GPU."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.cpu() if value.device.type != "cpu" else value
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            w = to_cpu(v)
            if w is not v:
                object.__setattr__(value, f.name, w)
        return value
    return value


def _ray_task(fn: Callable[[T], R], item: T, threads: int) -> R:
    """What one Ray task runs: set the thread budget of this worker, call, send tensors back on the CPU."""
    set_torch_threads(threads)
    return to_cpu(fn(item))


def _import_ray():
    # Ray's C++ client logs every failed GCS retry on stderr (read when ray is imported); a user error stays one line
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise GreenmachineError("--executor ray needs Ray, which is not installed: pip install 'ray==2.54.1' "
                                "(or make install)") from None
    return ray


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 into a scratch file while Ray connects: its C++ client writes a line per failed retry
    straight to fd 2, and a user error must end in one line (the exception says what went wrong)."""
    import tempfile

    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes: Ray retries an unreachable GCS address for about two minutes before it
    gives up, so an explicit ``host:port`` is first tried with one TCP connection."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise GreenmachineError(f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_TIMEOUT_S):
            pass
    except OSError as exc:
        raise GreenmachineError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc})") \
            from None


class RayExecutor:
    """Tasks on a Ray cluster, or on a local Ray instance started here.

    ``workers`` caps the tasks in flight (default: the cluster's CPUs divided by ``cpus_per_task``); each task asks
    Ray for ``cpus_per_task`` CPUs, sets torch to that many threads, and on ``device="cuda"`` asks for
    ``gpu_share`` of a GPU. Results come back in input order, with tensors on the CPU. If Ray was already
    initialised in this process (a notebook, a test), that instance is used and left running by :meth:`close`.
    """

    kind = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, device: str = "cpu",
                 cpus_per_task: int = 1, gpu_share: float = DEFAULT_GPU_SHARE):
        ray = _import_ray()
        self._ray = ray
        self.cpus_per_task = max(1, int(cpus_per_task))
        self.local = not address  # a local instance started here; a cluster's memory is its nodes'
        self.num_gpus = float(gpu_share) if str(device).startswith("cuda") else 0.0
        self._owns = False
        if not ray.is_initialized():
            # silence Ray's start-up chatter and its future-default warning; errors still surface as exceptions
            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                                      "log_to_driver": False, "configure_logging": True}
            if address:
                _check_reachable(address)
                kwargs["address"] = address
            else:  # a local instance sized to this machine (or to --workers)
                kwargs["num_cpus"] = (workers or os.cpu_count() or 1) * self.cpus_per_task
            try:
                with warnings.catch_warnings(), _quiet_stderr():
                    warnings.simplefilter("ignore")
                    ray.init(**kwargs)
            except ConnectionError as exc:
                why = " ".join(str(exc).split())[:200] or "the address answers, but no Ray cluster does"
                raise GreenmachineError(f"--ray-address {address}: {why}") from None
            except (RuntimeError, ValueError) as exc:
                raise GreenmachineError(f"cannot start Ray: {' '.join(str(exc).split())[:200]}") from None
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, workers or cpus // self.cpus_per_task)
        self._task = ray.remote(_ray_task).options(num_cpus=self.cpus_per_task, num_gpus=self.num_gpus,
                                                   max_retries=0)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Lazily, in order; at most ``2 x workers`` tasks in flight, so a long sample never floods the object
        store, and the function (with its minibatch) is put in the object store once, not once per task."""
        ray = self._ray
        fn_ref = ray.put(fn)
        it = iter(items)
        pending: deque = deque()

        def submit() -> bool:
            for item in it:
                pending.append(self._task.remote(fn_ref, item, self.cpus_per_task))
                return True
            return False

        for _ in range(2 * self.workers):
            if not submit():
                break
        while pending:
            ref = pending.popleft()
            result = self.get(ref)
            submit()
            yield result

    def get(self, ref: Any) -> Any:
        """``ray.get`` that re-raises a task's own exception (a GreenmachineError stays one line)."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def actor(self, cls: type, *args: Any) -> Any:
        """A Ray actor of ``cls`` holding state across calls, with the same CPU / GPU share as a task."""
        return self._ray.remote(cls).options(num_cpus=self.cpus_per_task, num_gpus=self.num_gpus).remote(*args)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def make_executor(workers: int = 1, kind: str | None = None, ray_address: str | None = None,
                  device: str = "cpu") -> SerialExecutor | ProcessExecutor | RayExecutor:
    """The executor a command asked for. ``kind`` None or "auto": serial for one worker, a process pool for more
    (what ``--workers`` always meant); "ray" with ``workers`` None or 1 uses every CPU of the cluster, more caps
    the tasks in flight (and the fitness shards) at ``workers``."""
    if kind in (None, "", "auto"):
        kind = "ray" if ray_address else "serial" if (workers or 1) <= 1 else "process"
    if kind not in EXECUTORS:
        raise GreenmachineError(f"executor must be one of {', '.join(EXECUTORS)}, not {kind!r}")
    if ray_address and kind != "ray":
        raise GreenmachineError(f"--ray-address needs --executor ray (got --executor {kind})")
    if workers is not None and workers < 0:
        raise GreenmachineError(f"workers must be at least 1, got {workers}")
    if kind == "ray":  # --workers left at 1 means "as many tasks as the cluster has CPUs"
        return RayExecutor(workers if workers and workers > 1 else None, ray_address, device)
    if kind == "process":
        return ProcessExecutor(max(1, workers or os.cpu_count() or 1))
    return SerialExecutor()
