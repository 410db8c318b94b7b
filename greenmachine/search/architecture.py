"""Energy-aware multi-objective architecture search driven by zero-cost proxies (``greenmachine search``).

Two objectives: maximise a training-free objective (an evolved proxy, a hand-designed baseline, or, for reference
only, the benchmark's accuracy) and minimise a cost (training energy, latency on a device, #params, FLOPs, measured
EC-NAS energy). The algorithms follow DEAP's ``examples/ga/nsga2.py``: a weights tuple ``(1.0, -1.0)``,
``tools.selNSGA2`` for survival, ``tools.selTournamentDCD`` for mating, ``toolbox.map`` for evaluation and
``tools.Statistics`` with ``axis=0``; random search draws the same budget uniformly. The architecture operators
(random sample, mutate, crossover) belong to the space (``get_space(name)``), not to this module.

``--budget`` counts **distinct** architectures scored: an architecture met again is free, in the search (a score
table) and across runs (the probe cache, and a score cache for baselines).

The search is judged afterwards on the benchmark's truth, in the convention of the README: maximise accuracy (%),
minimise log10(cost); the reference point is (median accuracy of the whole space, worst log10 cost of the whole
space). The found front (the non-dominated set of every architecture scored, under the search's own objectives)
is re-scored with true accuracy and true cost; its hypervolume over the true front's is ``hv_ratio``. Hypervolume,
non-dominated sorting and hypervolume contributions come from ``moocore``.

The fitness of an architecture is a pure function of the architecture (probe protocol and seeds fixed per
objective), so scores can be cached and a resumed run continues exactly.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from deap import base, creator, tools

from greenmachine.errors import GreenmachineError
from greenmachine.files import atomic_open, write_text_atomic
from greenmachine.search.engine import CheckpointError, RunFolder, RunOutcome, run_problem
from greenmachine.spaces.truth import GroundTruth
from greenmachine.ui import Reporter

ALGORITHMS = ("nsga2", "random")
COST_NAMES = ("train-energy", "latency:<device column>", "params", "flops", "energy", "energy-predicted")
LATENCY_FILE = Path("latency") / "tss-latency-ms.csv"
FLOOR = -1e30  # the objective of an architecture the proxy cannot score (NaN, -inf): worse than any score
STALL_GENERATIONS = 30  # NSGA-II stops when this many generations in a row found no new architecture
SPOT_CHECKS = 4  # architectures re-scored when resuming, to refuse a checkpoint with forged scores
HISTORY_FIELDS = ["generation", "evaluated", "new", "front_size", "objective_max", "objective_mean",
                  "log10_cost_min", "log10_cost_mean", "hv_ratio", "seconds"]
CONVENTION = ("maximise accuracy (%), minimise log10(cost); reference point = (median accuracy of the whole "
              "space, worst log10 cost of the whole space); the found front is judged on the benchmark's truth")

if not hasattr(creator, "ArchFitness"):
    creator.create("ArchFitness", base.Fitness, weights=(1.0, -1.0))
if not hasattr(creator, "ArchIndividual"):
    creator.create("ArchIndividual", list, fitness=creator.ArchFitness)


# ---------------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class SearchConfig:
    """One search run (one seed). ``objective`` is a proxy.json path, a baseline name or ``accuracy``."""

    space: str = "tss"
    dataset: str = "cifar10"
    objective: str = "accuracy"
    cost: str = "train-energy"
    algorithm: str = "nsga2"
    budget: int = 1000
    population: int = 40
    seed: int = 0
    crossover_prob: float = 0.5  # a cell has few genes: half the children are crossed, all are mutated
    mutation_prob: float = 1.0
    batch_size: int = 64  # the probe minibatch of baseline objectives (a proxy.json brings its own protocol)
    probe_seed: int = 0  # minibatch and initialisation seed of baseline objectives (fixed: scores are shared)
    device: str = "cpu"
    training_device_w: float | None = None  # power of the training device behind ``train-energy`` (None: default)
    energy_model: str | None = None  # the surrogate (``energy fit`` JSON) behind ``energy-predicted``

    def validate(self) -> "SearchConfig":
        if self.algorithm not in ALGORITHMS:
            raise GreenmachineError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        if self.budget < 1:
            raise GreenmachineError(f"--budget must be at least 1, got {self.budget}")
        if self.population < 4 or self.population % 4:
            raise GreenmachineError(f"--population must be a positive multiple of 4 (NSGA-II's DCD tournament), "
                                    f"got {self.population}")
        if not 0 <= self.seed < 2**32:
            raise GreenmachineError(f"--seed must lie in 0..{2**32 - 1}, got {self.seed}")
        for name in ("crossover_prob", "mutation_prob"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise GreenmachineError(f"{name} must lie in [0, 1], got {v!r}")
        if self.batch_size < 1:
            raise GreenmachineError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.training_device_w is not None and not (math.isfinite(self.training_device_w)
                                                      and self.training_device_w > 0):
            raise GreenmachineError(f"--training-device-w must be a positive number, got {self.training_device_w}")
        if (self.cost == "energy-predicted") != (self.energy_model is not None):
            raise GreenmachineError("--cost energy-predicted needs --energy-model MODEL.json (from 'greenmachine energy "
                                    "fit'), and --energy-model is used by that cost only")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_seeds(text: str) -> list[int]:
    """``0-4`` or ``0,3,7`` or ``2``: the seeds of a multi-seed run, each in 0..2**32-1."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if b < a or b - a > 1000:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise GreenmachineError(f"--seeds must look like 0-4 or 0,3,7, not {text!r}") from None
    if not seeds or any(not 0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds):
        raise GreenmachineError(f"--seeds must name distinct seeds in 0..{2**32 - 1}, got {text!r}")
    return seeds


# ---------------------------------------------------------------------------------------------------------------
# costs: one array over the whole space each (the reference point and the true front need all of it)


@dataclass
class CostTable:
    """A cost over the whole space: ``search`` is what the search sees, ``true`` what it is judged on (equal for
    every measured cost; a predicted cost such as a surrogate's would differ)."""

    name: str
    label: str  # axis label, with unit
    unit: str
    search: np.ndarray
    true: np.ndarray
    source: str


