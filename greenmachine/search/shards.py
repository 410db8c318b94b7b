"""Fitness evaluation that shards the *sample*, not the population.

Why: a tree is small (a few hundred bytes of tokens), a probed network is not (5-40 MB of weights, gradients,
kernels). Sending trees to where the probes live, and never probes to where the trees are, keeps the memory of
each worker at its shard of the sample and keeps the traffic per generation at a few kilobytes. So:

* the probed sample is cut, in sample order, into chunks of ``chunk`` networks (the evaluation chunks the serial
  path has always used), and the chunks into ``shards`` contiguous groups, one per worker;
* each worker (:class:`ShardWorker`) builds its chunks' :class:`~greenmachine.probing.terminals.ProbeBatch` once and
  keeps them for the whole run (in this process for the serial executor, in a forked process per shard for the
  process executor, in a Ray actor per shard, fed through the object store, for the Ray executor);
* per generation the driver sends every shard the list of trees not yet scored and gets back a trees x networks
  matrix of per-network scores (NaN for a tree that fails there); it concatenates the shards in sample order and
  computes each tree's Kendall tau itself.

The worker side is pure: it keeps no fitness memo and no counter (the driver's :class:`ShardedFitness` holds both),
only the per-batch subtree cache of :func:`~greenmachine.proxies.primitives.evaluate`, whose hits return the very
values a recomputation would. Every per-network score is computed from the same chunk of networks whatever the
executor or the number of shards, and Kendall tau is computed once on the driver from the scores in sample order,
so the same seed and config give the same fitness values, best tree and history on every executor.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Sequence

import numpy as np

from greenmachine.executor import Executor, ProcessExecutor, RayExecutor, set_torch_threads
from greenmachine.probing.chunking import plan_chunks, split
from greenmachine.probing.probe import NetworkProbe
from greenmachine.proxies.fitness import WORST_FITNESS, kendall_fitness

# what a failing tree may raise while it is evaluated (protected operators make these rare): scored NaN, so WORST
TREE_ERRORS = (RuntimeError, ValueError, ArithmeticError, IndexError, MemoryError)


def shard_bounds(n_networks: int, chunk: int | Sequence[int], shards: int,
                 weights: Sequence[float] | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` network positions of each shard: whole chunks (of ``chunk`` networks, or of the given
    chunk lengths, see ``probing/chunking.py``) in sample order, cut into at most ``shards`` contiguous groups of
    about equal weight. ``weights`` gives each chunk's weight (its terminal bytes: a tree's evaluation time is about
    proportional to them); by default a chunk weighs its number of networks. The chunking never depends on the
    shard count, so neither does any score.

    Why bytes: with byte-bounded chunks the chunks differ in size, and balancing their count left one of two
    workers with 127 of 162 MB of terminals (measured in ``make bench-scale``): the other waited."""
    lengths = _chunk_lengths(n_networks, chunk)
    n_chunks = max(1, len(lengths))
    shards = max(1, min(shards, n_chunks))
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    w = [float(x) for x in (weights if weights is not None else lengths)]
    if len(w) != len(lengths):
        raise ValueError(f"{len(w)} chunk weights for {len(lengths)} chunks")
    acc = [0.0]
    for x in w:
        acc.append(acc[-1] + x)
    cuts = [0]
    for k in range(1, shards):
        target = k * acc[-1] / shards
        lo, hi = cuts[-1] + 1, len(lengths) - (shards - k)  # every shard keeps at least one chunk
        cuts.append(min(range(lo, hi + 1), key=lambda j: (abs(acc[j] - target), j)))
    cuts.append(len(lengths))
    return [(min(n_networks, starts[cuts[k]]), min(n_networks, starts[cuts[k + 1]])) for k in range(shards)]


def _chunk_lengths(n_networks: int, chunk: int | Sequence[int]) -> list[int]:
    """Chunk lengths over ``n_networks``: a count gives equal chunks (the last shorter), a sequence is used as is."""
    if isinstance(chunk, int):
        return [min(chunk, n_networks - lo) for lo in range(0, n_networks, chunk)] or [0]
    lengths = [int(n) for n in chunk]
    if sum(lengths) != n_networks:
        raise ValueError(f"chunk lengths sum to {sum(lengths)}, not {n_networks}")
    return lengths or [0]


