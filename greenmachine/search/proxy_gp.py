"""Genetic programming of zero-cost proxies with DEAP: the problem that :mod:`greenmachine.search.engine` runs.

The loop is DEAP's ``eaSimple`` (select, ``varAnd``, evaluate the changed individuals, hall of fame) with one
elite kept and ``gp.staticLimit`` on tree height against bloat. Fitness is the Kendall tau of a tree's scores
against the ground-truth accuracy of a probed sample, a pure function of the tree (memoised by its tokens).

**The simplest best tree.** Trees that are rescalings of one another (``mul(x, 2)``, ``log(x)`` for positive x)
rank the networks identically and get the same tau. The hall of fame orders trees by fitness, and among trees
whose fitness lies within ``parsimony_tolerance`` (config; default 1e-6, below the Kendall quantum 2/(n(n-1)) of
any sample the config allows) of the best remaining, the one with the fewest nodes comes first (then the higher
fitness, then the expression, so the order is total). ``proxy.json``, ``hall_of_fame.json`` and ``history.csv``
all name the hall of fame's first tree. Selection itself is unchanged (a tournament on fitness), so a seed gives
the same populations as before this tie-break.

**Several datasets** (config ``datasets``, ``--datasets a,b,c``): one proxy for all of them. The sample is drawn
once, from the architectures with ground truth on every dataset, stratified by the accuracy on the FIRST dataset;
each dataset is probed on its own images and sharded on its own (``search/multi_dataset.py``), and the fitness is
the ``combine`` (``mean`` by default, or ``min``) of the per-dataset taus on those same architectures.
``history.csv`` gets, for the best tree, its tau on every dataset and both combinations (``best_mean_tau``,
``best_min_tau``), whichever one drives selection; ``proxy.json`` records ``datasets``, ``combine`` and
``dataset_taus``. Without ``datasets`` nothing changes: a single-dataset run is the run it always was.

**Several initialisations** (config ``inits``, ``--inits N``): every network of the sample is probed under N
initialisations and minibatches (probe seeds S..S+N-1, :func:`~greenmachine.probing.probe.init_protocols`), each
set sharded on its own, and a tree's fitness is the Kendall tau of its per-network scores averaged over them
(:class:`~greenmachine.search.shards.InitsFitness`): the tau that ``score --inits N`` gives it on the sample.
``proxy.json`` records ``probe.inits``, which ``score`` then uses by default. With several datasets, each dataset
averages its own initialisations.
"""

from __future__ import annotations

import logging
import math
import operator
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deap import base, creator, gp, tools

from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.executor import Executor, SerialExecutor, make_executor
from greenmachine.files import write_text_atomic
from greenmachine.probing.cache import ProbeCache, probe_sample
from greenmachine.probing.memory import check_room_for
from greenmachine.probing.probe import DEFAULT_GROUPS, OPT_IN_GROUPS, init_protocols
from greenmachine.proxies.classic import classic_names, classic_tokens
from greenmachine.proxies.fitness import WORST_FITNESS, combine_taus
from greenmachine.proxies.primitives import primitive_set, tree_expression, tree_from_tokens, tree_tokens
from greenmachine.proxies.proxyfile import Proxy, save_proxy
from greenmachine.search.engine import CheckpointError, RunFolder, finished_run, run_problem
from greenmachine.search.multi_dataset import MultiDatasetFitness
from greenmachine.search.shards import InitsFitness, ShardedFitness
from greenmachine.spaces.sampling import sample_indices
from greenmachine.spaces.truth import GroundTruth
from greenmachine.ui import Reporter
from greenmachine.workspace import probe_settings

HISTORY_FIELDS = ["generation", "best", "mean", "median", "invalid", "size_mean", "size_max", "height_max",
                  "evaluations", "seconds", "best_expression", "best_size"]