CostBuilder = Callable[[GroundTruth, str, "CostContext"], CostTable]


@dataclass
class CostContext:
    data_dir: Path
    cache_root: Path | None
    reporter: Reporter
    training_device_w: float | None = None
    arg: str = ""  # what follows the colon (latency:<column>)
    energy_model: str | Path | None = None  # the surrogate file of ``energy-predicted``


def _training_w(ctx: CostContext) -> float:
    if ctx.training_device_w is not None:
        return ctx.training_device_w
    try:
        from greenmachine.energy.accounting import DEFAULT_TRAINING_DEVICE_W
    except ImportError:  # the energy package not installed in this tree: the same documented default
        return 250.0
    return float(DEFAULT_TRAINING_DEVICE_W)


def _metric(truth: GroundTruth, name: str, dataset: str) -> np.ndarray | None:
    fn = getattr(truth, "metric", None)
    return None if not callable(fn) else fn(name, dataset)


def cost_train_energy(truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    """Measured training kWh where the benchmark has it (EC-NAS), else the benchmark's training seconds per epoch
    x its epochs (hp) x the training device's power (the rule of the energy accounting)."""
    measured = _metric(truth, "train_energy_kwh", dataset)
    if measured is not None:
        v = np.asarray(measured, dtype=np.float64)
        return CostTable("train-energy", "training energy (kWh, measured)", "kWh", v, v, "benchmark train_energy_kwh")
    per_epoch = truth.train_seconds_per_epoch.get(dataset)
    if per_epoch is None or not np.isfinite(per_epoch).any():
        raise GreenmachineError(f"--cost train-energy: the {truth.space} ground truth ({truth.source}) has no "
                                f"training times for {dataset}")
    try:
        epochs = int(str(truth.hp))
    except ValueError:
        raise GreenmachineError(f"--cost train-energy: the ground truth names no epoch count (hp={truth.hp!r})") from None
    w = _training_w(ctx)
    v = np.asarray(per_epoch, dtype=np.float64) * epochs * w / 3.6e6
    return CostTable("train-energy", f"training energy (kWh: s/epoch x {epochs} epochs x {w:g} W)", "kWh", v, v,
                     f"{dataset}_train_s_per_epoch x {epochs} x {w:g} W")


def cost_energy(truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    """EC-NAS measured training energy; refused where the benchmark did not measure it."""
    measured = _metric(truth, "train_energy_kwh", dataset)
    if measured is None:
        raise GreenmachineError(f"--cost energy needs a benchmark with measured training energy (ecnas-4v, "
                                f"ecnas-5v); the {truth.space} ground truth has none: use --cost train-energy")
    v = np.asarray(measured, dtype=np.float64)
    return CostTable("energy", "training energy (kWh, measured)", "kWh", v, v, "benchmark train_energy_kwh")


def cost_latency(truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    """Latency in ms on one device column of HELP's NAS-Bench-201 latency table (TSS only)."""
    path = ctx.data_dir / LATENCY_FILE
    if truth.space != "tss":
        raise GreenmachineError(f"--cost latency: the latency table {path} covers TSS only, not {truth.space}")
    if not path.is_file():
        raise GreenmachineError(f"--cost latency: latency table not found: {path}")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if ctx.arg not in header or ctx.arg == "index":
            cols = ", ".join(h for h in header if h != "index")
            raise GreenmachineError(f"--cost latency:{ctx.arg}: no such column in {path}; columns: {cols}")
        col = header.index(ctx.arg)
        v = np.full(len(truth.archs), np.nan)
        for line, row in enumerate(reader, 2):
            try:
                i, x = int(row[0]), float(row[col])
            except (ValueError, IndexError):
                raise GreenmachineError(f"{path} line {line}: not an index and a number") from None
            if not 0 <= i < len(v):
                raise GreenmachineError(f"{path} line {line}: index {i} is outside the space")
            v[i] = x
    return CostTable(f"latency:{ctx.arg}", f"latency on {ctx.arg} (ms)", "ms", v, v, f"{path.name}:{ctx.arg}")


def _network_counts(truth: GroundTruth, dataset: str, ctx: CostContext, what: str) -> np.ndarray:
    """#params or FLOPs of every network of the space, built once and cached under the cache folder."""
    from greenmachine.spaces import get_space

    space = get_space(truth.space)
    key = hashlib.sha256(json.dumps([truth.space, dataset, what, len(truth.archs),
                                     hashlib.sha256("\n".join(a or "" for a in truth.archs).encode()).hexdigest()]
                                    ).encode()).hexdigest()[:20]
    path = ctx.cache_root / "costs" / f"{truth.space}-{dataset}-{what}-{key}.npy" if ctx.cache_root else None
    if path is not None and path.is_file():
        try:
            v = np.load(path, allow_pickle=False)
            if v.shape == (len(truth.archs),) and v.dtype == np.float64:
                return v
        except (OSError, ValueError):
            pass  # damaged: compute again
    import torch

    v = np.full(len(truth.archs), np.nan)
    todo = [i for i, a in enumerate(truth.archs) if a is not None]
    for i in ctx.reporter.track(todo, len(todo), f"{what} of every {truth.space} network (once, cached)"):
        net = space.build_network(truth.archs[i], dataset)
        if what == "params":
            v[i] = sum(p.numel() for p in net.parameters() if p.requires_grad)
        else:
            from xautodl.utils import get_model_infos

            state = torch.get_rng_state()
            try:
                v[i], _ = get_model_infos(net, (1, 3, 32 if "cifar" in dataset else 16, 32 if "cifar" in dataset else 16))
            finally:
                torch.set_rng_state(state)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, v, allow_pickle=False)
        os.replace(tmp, path)
    return v


def cost_params(truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    measured = _metric(truth, "params", dataset)
    v = np.asarray(measured, dtype=np.float64) if measured is not None else _network_counts(truth, dataset, ctx, "params")
    return CostTable("params", "#parameters", "parameters", v, v,
                     "benchmark params" if measured is not None else "counted on the built networks")


def cost_flops(truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    v = _network_counts(truth, dataset, ctx, "flops")
    return CostTable("flops", "FLOPs (millions, one image)", "MFLOPs", v, v, "xautodl get_model_infos")


def cost_energy_predicted(truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    """Training energy predicted by a fitted surrogate (``greenmachine energy fit``) for every cell of a NAS-Bench-101
    space: the search sees the prediction, as it would where nothing was measured; where the benchmark measured
    the energy (EC-NAS), the front is judged on the measured kWh, so hv_ratio says what the prediction cost."""
    from greenmachine.energy.surrogate import load_model
    from greenmachine.spaces import get_space

    if ctx.energy_model is None:
        raise GreenmachineError("--cost energy-predicted needs --energy-model MODEL.json (from 'greenmachine energy fit')")
    space = get_space(truth.space)
    if not hasattr(space, "cell"):
        raise GreenmachineError(f"--cost energy-predicted predicts NAS-Bench-101 cells (ecnas-4v, ecnas-5v), "
                                f"not {truth.space} architectures")
    model = load_model(ctx.energy_model)
    predicted = np.asarray(model.predict_cells([space.cell(a) for a in truth.archs]), dtype=np.float64)
    measured = _metric(truth, "train_energy_kwh", dataset)
    true = np.asarray(measured, dtype=np.float64) if measured is not None else predicted
    name = Path(ctx.energy_model).name
    return CostTable("energy-predicted", "training energy (kWh, predicted)", "kWh", predicted, true,
                     f"surrogate {name} ({model.kind}); judged on "
                     + ("benchmark train_energy_kwh" if measured is not None else "the prediction"))


#: cost name -> builder; another cost (e.g. a surrogate's ``energy-predicted``) is one more entry here
COSTS: dict[str, CostBuilder] = {
    "train-energy": cost_train_energy,
    "latency": cost_latency,
    "params": cost_params,
    "flops": cost_flops,
    "energy": cost_energy,
    "energy-predicted": cost_energy_predicted,
}


def load_cost(spec: str, truth: GroundTruth, dataset: str, ctx: CostContext) -> CostTable:
    name, _, arg = spec.partition(":")
    if name not in COSTS or (name == "latency") != bool(arg or spec.endswith(":")):
        raise GreenmachineError(f"unknown --cost {spec!r}; choose one of: {', '.join(COST_NAMES)}")
    table = COSTS[name](truth, dataset, replace(ctx, arg=arg))
    return table


# ---------------------------------------------------------------------------------------------------------------
# objectives: a pure score per architecture, higher is better


class Objective:
    """A training-free objective (or the oracle). ``scores`` must be a pure function of the indices."""

    name: str = ""
    kind: str = ""
    probes: bool = True  # whether scoring probes networks (the oracle does not)
    probe_seconds: float = 0.0

    def scores(self, indices: Sequence[int], fresh: bool = False) -> np.ndarray:
        """Scores of ``indices``; ``fresh`` bypasses any score table (re-scoring to check a checkpoint)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}


class AccuracyObjective(Objective):
    """The oracle: the benchmark's test accuracy. For reference only; it is what a proxy tries to predict."""

    kind = "oracle"
    probes = False

    def __init__(self, truth: GroundTruth, dataset: str):
        self.name = "accuracy"
        self.acc = truth.accuracy[dataset]

    def scores(self, indices: Sequence[int], fresh: bool = False) -> np.ndarray:
        return self.acc[np.asarray(indices, dtype=np.int64)].astype(np.float64)


class ProxyObjective(Objective):
    """An evolved (or hand-written) proxy.json, probed under its own probe protocol through the probe cache."""

    kind = "proxy"

    def __init__(self, path: str, truth: GroundTruth, dataset: str, data_dir: Path, device: str, cache, meter,
                 reporter: Reporter, executor=None):
        from greenmachine.proxies.proxyfile import load_proxy
        from greenmachine.workspace import proxy_protocol

        self.proxy = load_proxy(path)
        if self.proxy.space is not None and self.proxy.space != truth.space:
            raise GreenmachineError(f"--objective {path} is a proxy of the {self.proxy.space} space, not {truth.space}")
        self.name = str(path)
        self.expression = self.proxy.expression
        self.truth, self.dataset, self.data_dir = truth, dataset, data_dir
        self.settings, self.inits = proxy_protocol(self.proxy, truth.space, dataset, device)
        self.cache, self.meter, self.reporter, self.executor = cache, meter, reporter, executor

    def scores(self, indices: Sequence[int], fresh: bool = False) -> np.ndarray:
        from greenmachine.proxies.scoring import score_tokens

        kwargs = {"meter": self.meter} if self.meter is not None else {}
        result = score_tokens(self.proxy.tokens, self.truth, self.dataset, list(indices), self.settings,
                              self.data_dir, cache=self.cache, executor=self.executor, reporter=self.reporter,
                              inits=self.inits, **kwargs)
        self.probe_seconds += result.probe_seconds
        return np.asarray(result.scores, dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "expression": self.expression, "probe": self.proxy.probe}


class BaselineObjective(Objective):
    """A hand-designed proxy of the registry, scored by the comparison code (one network build per architecture,
    the baselines' probe protocol); scores are kept in a small on-disk table so that seeds and reruns share them."""

    kind = "baseline"

    def __init__(self, name: str, truth: GroundTruth, dataset: str, data_dir: Path, config: SearchConfig, cache,
                 meter, reporter: Reporter):
        from greenmachine.proxies.comparison import check_proxy_names
        from greenmachine.workspace import probe_settings

        check_proxy_names([name])
        self.name = name
        self.truth, self.dataset, self.data_dir = truth, dataset, data_dir
        self.settings = probe_settings(truth.space, dataset, config.batch_size, config.probe_seed, config.device)
        self.cache, self.meter, self.reporter = cache, meter, reporter
        root = getattr(cache, "root", None)
        self.table = ScoreTable(root, truth.space, dataset, name, self.settings) if root else None

    def scores(self, indices: Sequence[int], fresh: bool = False) -> np.ndarray:
        from greenmachine.proxies.comparison import compare

        known = self.table.load() if self.table and not fresh else {}
        todo = [i for i in indices if i not in known]
        if todo:
            t0 = time.perf_counter()
            kwargs = {"meter": self.meter} if self.meter is not None else {}
            try:
                result = compare(self.truth, self.dataset, todo, self.settings, self.data_dir, proxies=[self.name],
                                 cache=self.cache, reporter=self.reporter, **kwargs)
            except TypeError:  # a comparison without the meter argument
                result = compare(self.truth, self.dataset, todo, self.settings, self.data_dir, proxies=[self.name],
                                 cache=self.cache, reporter=self.reporter)
            self.probe_seconds += time.perf_counter() - t0
            new = dict(zip(todo, (float(x) for x in result.scores[self.name])))
            if self.table and not fresh:
                self.table.add(new)
            known = {**known, **new}
        return np.array([known[i] for i in indices], dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "probe": {"batch_size": self.settings.batch_size,
                                                               "batch_seed": self.settings.batch_seed,
                                                               "init_seed": self.settings.init_seed}}


class ScoreTable:
    """Baseline scores on disk, one JSON line per architecture, appended (small lines are written whole with
    ``O_APPEND``, so two runs sharing the cache never mix a line). Lines that do not parse are ignored."""

    def __init__(self, root: Path, space: str, dataset: str, name: str, settings):
        key = hashlib.sha256(json.dumps({"name": name, "settings": settings.key()}, sort_keys=True,
                                        default=str).encode()).hexdigest()[:24]
        self.path = Path(root) / "search-scores" / space / dataset / f"{name}-{key}.jsonl"
        self.size = 0

    def load(self) -> dict[int, float]:
        out: dict[int, float] = {}
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError):
            return out
        for line in text.splitlines():
            try:
                i, v = json.loads(line)
                if isinstance(i, int) and not isinstance(i, bool) and isinstance(v, (int, float)):
                    out[i] = float(v)
            except (ValueError, TypeError):
                continue
        return out

    def add(self, scores: dict[int, float]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                for i, v in scores.items():
                    os.write(fd, (json.dumps([int(i), v]) + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise GreenmachineError(f"cannot write the score cache {self.path}: {exc}") from None


def make_objective(spec: str, truth: GroundTruth, dataset: str, data_dir: Path, config: SearchConfig, cache=None,
                   meter=None, reporter: Reporter | None = None, executor=None) -> Objective:
    """``accuracy`` (the oracle), a baseline name of the registry, or a path to a proxy.json."""
    reporter = reporter or Reporter(quiet=True)
    if spec == "accuracy":
        return AccuracyObjective(truth, dataset)
    if spec.endswith(".json") or os.sep in spec or Path(spec).is_file():
        return ProxyObjective(spec, truth, dataset, data_dir, config.device, cache, meter, reporter, executor)
    from greenmachine.proxies.baselines import load_all

    if spec not in load_all():
        raise GreenmachineError(f"--objective {spec!r} is neither a proxy.json, a baseline "
                                f"({', '.join(load_all())}) nor 'accuracy'")
    return BaselineObjective(spec, truth, dataset, data_dir, config, cache, meter, reporter)


# ---------------------------------------------------------------------------------------------------------------
# judging: hypervolume, fronts and the knee (moocore)

MAXIMISE = [True, False]  # (accuracy or objective, log10 cost)


def nondominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of (maximised, minimised) points (duplicates all kept)."""
    import moocore

    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=MAXIMISE, keep_weakly=True), dtype=bool)


def hypervolume(points: np.ndarray, ref: Sequence[float]) -> float:
    """Area dominated by (accuracy, log10 cost) points and bounded by ``ref``; points beyond ``ref`` add nothing."""
    import moocore

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[(pts[:, 0] > ref[0]) & (pts[:, 1] < ref[1])]
    if len(pts) == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=list(ref), maximise=MAXIMISE))


def knee_index(points: np.ndarray, ref: Sequence[float]) -> int | None:
    """The knee of a front: the point farthest beyond the line joining the front's two extremes (the most accurate
    and the cheapest), towards the ideal point, in objectives normalised to [0, 1] by ``moocore.normalise`` (Das,
    1999; Branke et al., 2004). A front without such a point (two points, or a straight or concave front) takes
    the point with the largest exclusive hypervolume contribution (``moocore.hv_contributions``) instead. Only
    points that dominate the reference point qualify; None when there is none."""
    import moocore

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside = np.flatnonzero((pts[:, 0] > ref[0]) & (pts[:, 1] < ref[1]))
    if len(inside) == 0:
        return None
    p = pts[inside]
    if len(p) >= 3 and np.ptp(p[:, 0]) > 0 and np.ptp(p[:, 1]) > 0:
        # both objectives as "higher is better" in [0, 1]: accuracy, and minus log10 cost
        z = np.asarray(moocore.normalise(np.column_stack([p[:, 0], -p[:, 1]]), to_range=[0.0, 1.0]))
        a, b = z[np.argmax(z[:, 0])], z[np.argmax(z[:, 1])]  # the most accurate, the cheapest
        d = b - a
        # signed distance from the line a-b; positive on the side of the ideal point (1, 1)
        dist = (d[0] * (z[:, 1] - a[1]) - d[1] * (z[:, 0] - a[0])) / np.hypot(*d)
        side = np.sign(d[0] * (1.0 - a[1]) - d[1] * (1.0 - a[0])) or 1.0
        dist = dist * side
        if dist.max() > 1e-12:
            return int(inside[int(np.argmax(dist))])
    contrib = np.asarray(moocore.hv_contributions(p, ref=list(ref), maximise=MAXIMISE))
    return int(inside[int(np.argmax(contrib))])


@dataclass
class Judgement:
    reference: tuple[float, float]
    hv_true: float
    hv_found: float
    found: list[int]  # indices of the found front (non-dominated under the search's own objectives)
    true_front: list[int]
    knee: int | None
    most_accurate: int | None

    @property
    def hv_ratio(self) -> float:
        return self.hv_found / self.hv_true if self.hv_true > 0 else math.nan


class Space:
    """The whole space as the judge sees it: true accuracy and true log10 cost of every eligible architecture."""

    def __init__(self, truth: GroundTruth, dataset: str, cost: CostTable):
        acc = truth.accuracy[dataset]
        ok = np.isfinite(acc) & np.isfinite(cost.true) & (cost.true > 0) & np.isfinite(cost.search) & (cost.search > 0)
        self.indices = np.flatnonzero(ok)
        if len(self.indices) == 0:
            raise GreenmachineError(f"no architecture of {truth.space} has both a {dataset} accuracy and a "
                                    f"positive {cost.name} cost")
        self.acc = acc
        self.log_true = np.where(ok, np.log10(np.where(ok, cost.true, 1.0)), np.nan)
        self.log_search = np.where(ok, np.log10(np.where(ok, cost.search, 1.0)), np.nan)
        self.reference = (float(np.median(acc[self.indices])), float(np.max(self.log_true[self.indices])))
        pts = np.column_stack([acc[self.indices], self.log_true[self.indices]])
        self.true_front = self.indices[nondominated(pts)]
        self.hv_true = hypervolume(np.column_stack([acc[self.true_front], self.log_true[self.true_front]]),
                                   self.reference)

    def judge(self, evaluated: Sequence[int], objective: dict[int, float]) -> Judgement:
        ev = np.asarray(list(evaluated), dtype=np.int64)
        if len(ev) == 0:
            return Judgement(self.reference, self.hv_true, 0.0, [], self.true_front.tolist(), None, None)
        obj = np.array([objective[int(i)] for i in ev])
        found = ev[nondominated(np.column_stack([obj, self.log_search[ev]]))]
        truth_pts = np.column_stack([self.acc[found], self.log_true[found]])
        hv_found = hypervolume(truth_pts, self.reference)
        on_truth = nondominated(truth_pts)
        k = knee_index(truth_pts[on_truth], self.reference)
        knee = int(found[on_truth][k]) if k is not None else None
        most = int(found[int(np.argmax(self.acc[found]))])
        return Judgement(self.reference, self.hv_true, hv_found, found.tolist(), self.true_front.tolist(), knee, most)


# ---------------------------------------------------------------------------------------------------------------
# the search problem for the engine


class ArchitectureSearch:
    """NSGA-II (or random search) over a space, for :func:`greenmachine.search.engine.run_problem`."""

    kind = "architecture"
    history_fields = HISTORY_FIELDS
    log_name = "search.log"

    def __init__(self, config: SearchConfig, truth: GroundTruth, objective: Objective, cost: CostTable, space_ops,
                 executor=None):
        self.config = config
        self.truth = truth
        self.objective = objective
        self.cost = cost
        self.ops = space_ops
        self.space = Space(truth, config.dataset, cost)
        self.eligible = set(self.space.indices.tolist())
        if config.budget > len(self.eligible):
            raise GreenmachineError(f"--budget {config.budget} is larger than the space: {truth.space} has "
                                    f"{len(self.eligible)} architectures with a {config.dataset} accuracy and a cost")
        self.scores: dict[int, float] = {}  # objective value of every architecture scored, as the search uses it
        self.evaluated: list[tuple[int, int]] = []  # (index, generation) in the order scored
        self.population: list = []
        self.stall = 0
        self.log: logging.Logger | None = None
        self.reporter = Reporter(quiet=True)
        self.toolbox = self._toolbox(executor)
        self.stats = tools.Statistics(lambda ind: ind.fitness.values)
        self.stats.register("max", np.max, axis=0)
        self.stats.register("mean", np.mean, axis=0)
        self.stats.register("min", np.min, axis=0)

    @property
    def probe_seconds(self) -> float:
        return self.objective.probe_seconds

    # DEAP toolbox -----------------------------------------------------------------------------------------------

    def _toolbox(self, executor) -> base.Toolbox:
        tb = base.Toolbox()
        rng = random._inst  # the random module's own generator: DEAP's selections draw from it, one saved state
        tb.register("arch", self.ops.random_arch, rng)
        tb.register("individual", tools.initIterate, creator.ArchIndividual, lambda: [tb.arch()])
        tb.register("population", tools.initRepeat, list, tb.individual)
        tb.register("evaluate", self._fitness)
        tb.register("map", executor.map if executor is not None else map)
        tb.register("select", tools.selNSGA2)

        def mate(a, b):
            a[0], b[0] = self.ops.crossover(a[0], b[0], rng)
            return a, b

        def mutate(ind):
            ind[0] = self.ops.mutate(ind[0], rng)
            return (ind,)

        tb.register("mate", mate)
        tb.register("mutate", mutate)
        return tb

    def _index(self, arch: str) -> int | None:
        try:
            i = self.truth.index_of(arch)
        except GreenmachineError:
            return None
        return i if i in self.eligible else None

    def _fitness(self, ind) -> tuple[float, float]:
        """Pure: the cached objective score and the log10 cost of the architecture."""
        i = self.truth.index_of(ind[0])
        return self.scores[i], float(self.space.log_search[i])

    def _score(self, indices: list[int]) -> list[int]:
        """Score the architectures not scored yet, within the budget; returns those scored now."""
        new: list[int] = []
        for i in indices:
            if i not in self.scores and i not in new:
                new.append(i)
        new = new[: self.config.budget - len(self.scores)]
        if new:
            values = self.objective.scores(new)
            for i, v in zip(new, values):
                v = float(v)
                self.scores[i] = v if math.isfinite(v) else (FLOOR if v != math.inf else -FLOOR)
        return new

    def _evaluate(self, individuals: list, generation: int) -> list:
        """Score what is new (budget permitting) and set the fitness through ``toolbox.map``; individuals whose
        architecture could not be scored (budget exhausted, not in the benchmark) are dropped."""
        idx = [self._index(ind[0]) for ind in individuals]
        new = self._score([i for i in idx if i is not None])
        self.evaluated.extend((i, generation) for i in new)
        keep = [ind for ind, i in zip(individuals, idx) if i is not None and i in self.scores]
        todo = [ind for ind in keep if not ind.fitness.valid]
        for ind, fit in zip(todo, self.toolbox.map(self.toolbox.evaluate, todo)):
            ind.fitness.values = fit
        self.stall = 0 if new else self.stall + 1
        return keep

    # engine protocol --------------------------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "objective": self.objective.describe(), "cost": self.cost.source}

    def setup(self, log: logging.Logger, reporter: Reporter) -> None:
        self.log, self.reporter = log, reporter
        if hasattr(self.objective, "reporter"):
            self.objective.reporter = reporter
        log.info("search %s on %s / %s: objective %s, cost %s, budget %d, population %d, seed %d",
                 self.config.algorithm, self.config.space, self.config.dataset, self.objective.name, self.cost.name,
                 self.config.budget, self.config.population, self.config.seed)

    def total_generations(self) -> int | None:
        return None

    def finished(self, generation: int) -> bool:
        if generation == 0:
            return False
        return len(self.scores) >= self.config.budget or self.stall >= STALL_GENERATIONS

    def step(self, generation: int) -> dict[str, Any]:
        before = len(self.scores)
        if self.config.algorithm == "random":
            remaining = sorted(self.eligible - set(self.scores))
            k = min(self.config.population, self.config.budget - len(self.scores), len(remaining))
            picked = random.sample(remaining, k)
            inds = [creator.ArchIndividual([self.truth.arch(i)]) for i in picked]
            self.population += self._evaluate(inds, generation)
        elif generation == 0:
            pop = self.toolbox.population(n=self.config.population)
            pop = self._evaluate(pop, generation)
            self.population = self.toolbox.select(pop, len(pop))  # assigns the crowding distance
        else:
            n = len(self.population) - len(self.population) % 4
            offspring = tools.selTournamentDCD(self.population, n) if n >= 4 else list(self.population)
            offspring = [self.toolbox.clone(ind) for ind in offspring]
            for a, b in zip(offspring[::2], offspring[1::2]):
                if random.random() <= self.config.crossover_prob:
                    self.toolbox.mate(a, b)
                if random.random() <= self.config.mutation_prob:
                    self.toolbox.mutate(a)
                if random.random() <= self.config.mutation_prob:
                    self.toolbox.mutate(b)
                del a.fitness.values, b.fitness.values
            offspring = self._evaluate(offspring, generation)
            self.population = self.toolbox.select(self.population + offspring, self.config.population)
        return self._record(generation, len(self.scores) - before)

    def _record(self, generation: int, new: int) -> dict[str, Any]:
        rec = self.stats.compile(self.population) if self.population else {}
        judged = self.space.judge([i for i, _ in self.evaluated], self.scores)
        ev = [i for i, _ in self.evaluated]
        return {
            "generation": generation,
            "evaluated": len(self.scores),
            "new": new,
            "front_size": len(judged.found),
            "objective_max": _round(rec["max"][0]) if rec else "",
            "objective_mean": _round(rec["mean"][0]) if rec else "",
            "log10_cost_min": _round(float(np.min(self.space.log_search[ev]))) if ev else "",
            "log10_cost_mean": _round(float(np.mean(self.space.log_search[ev]))) if ev else "",
            "hv_ratio": _round(judged.hv_ratio),
        }

    def describe(self, record: dict[str, Any]) -> str:
        return (f"{record['evaluated']}/{self.config.budget} architectures (+{record['new']}), front "
                f"{record['front_size']}, hv_ratio on truth {record['hv_ratio']}")

    def state(self) -> dict[str, Any]:
        return {
            "scores": [[i, self.scores[i]] for i, _ in self.evaluated],
            "generations": [g for _, g in self.evaluated],
            # the crowding distance that selTournamentDCD reads was set by selNSGA2 over parents and children
            # together: it cannot be recomputed from the survivors, so it is kept (infinity as null)
            "population": [[ind[0], *ind.fitness.values, _crowding(ind)] for ind in self.population],
            "stall": self.stall,
        }

    def restore(self, state: Any) -> None:
        """Check a checkpoint's state against the config and the truth before using it; refuse forged scores."""
        bad = lambda what: CheckpointError(f"--resume: the checkpoint is damaged or forged ({what})")  # noqa: E731
        if not isinstance(state, dict):
            raise bad("no state")
        scores, gens, pop, stall = (state.get(k) for k in ("scores", "generations", "population", "stall"))
        if not (isinstance(scores, list) and isinstance(gens, list) and len(gens) == len(scores)):
            raise bad("scores")
        if len(scores) > self.config.budget:
            raise bad(f"{len(scores)} architectures scored, budget {self.config.budget}")
        table: dict[int, float] = {}
        evaluated = []
        for row, g in zip(scores, gens):
            if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int) and not isinstance(row[0], bool)
                    and isinstance(row[1], (int, float)) and not isinstance(row[1], bool) and math.isfinite(row[1])
                    and isinstance(g, int) and not isinstance(g, bool) and g >= 0):
                raise bad(f"score row {row!r}")
            i = row[0]
            if i not in self.eligible or i in table:
                raise bad(f"architecture {i} outside the space or scored twice")
            table[i] = float(row[1])
            evaluated.append((i, g))
        if isinstance(self.objective, AccuracyObjective):
            check = list(table)
        else:
            check = random.Random(len(table)).sample(sorted(table), min(SPOT_CHECKS, len(table)))
        if check:
            fresh = self.objective.scores(check, fresh=True)
            for i, v in zip(check, fresh):
                v = float(v)
                v = v if math.isfinite(v) else (FLOOR if v != math.inf else -FLOOR)
                if not math.isclose(v, table[i], rel_tol=self._rescore_tolerance(), abs_tol=1e-12):
                    raise bad(f"the score of architecture {i} is {table[i]!r}, re-scoring gives {v!r}")
        if not isinstance(pop, list) or len(pop) > max(self.config.population, self.config.budget):
            raise bad("population")
        population = []
        for row in pop:
            if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str)
                    and (row[3] is None or (isinstance(row[3], (int, float)) and not isinstance(row[3], bool)
                                            and math.isfinite(row[3]) and row[3] >= 0))):
                raise bad(f"individual {row!r}")
            i = self._index(row[0])
            if i is None or i not in table:
                raise bad(f"individual {row[0]!r} was never scored")
            fit = (table[i], float(self.space.log_search[i]))
            if [float(x) if isinstance(x, (int, float)) else None for x in row[1:3]] != list(fit):
                raise bad(f"the fitness of {row[0]!r} is not its score and cost")
            ind = creator.ArchIndividual([row[0]])
            ind.fitness.values = fit
            ind.fitness.crowding_dist = math.inf if row[3] is None else float(row[3])
            population.append(ind)
        if not isinstance(stall, int) or isinstance(stall, bool) or stall < 0:
            raise bad("stall")
        self.scores, self.evaluated, self.stall = table, evaluated, stall
        self.population = population

    def _rescore_tolerance(self) -> float:
        """How close a re-scored architecture must come to its checkpointed score. On the CPU scores repeat
        bitwise; CUDA's backward kernels accumulate with atomics (synflow, gradients), so the last digits vary
        from run to run there. A forged score is off by far more than either."""
        return 1e-4 if str(self.config.device).startswith("cuda") else 1e-9

    def write_results(self, folder: RunFolder, generation: int) -> None:
        write_evaluated(folder.dir / "evaluated.csv", self)

    # results ----------------------------------------------------------------------------------------------------

    def judge(self) -> Judgement:
        return self.space.judge([i for i, _ in self.evaluated], self.scores)


def _crowding(ind) -> float | None:
    d = getattr(ind.fitness, "crowding_dist", 0.0)
    return None if not math.isfinite(d) else float(d)


def _round(x: float) -> float | str:
    return "" if x is None or not math.isfinite(x) else round(float(x), 6)


def _row(search: ArchitectureSearch, i: int) -> dict[str, Any]:
    return {"index": i, "arch": search.truth.arch(i), "objective": search.scores[i],
            "cost": float(search.cost.search[i]), "accuracy": float(search.truth.accuracy[search.config.dataset][i]),
            "true_cost": float(search.cost.true[i])}


def write_evaluated(path: Path, search: ArchitectureSearch) -> None:
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=["order", "generation", "index", "arch", "objective", "cost", "accuracy",
                                          "true_cost"])
        w.writeheader()
        for order, (i, g) in enumerate(search.evaluated):
            w.writerow({"order": order, "generation": g, **_row(search, i)})


def write_front(path: Path, search: ArchitectureSearch, judged: Judgement) -> None:
    true_front = set(judged.true_front)
    rows = sorted((_row(search, i) for i in judged.found), key=lambda r: r["cost"])
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=["index", "arch", "objective", "cost", "accuracy", "true_cost",
                                          "on_true_front", "knee"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "on_true_front": int(r["index"] in true_front), "knee": int(r["index"] == judged.knee)})