def shard_chunks(lengths: Sequence[int], bounds: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The chunk lengths inside each shard (the shards' bounds fall on chunk boundaries)."""
    out: list[list[int]] = [[] for _ in bounds]
    pos, k = 0, 0
    for n in lengths:
        while k < len(bounds) - 1 and pos >= bounds[k][1]:
            k += 1
        out[k].append(n)
        pos += n
    return out


class ShardWorker:
    """The probes of one shard, as evaluation batches built once; scores a list of trees on them."""

    def __init__(self, probes: list[NetworkProbe], chunk: int | Sequence[int], device: str = "cpu",
                 threads: int | None = None):
        from greenmachine.probing.chunking import split
        from greenmachine.probing.terminals import ProbeBatch

        if threads is not None:
            set_torch_threads(threads)
        self.n = len(probes)
        # consumes the probes' tensors; ``chunk`` is a count or the chunks' lengths (byte-bounded chunks)
        self.batches = [ProbeBatch(part, device=device, consume=True)
                        for part in split(probes, _chunk_lengths(self.n, chunk)) if part]

    def scores(self, keys: Sequence[str]) -> np.ndarray:
        """A ``len(keys) x n`` float64 matrix of per-network scores; a row of NaN where the tree fails."""
        from greenmachine.proxies.primitives import evaluate_chunks

        out = np.full((len(keys), self.n), np.nan, dtype=np.float64)
        for row, key in enumerate(keys):
            try:
                out[row] = evaluate_chunks(key.split(), self.batches).numpy()
            except TREE_ERRORS:
                pass
        return out

    def nbytes(self) -> int:
        return sum(b.nbytes() for b in self.batches)

    def peak_rss(self) -> int:
        """Peak resident memory of the process holding this shard, in bytes (what one worker needs)."""
        return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux reports kilobytes)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


# --- the process backend: one forked process per shard, its ShardWorker in a module global -------------------

_WORKER: ShardWorker | None = None


def _init_process_shard(probes: list[NetworkProbe], chunk: int | Sequence[int], device: str) -> None:
    global _WORKER
    _WORKER = ShardWorker(probes, chunk, device, threads=1)


def _process_scores(keys: Sequence[str]) -> np.ndarray:
    assert _WORKER is not None
    return _WORKER.scores(keys)


def _process_nbytes(_: Any = None) -> int:
    assert _WORKER is not None
    return _WORKER.nbytes()


def _process_peak_rss(_: Any = None) -> int:
    return peak_rss()


class _LocalShards:
    def __init__(self, parts: list[list[NetworkProbe]], chunks: list[list[int]], device: str):
        self.workers = [ShardWorker(p, c, device) for p, c in zip(parts, chunks)]

    def scores(self, keys: Sequence[str]) -> list[np.ndarray]:
        return [w.scores(keys) for w in self.workers]

    def nbytes(self) -> list[int]:
        return [w.nbytes() for w in self.workers]

    def peak_rss(self) -> list[int]:
        return [peak_rss() for _ in self.workers]

    def close(self) -> None:
        self.workers = []


class _ProcessShards:
    """One single-process pool per shard, forked while the driver still holds the probes (fork passes them
    without pickling); the first call builds the shard there, after which the driver lets go of its copy."""

    def __init__(self, parts: list[list[NetworkProbe]], chunks: list[list[int]], device: str):
        ctx = multiprocessing.get_context("fork")
        self.pools = [ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_process_shard,
                                          initargs=(p, c, device)) for p, c in zip(parts, chunks)]
        for pool in self.pools:  # start each process now, while the probes are still in this one
            pool.submit(_process_nbytes).result()

    def scores(self, keys: Sequence[str]) -> list[np.ndarray]:
        futures = [pool.submit(_process_scores, list(keys)) for pool in self.pools]
        return [f.result() for f in futures]

    def nbytes(self) -> list[int]:
        return [pool.submit(_process_nbytes).result() for pool in self.pools]

    def peak_rss(self) -> list[int]:
        return [pool.submit(_process_peak_rss).result() for pool in self.pools]

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(cancel_futures=True)
        self.pools = []