# the knobs that may change between a run and its resume (more generations, another pool size)
RESUMABLE = {"generations", "workers", "executor", "ray_address"}  # where it runs never changes a result
EVAL_CHUNK = 50  # networks per evaluation batch at most; chunks are also closed at a byte budget (probing/chunking.py)
VERIFY_POPULATION = 8  # population members re-evaluated when resuming (the hall of fame is re-evaluated whole)
DEFAULT_TOLERANCE = 1e-6

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
    probe_seconds: float  # all parts of the run together
    seconds: float  # all parts of the run together
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_expression(self) -> str:
        return tree_expression(self.best_tokens)

    @property
    def evaluations(self) -> int:
        return sum(int(h["evaluations"]) for h in self.history)


class ParsimonyHallOfFame:
    """The best distinct trees seen, the smaller first among those of equal fitness (see the module docstring)."""

    def __init__(self, maxsize: int, tolerance: float):
        self.maxsize = maxsize
        self.tolerance = tolerance
        self.items: list[tuple[list[str], float]] = []

    def update(self, population) -> None:
        pool = {" ".join(t): (t, f) for t, f in self.items}
        for ind in population:
            if ind.fitness.valid:
                tokens = tree_tokens(ind)
                pool.setdefault(" ".join(tokens), (tokens, ind.fitness.values[0]))
        self.items = self.order(list(pool.values()))[: self.maxsize]

    def order(self, items: list[tuple[list[str], float]]) -> list[tuple[list[str], float]]:
        rest = sorted(items, key=lambda tf: (-tf[1], len(tf[0]), " ".join(tf[0])))
        out = []
        while rest:
            top = rest[0][1]
            group = [tf for tf in rest if tf[1] >= top - self.tolerance]
            pick = min(group, key=lambda tf: (len(tf[0]), -tf[1], " ".join(tf[0])))
            out.append(pick)
            rest.remove(pick)
        return out

    def __getitem__(self, i: int) -> tuple[list[str], float]:
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)


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


def language(config: EvolveConfig) -> dict[str, bool]:
    """The opt-in parts of the GP language this config asks for (primitive_set's and classic_names' options)."""
    return {"structural": config.structural, "jacobian": config.jacobian, "ntk": config.ntk, "swap": config.swap}


def probe_groups(config: EvolveConfig) -> tuple[str, ...]:
    """The probe passes an evolution with this config needs: the default ones and those of its opt-in kernels."""
    return DEFAULT_GROUPS + tuple(g for g in OPT_IN_GROUPS if getattr(config, g))


def make_toolbox(config: EvolveConfig, fitness: Callable, executor: Executor) -> base.Toolbox:
    pset = primitive_set(**language(config))
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