def _point(search: ArchitectureSearch, i: int | None) -> dict[str, Any] | None:
    if i is None:
        return None
    return {"index": i, "arch": search.truth.arch(i), "accuracy": float(search.truth.accuracy[search.config.dataset][i]),
            "cost": float(search.cost.true[i]), "log10_cost": float(search.space.log_true[i])}


def summary_dict(search: ArchitectureSearch, judged: Judgement, outcome: RunOutcome) -> dict[str, Any]:
    knee, most = _point(search, judged.knee), _point(search, judged.most_accurate)
    saved = None
    if knee and most:
        saved = {"absolute": most["cost"] - knee["cost"], "unit": search.cost.unit,
                 "fraction": (most["cost"] - knee["cost"]) / most["cost"],
                 "accuracy_given_up": most["accuracy"] - knee["accuracy"]}
    front_cost = float(np.sum(search.cost.true[judged.found])) if judged.found else 0.0
    return {
        "space": search.config.space, "dataset": search.config.dataset,
        "objective": search.objective.describe(), "cost": {"name": search.cost.name, "unit": search.cost.unit,
                                                            "source": search.cost.source},
        "algorithm": search.config.algorithm, "budget": search.config.budget,
        "population": search.config.population, "seed": search.config.seed,
        "evaluated": len(search.scores), "generations": outcome.last_generation,
        "convention": CONVENTION,
        "reference_point": {"accuracy": judged.reference[0], "log10_cost": judged.reference[1]},
        "hv_found": judged.hv_found, "hv_true": judged.hv_true,
        "hv_ratio": None if math.isnan(judged.hv_ratio) else judged.hv_ratio,
        "front_size": len(judged.found), "true_front_size": len(judged.true_front),
        "knee": knee, "most_accurate": most, "cost_saved_at_knee": saved,
        "front_true_cost": front_cost,
        "seconds": outcome.totals.seconds, "probe_seconds": outcome.totals.probe_seconds,
        "parts": outcome.totals.parts, "joules": outcome.totals.joules,
        "config": search.config.to_dict(),
    }


