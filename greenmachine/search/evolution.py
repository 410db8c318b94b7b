"""Genetic programming of zero-cost proxies with DEAP.

The loop is DEAP's ``eaSimple`` (select, ``varAnd``, evaluate the changed individuals, hall of fame) with one
elite kept, ``gp.staticLimit`` on tree height against bloat, and a checkpoint written after every generation.
The checkpoint is JSON (token lists, fitness values, the ``random`` module state), never pickle, so ``--resume``
continues a stopped run exactly where it stopped and a run directory is safe to share.
"""

from __future__ import annotations

import csv
import json
import logging
import operator
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from deap import base, creator, gp, tools

from greenmachine.probing.cache import ProbeCache, probe_sample
from greenmachine.proxies.classic import CLASSIC_EXPRESSIONS, classic_tokens
from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.executor import Executor, SerialExecutor, make_executor
from greenmachine.files import atomic_open, write_text_atomic
from greenmachine.proxies.fitness import WORST_FITNESS, kendall_fitness
from greenmachine.proxies.primitives import evaluate_chunks, primitive_set, tree_expression, tree_from_tokens, tree_tokens
from greenmachine.proxies.proxyfile import Proxy, save_proxy
from greenmachine.spaces.sampling import sample_indices
from greenmachine.probing.terminals import ProbeBatch, chunked_batches
from greenmachine.spaces.truth import GroundTruth
from greenmachine.ui import Reporter
from greenmachine.workspace import probe_settings

CHECKPOINT = "checkpoint.json"
HISTORY_FIELDS = ["generation", "best", "mean", "median", "invalid", "size_mean", "size_max", "height_max",
                  "evaluations", "seconds", "best_expression"]
# the knobs that may change between a run and its resume (more generations, another pool size)
RESUMABLE = {"generations", "workers"}
EVAL_CHUNK = 50  # networks per evaluation batch: bounds the temporaries of a tree, not its result

if not hasattr(creator, "GMFitness"):
    creator.create("GMFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "GMIndividual"):
    creator.create("GMIndividual", gp.PrimitiveTree, fitness=creator.GMFitness)


@dataclass
class EvolutionResult:
    best_tokens: list[str]
    best_fitness: float
    hall_of_fame: list[tuple[list[str], float]]
    history: list[dict[str, Any]]
    sample_indices: list[int]
    out_dir: Path
    probe_seconds: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_expression(self) -> str:
        return tree_expression(self.best_tokens)


class TreeFitness:
    """Kendall tau of a tree's scores on the probed sample; memoised by the tree's tokens."""

    def __init__(self, batches: list[ProbeBatch], accuracy: np.ndarray, memo: dict[str, float] | None = None):
        self.batches = batches
        self.accuracy = accuracy
        self.memo = memo if memo is not None else {}
        self.evaluations = 0

    def __call__(self, individual) -> tuple[float]:
        key = " ".join(tree_tokens(individual))
        if key not in self.memo:
            self.evaluations += 1
            try:
                scores = evaluate_chunks(key.split(), self.batches).numpy()
                self.memo[key] = kendall_fitness(scores, self.accuracy)
            except (RuntimeError, ValueError, ArithmeticError, IndexError, MemoryError):
                self.memo[key] = WORST_FITNESS
        return (self.memo[key],)


def cx_one_point(ind1, ind2):
    """DEAP's ``gp.cxOnePoint`` with one change: the common types are chosen from a list sorted by name.

    DEAP picks from ``list(set_of_type_classes)``, whose order follows the classes' memory addresses and so
    changes from one process to the next: the same seed then gives another run. Sorting keeps the draw identical.
    """
    if len(ind1) < 2 or len(ind2) < 2:
        return ind1, ind2
    types1: dict[type, list[int]] = {}
    types2: dict[type, list[int]] = {}
    for idx, node in enumerate(ind1[1:], 1):
        types1.setdefault(node.ret, []).append(idx)
    for idx, node in enumerate(ind2[1:], 1):
        types2.setdefault(node.ret, []).append(idx)
    common = sorted(set(types1) & set(types2), key=lambda t: t.__name__)
    if common:
        type_ = random.choice(common)
        index1 = random.choice(types1[type_])
        index2 = random.choice(types2[type_])
        slice1 = ind1.searchSubtree(index1)
        slice2 = ind2.searchSubtree(index2)
        ind1[slice1], ind2[slice2] = ind2[slice2], ind1[slice1]
    return ind1, ind2


def make_toolbox(config: EvolveConfig, fitness: Callable, executor: Executor) -> base.Toolbox:
    pset = primitive_set()
    tb = base.Toolbox()
    tb.register("expr", gp.genHalfAndHalf, pset=pset, min_=config.init_min_depth, max_=config.init_max_depth)
    tb.register("individual", tools.initIterate, creator.GMIndividual, tb.expr)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("evaluate", fitness)
    tb.register("map", executor.map)
    tb.register("select", tools.selTournament, tournsize=config.tournament_size)
    tb.register("mate", cx_one_point)
    tb.register("expr_mut", gp.genGrow, min_=0, max_=2)

    def mutate(individual):
        r = random.random()
        if r < 0.6:
            return gp.mutUniform(individual, expr=tb.expr_mut, pset=pset)
        if r < 0.85:
            return gp.mutNodeReplacement(individual, pset=pset)
        return gp.mutShrink(individual)

    tb.register("mutate", mutate)
    limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=config.max_height)
    tb.decorate("mate", limit)
    tb.decorate("mutate", limit)
    return tb