class _RayShards:
    """One Ray actor per shard; its probes travel once, through the object store."""

    def __init__(self, executor: RayExecutor, parts: list[list[NetworkProbe]], chunks: list[list[int]], device: str):
        ray = executor._ray
        self.executor = executor
        refs = [ray.put(p) for p in parts]
        self.actors = [executor.actor(ShardWorker, ref, c, device, executor.cpus_per_task)
                       for ref, c in zip(refs, chunks)]
        # wait until every shard is built, so that errors surface here and the object store copies can go
        executor.get([a.nbytes.remote() for a in self.actors])
        del refs

    def scores(self, keys: Sequence[str]) -> list[np.ndarray]:
        keys = list(keys)
        return self.executor.get([a.scores.remote(keys) for a in self.actors])

    def nbytes(self) -> list[int]:
        return self.executor.get([a.nbytes.remote() for a in self.actors])

    def peak_rss(self) -> list[int]:
        return self.executor.get([a.peak_rss.remote() for a in self.actors])

    def close(self) -> None:
        if self.actors and self.executor._ray.is_initialized():
            for a in self.actors:
                self.executor._ray.kill(a)
        self.actors = []


class MemoisedFitness:
    """The driver side of a fitness: a memo by tree tokens and an evaluation counter around ``fitness_of``.

    ``prefetch(individuals)`` scores every tree of a population not yet in the memo in one round (one call per
    shard per generation); ``__call__`` is DEAP's per-individual evaluate and reads the memo (it evaluates a tree
    on its own only when it was not prefetched); ``compute(key)`` always recomputes (resume checks). Subclasses
    give ``fitness_of(keys)``; the memo and the counter never leave the driver, so the workers stay pure."""

    memo: dict[str, float]
    evaluations: int

    def fitness_of(self, keys: Sequence[str]) -> list[float]:
        raise NotImplementedError

    def compute(self, key: str) -> float:
        """The fitness of a tree given as space-joined tokens, never from the memo."""
        return self.fitness_of([key])[0]

    def prefetch(self, individuals: Iterable[Any]) -> None:
        from greenmachine.proxies.primitives import tree_tokens

        keys: list[str] = []
        for ind in individuals:
            key = " ".join(tree_tokens(ind))
            if key not in self.memo and key not in keys:
                keys.append(key)
        for key, fit in zip(keys, self.fitness_of(keys)):
            self.memo[key] = fit
        self.evaluations += len(keys)

    def __call__(self, individual) -> tuple[float]:
        from greenmachine.proxies.primitives import tree_tokens

        key = " ".join(tree_tokens(individual))
        if key not in self.memo:
            self.evaluations += 1
            self.memo[key] = self.compute(key)
        return (self.memo[key],)