def _fitness_value(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and -1.0 <= v <= 1.0


class ProxyEvolution:
    """Evolving a proxy, for :func:`greenmachine.search.engine.run_problem`."""

    kind = "gp"
    history_fields = HISTORY_FIELDS
    log_name = "evolve.log"

    def __init__(self, config: EvolveConfig, truth: GroundTruth, data_dir: Path, cache: ProbeCache | None,
                 executor: Executor | None, meter=None):
        self.config = config
        self.truth = truth
        self.data_dir = data_dir
        self.cache = cache
        self.executor = executor  # None: made from the config in setup(), and closed by close()
        self._owns_executor = executor is None
        self.meter = meter
        self.tolerance = float(getattr(config, "parsimony_tolerance", DEFAULT_TOLERANCE))
        # chosen before the run folder exists: a sample that cannot be drawn leaves no folder behind
        # several datasets: one sample for all, drawn where every dataset has ground truth, stratified by the first
        self.datasets: list[str] = list(config.datasets) or [config.dataset]
        self.indices = sample_indices(truth, config.dataset, config.sample_size, config.sampling, seed=config.seed,
                                      strata=config.strata, exclude=_missing_truth(truth, self.datasets))
        self.dataset_settings = {d: probe_settings(config.space, d, config.batch_size, config.seed, config.device,
                                                   spectrum_images=config.spectrum_images)
                                 for d in self.datasets}
        self.settings = self.dataset_settings[config.dataset]  # the first dataset's (config.dataset is datasets[0])
        self.multi = len(self.datasets) > 1
        self.history_fields = list(HISTORY_FIELDS)
        if self.multi:
            self.history_fields += ["best_mean_tau", "best_min_tau"] + [f"best_tau_{d}" for d in self.datasets]
        self.probe_seconds = 0.0
        self.population: list = []
        self.hof = ParsimonyHallOfFame(config.hall_of_fame, self.tolerance)
        self.memo: dict[str, float] = {}
        self.log: logging.Logger | None = None

    def fingerprint(self) -> dict[str, Any]:
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE}
        for option in OPT_IN_GROUPS:  # a run without a network kernel is the run it was before they existed:
            if not cfg.get(option):  # its checkpoint still resumes
                cfg.pop(option, None)
        return {"config": cfg, "sample_indices": self.indices}

    def setup(self, log: logging.Logger, reporter: Reporter) -> None:
        import time

        self.log = log
        config = self.config
        log.info("sample of %d %s architectures (%s, seed %d): probing", len(self.indices), config.space,
                 config.sampling, config.seed)
        if self.multi:
            log.info("datasets %s, fitness = %s of their Kendall taus; the sample is %s by %s accuracy",
                     ", ".join(self.datasets), config.combine, config.sampling, self.datasets[0])
        if config.inits > 1:
            log.info("every network is probed under %d initialisations (probe seeds %d..%d); a tree's fitness ranks "
                     "its mean score over them", config.inits, config.seed, config.seed + config.inits - 1)
        if self.executor is None:
            self.executor = make_executor(config.workers, config.executor, config.ray_address or None, config.device)
        kwargs = {"meter": self.meter} if self.meter is not None else {}
        t0 = time.perf_counter()
        parts: dict[str, ShardedFitness | InitsFitness] = {}
        held_bytes, held_sets = 0, 0  # the probes held so far, for the memory check
        sets = len(self.datasets) * config.inits
        for dataset in self.datasets:  # each dataset on its own images; the same networks, the same cache
            accuracy = self.truth.acc(dataset, self.indices)
            protocols = init_protocols(self.dataset_settings[dataset], config.inits)
            # the memo is the driver's, kept by the outermost fitness only
            own_memo = self.memo if not self.multi and len(protocols) == 1 else None
            per_init = []
            for r, protocol in enumerate(protocols):  # each initialisation probes the whole sample again
                label = "probing networks" + (f" ({dataset})" if self.multi else "") \
                    + (f" (initialisation {r + 1}/{len(protocols)})" if len(protocols) > 1 else "")
                probes = probe_sample(
                    [(i, self.truth.arch(i)) for i in self.indices], protocol, self.data_dir,
                    groups=probe_groups(config), cache=self.cache, executor=self.executor,
                    progress=lambda it, total, label=label: reporter.track(it, total, label), **kwargs,
                )
                # the sample is sharded over the executor's workers, which keep their shard for the whole run
                # (shards.py)
                per_init.append(ShardedFitness(probes, accuracy, self.executor, EVAL_CHUNK, config.device, own_memo))
                del probes
                held_sets += 1
                if held_sets < sets:
                    held_bytes += sum(per_init[-1].nbytes())
                    self._check_memory(held_bytes, held_sets, sets)
            parts[dataset] = per_init[0] if len(per_init) == 1 else \
                InitsFitness(per_init, accuracy, None if self.multi else self.memo)
        self.probe_seconds = time.perf_counter() - t0
        self.fitness = (MultiDatasetFitness(parts, config.combine, self.memo) if self.multi
                        else parts[self.datasets[0]])
        log.info("probed in %.1f s; terminals take %.1f MB in %d shard(s)", self.probe_seconds,
                 sum(self.fitness.nbytes()) / 1e6, self.fitness.shards)
        # DEAP's evaluate only reads what prefetch() scored on the shards: a plain map, in this process
        self.toolbox = make_toolbox(config, self.fitness, SerialExecutor())

    def _check_memory(self, held_bytes: int, held_sets: int, sets: int) -> None:
        """Before probing the sample again (another initialisation or dataset), stop if the sets still to come, at
        the measured size of the ``held_sets`` held (``held_bytes``), would not fit in this machine's memory
        (probing/memory.py). Skipped where the shards live elsewhere (a Ray cluster) or on a GPU."""
        if not getattr(self.executor, "local", False) or str(self.config.device) != "cpu":
            return
        per_set = held_bytes / held_sets
        left = sets - held_sets
        check_room_for(int(per_set * left), f"evolve: {left} more probing{'s' if left > 1 else ''} of the sample "
                       f"(one per initialisation and dataset, {per_set / 1e9:.2f} GB each as measured)",
                       "use fewer --inits or --datasets, or a smaller --sample-size")

    def close(self) -> None:
        """Release the shards, and the executor if this run made it."""
        fitness = getattr(self, "fitness", None)
        if fitness is not None and hasattr(fitness, "close"):
            fitness.close()
        if self._owns_executor and self.executor is not None:
            self.executor.close()
            self.executor = None

    def total_generations(self) -> int:
        return self.config.generations + 1

    def finished(self, generation: int) -> bool:
        return generation > self.config.generations

    def step(self, generation: int) -> dict[str, Any]:
        config, tb = self.config, self.toolbox
        evals_before = self.fitness.evaluations
        if generation == 0:
            population = tb.population(n=config.population)
            if config.seed_classics:
                names = classic_names(**language(config))
                seeds = [_individual(classic_tokens(name)) for name in names][: config.population]
                population[: len(seeds)] = seeds
        else:
            elite = [tb.clone(ind) for ind in tools.selBest(self.population, config.elitism)]
            offspring = tb.select(self.population, len(self.population) - len(elite))
            offspring = _var_and(offspring, tb, config.crossover_prob, config.mutation_prob)
            population = elite + offspring
        invalid = [ind for ind in population if not ind.fitness.valid]
        self.fitness.prefetch(invalid)  # one round over the shards for the whole population
        for ind, fit in zip(invalid, tb.map(tb.evaluate, invalid)):
            ind.fitness.values = fit
        self.population = population
        self.hof.update(population)
        return self._stats(generation, self.fitness.evaluations - evals_before)

    def _stats(self, generation: int, evaluations: int) -> dict[str, Any]:
        population = self.population
        fits = [ind.fitness.values[0] for ind in population]
        best_tokens, best_fit = self.hof[0]
        return {
            "generation": generation,
            "best": round(best_fit, 6),
            "mean": round(statistics.fmean(fits), 6),
            "median": round(statistics.median(fits), 6),
            "invalid": sum(f == WORST_FITNESS for f in fits),
            "size_mean": round(statistics.fmean(len(ind) for ind in population), 2),
            "size_max": max(len(ind) for ind in population),
            "height_max": max(ind.height for ind in population),
            "evaluations": evaluations,
            "best_expression": tree_expression(best_tokens),
            "best_size": len(best_tokens),
            **self._dataset_columns(best_tokens),
        }

    def _dataset_columns(self, tokens: list[str]) -> dict[str, Any]:
        """History columns of a multi-dataset run: the tree's tau on each dataset, and both combinations."""
        if not self.multi:
            return {}
        taus = self.fitness.dataset_taus(" ".join(tokens))
        values = list(taus.values())
        out: dict[str, Any] = {"best_mean_tau": round(combine_taus(values, "mean"), 6),
                               "best_min_tau": round(combine_taus(values, "min"), 6)}
        out.update({f"best_tau_{d}": round(t, 6) for d, t in taus.items()})
        return out

    def describe(self, record: dict[str, Any]) -> str:
        return (f"best {record['best']:.4f} mean {record['mean']:.4f} median {record['median']:.4f} invalid "
                f"{record['invalid']} ({record['evaluations']} evaluations) {record['best_expression']}")

    def state(self) -> dict[str, Any]:
        return {
            "population": [[tree_tokens(i), i.fitness.values[0]] for i in self.population],
            "hall_of_fame": [[list(t), f] for t, f in self.hof.items],
            "fitness_memo": self.memo,
        }

    def restore(self, state: Any) -> None:
        """Check a checkpoint's state before it is used: shapes, primitive names and types, tree heights, fitness
        values finite in [-1, 1] and consistent with the memo, and the hall of fame and a sample of the population
        re-evaluated on the probed sample. A forged or damaged checkpoint is refused, never replayed."""
        def bad(what: str) -> CheckpointError:
            return CheckpointError(f"--resume: the checkpoint is damaged ({what})")

        config = self.config
        if not isinstance(state, dict):
            raise bad("no state")
        memo = state.get("fitness_memo")
        if not isinstance(memo, dict) or not all(isinstance(k, str) and _fitness_value(v) for k, v in memo.items()):
            raise bad("fitness_memo must map expressions to finite fitness values in [-1, 1]")

        def trees(rows: Any, what: str, size: tuple[int, int]) -> list:
            if not isinstance(rows, list) or not size[0] <= len(rows) <= size[1]:
                raise bad(f"{what} must hold {size[0]}..{size[1]} trees")
            out = []
            for row in rows:
                if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], list)
                        and all(isinstance(t, str) for t in row[0])):
                    raise bad(f"{what}: {str(row)[:60]}")
                if not _fitness_value(row[1]):
                    raise bad(f"{what}: fitness {row[1]!r} is not a finite number in [-1, 1]")
                try:
                    ind = _individual(row[0], float(row[1]))
                except GreenmachineError:
                    raise
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    raise bad(f"{what}: {type(exc).__name__}: {exc}") from None
                if ind.height > config.max_height:
                    raise bad(f"{what}: a tree of height {ind.height} exceeds max_height {config.max_height}")
                key = " ".join(row[0])
                if key in memo and memo[key] != row[1]:
                    raise bad(f"{what}: the fitness of {tree_expression(row[0])} disagrees with the memo")
                out.append(ind)
            return out

        population = trees(state.get("population"), "population", (config.population, config.population))
        hof = trees(state.get("hall_of_fame"), "hall_of_fame", (1, config.hall_of_fame))
        check = hof + random.Random(0).sample(population, min(VERIFY_POPULATION, len(population)))
        for ind in check:
            key = " ".join(tree_tokens(ind))
            actual = self.fitness.compute(key)
            if not math.isclose(actual, ind.fitness.values[0], rel_tol=0, abs_tol=1e-9):
                raise bad(f"{tree_expression(tree_tokens(ind))} has fitness {ind.fitness.values[0]!r} in the "
                          f"checkpoint, {actual!r} on the probed sample")
        self.memo.clear()
        self.memo.update(memo)
        self.population = population
        self.hof.items = [(tree_tokens(i), i.fitness.values[0]) for i in hof]
        self.hof.items = self.hof.order(self.hof.items)

    def write_results(self, folder: RunFolder, generation: int) -> None:
        best_tokens, best_fit = self.hof[0]
        proxy = Proxy(
            tokens=list(best_tokens),
            space=self.config.space,
            dataset=self.config.dataset,
            fitness=best_fit,
            sampling=self.config.sampling,
            sample_indices=self.indices,
            seed=self.config.seed,
            probe={"batch_size": self.settings.batch_size, "batch_seed": self.settings.batch_seed,
                   "init_seed": self.settings.init_seed,
                   **({"spectrum_images": self.settings.spectrum_images} if self.settings.spectrum_images > 1
                      else {}),
                   **({"inits": self.config.inits} if self.config.inits > 1 else {})},
            config=self.config.to_dict(),
            extra={"generation": generation, "ground_truth": _data_relative(self.truth.source, self.data_dir),
                   "hp": self.truth.hp, "parsimony_tolerance": self.tolerance, **self._proxy_datasets(best_tokens)},
        )
        save_proxy(proxy, folder.dir / "proxy.json")
        import json

        write_text_atomic(
            folder.dir / "hall_of_fame.json",
            json.dumps([{"expression": tree_expression(t), "tokens": list(t), "kendall_tau": f, "size": len(t)}
                        for t, f in self.hof.items], indent=2) + "\n",
        )

    def _proxy_datasets(self, tokens: list[str]) -> dict[str, Any]:
        """What proxy.json says of a multi-dataset run: its datasets (the first stratified the sample and is the
        proxy's ``dataset``, the default of `score`), the combine rule and the tree's tau on each dataset."""
        if not self.multi:
            return {}
        return {"datasets": list(self.datasets), "combine": self.config.combine,
                "dataset_taus": self.fitness.dataset_taus(" ".join(tokens)), "stratified_by": self.datasets[0]}