def front_figure(path: Path, search: ArchitectureSearch, judged: Judgement) -> None:
    """Every evaluated architecture, the found front and the true front (both on truth), and the knee."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = search.truth.accuracy[search.config.dataset]
    cost = search.cost.true
    ev = [i for i, _ in search.evaluated]
    fig, ax = plt.subplots(figsize=(7, 5))
    sp = search.space.indices
    ax.scatter(cost[sp], acc[sp], s=2, c="0.85", label=f"whole space ({len(sp)})", rasterized=True)
    ax.scatter(cost[ev], acc[ev], s=6, c="tab:blue", alpha=0.5, label=f"evaluated ({len(ev)})")
    tf = sorted(judged.true_front, key=lambda i: cost[i])
    ax.step(cost[tf], acc[tf], where="post", c="k", lw=1.2, label=f"true front ({len(tf)})")
    ff = sorted(judged.found, key=lambda i: cost[i])
    ax.scatter(cost[ff], acc[ff], s=22, facecolors="none", edgecolors="tab:red", label=f"found front ({len(ff)})")
    if judged.knee is not None:
        ax.scatter([cost[judged.knee]], [acc[judged.knee]], marker="*", s=220, c="gold", edgecolors="k", zorder=5,
                   label="knee")
    ax.axhline(judged.reference[0], ls=":", c="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(search.cost.label)
    ax.set_ylabel(f"{search.config.dataset} test accuracy (%)")
    ratio = judged.hv_ratio
    ax.set_title(f"{search.config.space} / {search.config.dataset}: {search.config.algorithm}, "
                 f"{Path(search.objective.name).name}, seed {search.config.seed}  hv_ratio={ratio:.3f}", fontsize=9)
    lo = np.nanpercentile(acc[sp], 1)
    ax.set_ylim(max(lo, 0), np.nanmax(acc[sp]) + 1)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# running


@dataclass
class SearchResult:
    summary: dict[str, Any]
    out_dir: Path
    judgement: Judgement
    history: list[dict[str, Any]] = field(default_factory=list)


def space_operators(space: str):
    """The space's own search operators (random_arch, mutate, crossover) from the space registry."""
    from greenmachine.spaces import get_space

    return get_space(space)