def _individual(tokens: list[str], fitness: float | None = None):
    ind = creator.GMIndividual(tree_from_tokens(tokens))
    if fitness is not None:
        ind.fitness.values = (fitness,)
    return ind


def _stats(population, generation: int, evaluations: int, seconds: float) -> dict[str, Any]:
    fits = [ind.fitness.values[0] for ind in population]
    best = max(population, key=lambda ind: ind.fitness.values[0])
    return {
        "generation": generation,
        "best": round(max(fits), 6),
        "mean": round(statistics.fmean(fits), 6),
        "median": round(statistics.median(fits), 6),
        "invalid": sum(f == WORST_FITNESS for f in fits),
        "size_mean": round(statistics.fmean(len(ind) for ind in population), 2),
        "size_max": max(len(ind) for ind in population),
        "height_max": max(ind.height for ind in population),
        "evaluations": evaluations,
        "seconds": round(seconds, 3),
        "best_expression": tree_expression(tree_tokens(best)),
    }


def _fingerprint(config: EvolveConfig, indices: list[int]) -> dict[str, Any]:
    cfg = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE}
    return {"config": cfg, "sample_indices": indices}


def _json_state(state) -> list:
    return [state[0], list(state[1]), state[2]]


class RunFiles:
    """The files of a run directory, written as the run goes."""

    def __init__(self, out_dir: Path):
        self.dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = out_dir / CHECKPOINT
        self.history = out_dir / "history.csv"
        self.proxy = out_dir / "proxy.json"
        self.hof = out_dir / "hall_of_fame.json"
        self.log = logging.getLogger(f"greenmachine.run.{out_dir.resolve()}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        if not self.log.handlers:
            handler = logging.FileHandler(out_dir / "evolve.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.log.addHandler(handler)

    def close(self) -> None:
        for h in list(self.log.handlers):
            h.close()
            self.log.removeHandler(h)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        with atomic_open(self.history, newline="") as f:
            w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            w.writeheader()
            w.writerows(history)


def run_evolution(
    config: EvolveConfig,
    truth: GroundTruth,
    data_dir: str | Path,
    out_dir: str | Path,
    cache: ProbeCache | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
) -> EvolutionResult:
    """Evolve a proxy for ``config.space`` / ``config.dataset``; everything lands in ``out_dir`` as it goes."""
    start = time.perf_counter()
    config = config.validate()
    if truth.space != config.space:
        raise GreenmachineError(f"the ground truth is for {truth.space}, the config for {config.space}")
    reporter = reporter or Reporter(quiet=True)
    files = RunFiles(Path(out_dir))
    try:
        return _run(config, truth, Path(data_dir), files, cache, resume, reporter, executor, start)
    finally:
        files.close()


def _run(config, truth, data_dir, files, cache, resume, reporter, executor, start) -> EvolutionResult:
    indices = sample_indices(
        truth, config.dataset, config.sample_size, config.sampling, seed=config.seed, strata=config.strata
    )
    fingerprint = _fingerprint(config, indices)
    checkpoint = None
    if resume:
        if not files.checkpoint.is_file():
            raise GreenmachineError(f"--resume: no checkpoint in {files.dir}")
        try:
            checkpoint = json.loads(files.checkpoint.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GreenmachineError(f"--resume: unreadable checkpoint {files.checkpoint}: {exc}") from None
        if checkpoint.get("fingerprint") != fingerprint:
            raise GreenmachineError(
                f"--resume: {files.checkpoint} belongs to a run with other settings or another sample; "
                "use the same config, or another --out"
            )
    elif files.checkpoint.exists():
        raise GreenmachineError(f"{files.dir} already holds a run: pass --resume to continue it, or choose another --out")

    settings = probe_settings(config.space, config.dataset, config.batch_size, config.seed, config.device)
    files.log.info("sample of %d %s architectures (%s, seed %d): probing", len(indices), config.space,
                   config.sampling, config.seed)
    probe_executor = make_executor(config.workers)
    t0 = time.perf_counter()
    try:
        probes = probe_sample(
            [(i, truth.arch(i)) for i in indices], settings, data_dir, cache=cache, executor=probe_executor,
            progress=lambda it, total: reporter.track(it, total, "probing networks"),
        )
    finally:
        probe_executor.close()
    probe_seconds = time.perf_counter() - t0
    batches = chunked_batches(probes, EVAL_CHUNK, device=config.device)
    del probes
    files.log.info("probed in %.1f s; terminals take %.1f MB", probe_seconds, sum(b.nbytes() for b in batches) / 1e6)
    accuracy = truth.acc(config.dataset, indices)
    memo: dict[str, float] = dict(checkpoint.get("fitness_memo", {})) if checkpoint else {}
    fitness = TreeFitness(batches, accuracy, memo)
    toolbox = make_toolbox(config, fitness, executor or SerialExecutor())
    hof = tools.HallOfFame(config.hall_of_fame)

    if checkpoint:
        try:
            state = checkpoint["random_state"]
            random.setstate((state[0], tuple(state[1]), state[2]))
            population = [_individual(t, f) for t, f in checkpoint["population"]]
            hof.update([_individual(t, f) for t, f in checkpoint["hall_of_fame"]])
            history = list(checkpoint["history"])
            first_gen = int(checkpoint["generation"]) + 1
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise GreenmachineError(f"--resume: {files.checkpoint} is damaged ({type(exc).__name__}: {exc})") from None
        files.log.info("resumed after generation %d", checkpoint["generation"])
    else:
        random.seed(config.seed)
        population = toolbox.population(n=config.population)
        if config.seed_classics:
            seeds = [_individual(classic_tokens(name)) for name in CLASSIC_EXPRESSIONS][: config.population]
            population[: len(seeds)] = seeds
        history = []
        first_gen = 0

    advance = reporter.task("evolving", config.generations + 1)
    for _ in range(min(first_gen, config.generations + 1)):
        advance()
    for gen in range(first_gen, config.generations + 1):
        t_gen = time.perf_counter()
        evals_before = fitness.evaluations
        if gen > 0:
            elite = [toolbox.clone(ind) for ind in tools.selBest(population, config.elitism)]
            offspring = toolbox.select(population, len(population) - len(elite))
            offspring = _var_and(offspring, toolbox, config.crossover_prob, config.mutation_prob)
            population = elite + offspring
        invalid = [ind for ind in population if not ind.fitness.valid]
        for ind, fit in zip(invalid, toolbox.map(toolbox.evaluate, invalid)):
            ind.fitness.values = fit
        hof.update(population)
        record = _stats(population, gen, fitness.evaluations - evals_before, time.perf_counter() - t_gen)
        history.append(record)
        _save_generation(files, config, truth, indices, settings, population, hof, history, memo, fingerprint, gen)
        files.log.info("generation %d: best %.4f mean %.4f median %.4f invalid %d (%d evaluations, %.1f s) %s",
                       gen, record["best"], record["mean"], record["median"], record["invalid"],
                       record["evaluations"], record["seconds"], record["best_expression"])
        advance(f"best tau {hof[0].fitness.values[0]:.3f}")

    best = hof[0]
    seconds = time.perf_counter() - start
    files.log.info("done in %.1f s: best %.4f %s", seconds, best.fitness.values[0], tree_expression(tree_tokens(best)))
    return EvolutionResult(
        best_tokens=tree_tokens(best),
        best_fitness=best.fitness.values[0],
        hall_of_fame=[(tree_tokens(i), i.fitness.values[0]) for i in hof],
        history=history,
        sample_indices=indices,
        out_dir=files.dir,
        probe_seconds=probe_seconds,
        seconds=seconds,
    )


def _var_and(offspring, toolbox, cxpb: float, mutpb: float):
    """DEAP's ``algorithms.varAnd``, inlined so that the elite is never varied."""
    offspring = [toolbox.clone(ind) for ind in offspring]
    for i in range(1, len(offspring), 2):
        if random.random() < cxpb:
            offspring[i - 1], offspring[i] = toolbox.mate(offspring[i - 1], offspring[i])
            del offspring[i - 1].fitness.values, offspring[i].fitness.values
    for i in range(len(offspring)):
        if random.random() < mutpb:
            (offspring[i],) = toolbox.mutate(offspring[i])
            del offspring[i].fitness.values
    return offspring


def _save_generation(files, config, truth, indices, settings, population, hof, history, memo, fingerprint, gen):
    best = hof[0]
    proxy = Proxy(
        tokens=tree_tokens(best),
        space=config.space,
        dataset=config.dataset,
        fitness=best.fitness.values[0],
        sampling=config.sampling,
        sample_indices=indices,
        seed=config.seed,
        probe={"batch_size": settings.batch_size, "batch_seed": settings.batch_seed, "init_seed": settings.init_seed},
        config=config.to_dict(),
        extra={"generation": gen, "ground_truth": truth.source, "hp": truth.hp},
    )
    save_proxy(proxy, files.proxy)
    files.write_history(history)
    write_text_atomic(
        files.hof,
        json.dumps([{"expression": tree_expression(tree_tokens(i)), "tokens": tree_tokens(i),
                     "kendall_tau": i.fitness.values[0]} for i in hof], indent=2) + "\n",
    )
    write_text_atomic(
        files.checkpoint,
        json.dumps({
            "generation": gen,
            "fingerprint": fingerprint,
            "population": [[tree_tokens(i), i.fitness.values[0]] for i in population],
            "hall_of_fame": [[tree_tokens(i), i.fitness.values[0]] for i in hof],
            "history": history,
            "fitness_memo": memo,
            "random_state": _json_state(random.getstate()),
        }),
    )