def _missing_truth(truth: GroundTruth, datasets: list[str]) -> list[int]:
    """Architectures with ground truth on the first dataset but not on some other one (left out of the sample, so
    that every dataset ranks the same networks); nothing for one dataset, so a single-dataset draw is unchanged."""
    import numpy as np

    if len(datasets) < 2:
        return []
    pool = truth.available(datasets[0])
    missing = np.concatenate([np.setdiff1d(pool, truth.available(d)) for d in datasets[1:]])
    return sorted(int(i) for i in np.unique(missing))


def _data_relative(source: str, data_dir: Path) -> str:
    """A ground-truth path relative to the data folder where it lies inside it (a portable proxy.json)."""
    try:
        return str(Path(source).resolve().relative_to(Path(data_dir).resolve()))
    except ValueError:
        return str(source)


def evolution_finished(config: EvolveConfig, truth: GroundTruth, out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds this very evolution (same config and sample), finished, with its proxy.json
    (:func:`~greenmachine.search.engine.finished_run`): nothing is probed to find out."""
    problem = ProxyEvolution(config.validate(), truth, Path("."), None, SerialExecutor())
    return (Path(out_dir) / "proxy.json").is_file() and finished_run(out_dir, problem)


def run_evolution(
    config: EvolveConfig,
    truth: GroundTruth,
    data_dir: str | Path,
    out_dir: str | Path,
    cache: ProbeCache | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    meter=None,
) -> EvolutionResult:
    """Evolve a proxy for ``config.space`` / ``config.dataset`` (or for all of ``config.datasets`` at once);
    everything lands in ``out_dir`` as it goes."""
    config = config.validate()
    if truth.space != config.space:
        raise GreenmachineError(f"the ground truth is for {truth.space}, the config for {config.space}")
    problem = ProxyEvolution(config, truth, Path(data_dir), cache, executor, meter)
    try:
        outcome = run_problem(problem, out_dir, config.seed, resume=resume, reporter=reporter, meter=meter,
                              progress_label="evolving")
    finally:
        problem.close()
    best_tokens, best_fit = problem.hof[0]
    return EvolutionResult(
        best_tokens=list(best_tokens),
        best_fitness=best_fit,
        hall_of_fame=[(list(t), f) for t, f in problem.hof.items],
        history=outcome.history,
        sample_indices=problem.indices,
        out_dir=Path(out_dir),
        probe_seconds=outcome.totals.probe_seconds,
        seconds=outcome.totals.seconds,
        extra={"parts": outcome.totals.parts, "joules": outcome.totals.joules},
    )