def run_search(
    config: SearchConfig,
    truth: GroundTruth,
    data_dir: str | Path,
    out_dir: str | Path,
    cache=None,
    resume: bool = False,
    reporter: Reporter | None = None,
    meter=None,
    objective: Objective | None = None,
    cost: CostTable | None = None,
    space_ops=None,
    executor=None,
    energy: Callable[[ArchitectureSearch, RunOutcome], dict | None] | None = None,
) -> SearchResult:
    """One seed of a search, into ``out_dir`` (see the module docstring)."""
    config = config.validate()
    reporter = reporter or Reporter(quiet=True)
    data_dir = Path(data_dir)
    if truth.space != config.space:
        raise GreenmachineError(f"the ground truth is for {truth.space}, the search for {config.space}")
    if config.dataset not in truth.accuracy:
        raise GreenmachineError(f"the {truth.space} ground truth has no {config.dataset} accuracies")
    ctx = CostContext(data_dir, getattr(cache, "root", None), reporter, config.training_device_w,
                      energy_model=config.energy_model)
    cost = cost or load_cost(config.cost, truth, config.dataset, ctx)
    objective = objective or make_objective(config.objective, truth, config.dataset, data_dir, config, cache, meter,
                                            reporter, executor)
    search = ArchitectureSearch(config, truth, objective, cost, space_ops or space_operators(config.space))
    outcome = run_problem(search, out_dir, config.seed, resume=resume, reporter=reporter, meter=meter,
                          progress_label="searching")
    judged = search.judge()
    out = Path(out_dir)
    write_front(out / "front.csv", search, judged)
    write_evaluated(out / "evaluated.csv", search)
    summary = summary_dict(search, judged, outcome)
    if energy is not None:
        block = energy(search, outcome)
        if block is not None:
            summary["energy"] = block
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    front_figure(out / "front.png", search, judged)
    return SearchResult(summary, out, judged, outcome.history)


