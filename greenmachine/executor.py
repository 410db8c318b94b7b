"""Map-style executors: the one seam through which probing and fitness evaluation run.

This is DEAP's ``toolbox.map`` idiom: the GP code calls ``executor.map(fn, items)`` and never knows whether the
work runs in this process, in a process pool, or (later) on a distributed engine such as SCOOP or Ray, whose
``map`` has the same shape.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...


class SerialExecutor:
    """Runs everything in this process, lazily and in order (results stream as they are ready)."""

    workers = 1

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return map(fn, items)

    def close(self) -> None:
        pass


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the pool, not torch, parallelises


class ProcessExecutor:
    """A process pool; results come back in order. Functions and items must be picklable."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
        )

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        return self._pool.map(fn, items)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def make_executor(workers: int = 1) -> SerialExecutor | ProcessExecutor:
    return SerialExecutor() if workers <= 1 else ProcessExecutor(workers)