class ShardedFitness(MemoisedFitness):
    """Kendall tau of trees on a probed sample held in shards; memoised by the tree's tokens, on the driver
    (:class:`MemoisedFitness`). ``probes`` are consumed: their tensors move into the shards."""

    def __init__(self, probes: list[NetworkProbe], accuracy: np.ndarray, executor: Executor | None = None,
                 chunk: int = 50, device: str = "cpu", memo: dict[str, float] | None = None,
                 budget: int | None = None):
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.memo = memo if memo is not None else {}
        self.evaluations = 0
        self.n = len(probes)
        workers = int(getattr(executor, "workers", 1) or 1)
        parallel = isinstance(executor, (ProcessExecutor, RayExecutor))
        # chunks of at most ``chunk`` networks whose terminals stay within the byte budget (probing/chunking.py)
        self.chunk_lengths = plan_chunks([p.nbytes() for p in probes], budget, max_networks=chunk)
        sizes = [p.nbytes() for p in probes]
        chunk_bytes = [sum(part) for part in split(sizes, self.chunk_lengths)]
        self.bounds = shard_bounds(self.n, self.chunk_lengths, workers if parallel else 1, chunk_bytes)
        parts = [probes[a:b] for a, b in self.bounds]
        chunks = shard_chunks(self.chunk_lengths, self.bounds)
        if isinstance(executor, RayExecutor):
            self._shards: Any = _RayShards(executor, parts, chunks, device)
        elif isinstance(executor, ProcessExecutor):
            self._shards = _ProcessShards(parts, chunks, device)
        else:
            self._shards = _LocalShards(parts, chunks, device)
        del parts
        if isinstance(executor, (ProcessExecutor, RayExecutor)):
            for p in probes:  # the shards hold them now; the driver keeps only their indices
                p.tensors.clear()

    @property
    def shards(self) -> int:
        return len(self.bounds)

    def scores(self, keys: Sequence[str]) -> np.ndarray:
        """``len(keys) x n`` per-network scores, shards concatenated in sample order."""
        if not keys:
            return np.zeros((0, self.n))
        return np.concatenate(self._shards.scores(list(keys)), axis=1)

    def fitness_of(self, keys: Sequence[str]) -> list[float]:
        """Each tree's Kendall tau (WORST_FITNESS for a tree that fails, is non-finite or constant anywhere)."""
        return [kendall_fitness(row, self.accuracy) for row in self.scores(keys)]

    def nbytes(self) -> list[int]:
        """Bytes of terminals each shard holds."""
        return self._shards.nbytes()

    def peak_rss(self) -> list[int]:
        """Peak resident bytes of each process holding a shard (this one, for the serial executor)."""
        return self._shards.peak_rss()

    def close(self) -> None:
        self._shards.close()


class InitsFitness(MemoisedFitness):
    """Kendall tau of a tree's per-network scores averaged over several initialisations of the same sample.

    One :class:`ShardedFitness` per initialisation (its own probes, shards and workers), asked for the per-network
    scores of the trees not yet scored; the driver averages them network by network (a NaN or an infinity under one
    initialisation carries into the mean, as in ``score --inits``) and ranks the mean. So the fitness is the Kendall
    tau that ``score --inits N`` gives the tree on the evolution sample, and it stays a pure function of the tree.
    The interface is ShardedFitness's (``scores``, ``fitness_of``, ``nbytes``, ``shards``, ``peak_rss``,
    ``close``), so :class:`~greenmachine.search.multi_dataset.MultiDatasetFitness` takes it as one dataset's part."""

    def __init__(self, parts: Sequence[ShardedFitness], accuracy: np.ndarray, memo: dict[str, float] | None = None):
        if len(parts) < 2:
            raise ValueError("an averaged fitness needs two or more initialisations")
        if len({p.n for p in parts}) != 1:
            raise ValueError("every initialisation must probe the same networks")
        self.parts = list(parts)
        self.accuracy = np.asarray(accuracy, dtype=np.float64)
        self.n = parts[0].n
        self.memo = memo if memo is not None else {}
        self.evaluations = 0

    @property
    def shards(self) -> int:
        return sum(p.shards for p in self.parts)

    def scores(self, keys: Sequence[str]) -> np.ndarray:
        """``len(keys) x n`` per-network scores, each the mean over the initialisations."""
        if not keys:
            return np.zeros((0, self.n))
        return np.mean([p.scores(keys) for p in self.parts], axis=0)

    def fitness_of(self, keys: Sequence[str]) -> list[float]:
        return [kendall_fitness(row, self.accuracy) for row in self.scores(keys)]

    def nbytes(self) -> list[int]:
        return [n for p in self.parts for n in p.nbytes()]

    def peak_rss(self) -> list[int]:
        return [n for p in self.parts for n in p.peak_rss()]

    def close(self) -> None:
        for p in self.parts:
            p.close()


__all__ = ["InitsFitness", "MemoisedFitness", "ShardWorker", "ShardedFitness", "shard_bounds", "shard_chunks",
           "WORST_FITNESS"]