SEED_FIELDS = ["seed", "hv_ratio", "hv_found", "hv_true", "front_size", "knee_accuracy", "knee_cost",
               "most_accurate_accuracy", "most_accurate_cost", "cost_saved_at_knee_fraction", "front_true_cost",
               "evaluated", "seconds", "joules"]


def seed_row(summary: dict[str, Any]) -> dict[str, Any]:
    knee, most, saved = summary.get("knee") or {}, summary.get("most_accurate") or {}, summary.get("cost_saved_at_knee") or {}
    return {"seed": summary["seed"], "hv_ratio": summary["hv_ratio"], "hv_found": summary["hv_found"],
            "hv_true": summary["hv_true"], "front_size": summary["front_size"],
            "knee_accuracy": knee.get("accuracy"), "knee_cost": knee.get("cost"),
            "most_accurate_accuracy": most.get("accuracy"), "most_accurate_cost": most.get("cost"),
            "cost_saved_at_knee_fraction": saved.get("fraction"), "front_true_cost": summary["front_true_cost"],
            "evaluated": summary["evaluated"], "seconds": summary["seconds"], "joules": summary.get("joules")}


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Mean and (sample) standard deviation over seeds of every numeric column."""
    out: dict[str, dict[str, float | None]] = {"mean": {}, "std": {}}
    for k in SEED_FIELDS[1:]:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        out["mean"][k] = statistics.fmean(vals) if vals else None
        out["std"][k] = statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)
    return out


def run_seeds(
    config: SearchConfig,
    seeds: Sequence[int],
    truth: GroundTruth,
    data_dir: str | Path,
    out_dir: str | Path,
    cache=None,
    resume: bool = False,
    reporter: Reporter | None = None,
    meter=None,
    space_ops=None,
    energy=None,
    executor=None,
) -> dict[str, Any]:
    """One search per seed into ``out_dir/seed-<s>``, then ``seeds.csv`` (one row per seed, mean, std) and
    ``summary.json``. With ``resume``, seeds with a checkpoint continue and the others start."""
    config = config.validate()
    out = Path(out_dir)
    reporter = reporter or Reporter(quiet=True)
    if not resume and out.exists() and any(out.iterdir()):
        raise GreenmachineError(f"{out} is not empty: pass --resume to continue its seeds, or choose another --out")
    data_dir = Path(data_dir)
    ctx = CostContext(data_dir, getattr(cache, "root", None), reporter, config.training_device_w,
                      energy_model=config.energy_model)
    cost = load_cost(config.cost, truth, config.dataset, ctx)
    objective = make_objective(config.objective, truth, config.dataset, data_dir, config, cache, meter, reporter,
                               executor)
    rows, summaries = [], []
    for s in seeds:
        sub = out / f"seed-{s}"
        again = resume and (sub / "checkpoint.json").is_file()
        res = run_search(replace(config, seed=s), truth, data_dir, sub, cache=cache, resume=again, reporter=reporter,
                         meter=meter, objective=objective, cost=cost, space_ops=space_ops, energy=energy)
        summaries.append(res.summary)
        rows.append(seed_row(res.summary))
    agg = aggregate(rows)
    with atomic_open(out / "seeds.csv", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SEED_FIELDS)
        w.writeheader()
        w.writerows(rows)
        w.writerow({"seed": "mean", **agg["mean"]})
        w.writerow({"seed": "std", **agg["std"]})
    summary = {"space": config.space, "dataset": config.dataset, "objective": summaries[0]["objective"],
               "cost": summaries[0]["cost"], "algorithm": config.algorithm, "budget": config.budget,
               "seeds": list(seeds), "per_seed": rows, **agg, "convention": CONVENTION,
               "reference_point": summaries[0]["reference_point"], "hv_true": summaries[0]["hv_true"]}
    energy_blocks = [s["energy"] for s in summaries if "energy" in s]
    if energy_blocks:
        summary["energy"] = energy_blocks
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary
