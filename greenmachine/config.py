"""Evolution settings: a dataclass, read from TOML files under ``configs/`` and overridden by CLI options."""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from greenmachine.probing.datasets import check_dataset
from greenmachine.errors import GreenmachineError
from greenmachine.files import read_user_bytes
from greenmachine.spaces.sampling import SAMPLINGS
from greenmachine.spaces import get_space


# Documented limits on what a config or a command line may ask for (README, "Security"): beyond them a run would
# overflow a seeded generator, grow without bound or start an unbounded number of processes.
SEED_MAX = 2**32 - 1  # seeds are 0..2**32-1: numpy's and torch's generators refuse negatives, torch overflows
MAX_TREE_HEIGHT = 17  # Koza's and DEAP's usual bloat limit; trees in proxy files are held to it as well
MAX_WORKERS = 256  # probing processes
MAX_POPULATION = 100_000  # trees held at once; beyond it a run dies of memory, not of a message
MAX_GENERATIONS = 100_000  # history, checkpoint and log grow with every generation
MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes
# How a multi-dataset evolution folds its per-dataset Kendall taus into one fitness (search/multi_dataset.py).
COMBINE_RULES = ("mean", "min")


def check_seed(value: object, name: str = "seed") -> int:
    """A seed within 0..SEED_MAX (an int, not a bool), or a one-line error stating the range."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SEED_MAX:
        raise GreenmachineError(f"{name} must be an integer in 0..{SEED_MAX} (2**32-1), got {str(value)[:40]}")
    return value


@dataclass(frozen=True)
class EvolveConfig:
    """One evolution run. The defaults are those of ``configs/default.toml`` (2-core CPU, < 15 minutes)."""

    space: str = "tss"
    dataset: str = "cifar10"
    sampling: str = "stratified"
    sample_size: int = 200
    strata: int = 10
    population: int = 60
    generations: int = 20
    tournament_size: int = 4
    crossover_prob: float = 0.6
    mutation_prob: float = 0.3
    elitism: int = 1
    max_height: int = 10
    init_min_depth: int = 2
    init_max_depth: int = 5
    hall_of_fame: int = 5
    # trees whose fitness differs by at most this are equally good: the smaller is named best (proxy.json, hall of
    # fame, history); 1e-6 lies below the Kendall tau quantum 2/(n(n-1)) of every sample up to 1,000 networks
    parsimony_tolerance: float = 1e-6
    # put the baselines that the GP language expresses (synflow, snip, grad_norm, naswot, #conv params, MeCo on
    # ReLU inputs) in generation 0; off by default, so that what a run finds is found by evolution
    seed_classics: bool = False
    # let the GP draw the structural terminals too (wl_depth, al_depth: where a layer sits in its network;
    # primitives.STRUCTURAL). Off by default so that the language, and so the seeded results, of earlier runs stay
    # as they were; on in the SSS space's defaults, whose accuracy is decided by which stage is wide
    structural: bool = False
    # let the GP draw the network kernels too (jacob_corr and the NKernel ops: primitives.KERNEL_OPS), which adds
    # the jacobian probe pass (a forward and a backward more per network); off by default for the same reason
    jacobian: bool = False
    # ... and the empirical NTK (ntk and the NKernel ops), which adds the ntk probe pass (probe.NTK_IMAGES backwards
    # more per network, about 5 ce passes); off by default for the same reason
    ntk: bool = False
    # ... and SWAP's count of distinct sample-wise activation patterns (swap, one number per network), which adds
    # the swap probe pass (a forward per network); off by default for the same reason. What it adds to the MeCo-like
    # trees of TSS ImageNet16-120: README, "SWAP"
    swap: bool = False
    batch_size: int = 64
    # images of the minibatch whose channel-correlation spectra corr_eig averages (probing.probe.ProbeSettings);
    # 1 = MeCo's first image, the protocol of every earlier run
    spectrum_images: int = 1
    # initialisations (and minibatches) each network is probed under; a tree's fitness is the Kendall tau of its
    # per-network scores averaged over them, as `score --inits N` averages. Why: a proxy read under one
    # initialisation ranks its own scores under another at Kendall tau 0.87-0.94 (README, "Averaging over
    # initialisations"), so a one-initialisation fitness also rewards trees that happen to fit that draw's noise.
    # 1 = the protocol of every earlier run (N times the probing, N times the terminals in memory)
    inits: int = 1
    seed: int = 0
    device: str = "cpu"
    workers: int = 1
    # where probing and fitness run (greenmachine/executor.py): "auto" = serial for one worker, a process pool for
    # more; "ray" = a local Ray instance, or the cluster at ray_address ("auto" joins `ray start --head`'s)
    executor: str = "auto"
    ray_address: str = ""
    # the held-out evaluation that `make` reproduction targets run after evolving
    eval_sample_size: int = 500
    eval_sampling: str = "random"
    eval_baselines: bool = True  # also score the hand-designed baselines on the held-out sample
    # Multi-dataset evolution (search/multi_dataset.py): two or more datasets whose Kendall taus, on the SAME
    # architectures, are combined into one fitness. Empty = the single-dataset mode of ``dataset``. When set,
    # ``dataset`` is the first of them: the sample is stratified by its accuracy, and `score` defaults to it.
    datasets: tuple[str, ...] = ()
    # "mean" (default): smoother for selection, every dataset's improvement counts; "min": the worst dataset only,
    # a guarantee on the worst case but flat wherever another dataset is the bottleneck. Both are in history.csv.
    combine: str = "mean"

    def __post_init__(self) -> None:
        # a TOML array arrives as a list; a tuple keeps the frozen config hashable and comparable
        if isinstance(self.datasets, list):
            object.__setattr__(self, "datasets", tuple(self.datasets))
        if self.datasets and isinstance(self.datasets, tuple) and isinstance(self.datasets[0], str):
            object.__setattr__(self, "dataset", self.datasets[0])

    def validate(self) -> "EvolveConfig":
        self._validate_datasets()
        check_dataset(self.dataset)
        get_space(self.space).check_dataset(self.dataset)
        for name in ("sampling", "eval_sampling"):
            if getattr(self, name) not in SAMPLINGS:
                raise GreenmachineError(f"{name} must be one of {', '.join(SAMPLINGS)}, not {getattr(self, name)!r}")
        positive = ("sample_size", "population", "tournament_size", "max_height", "hall_of_fame", "batch_size",
                    "workers", "strata", "eval_sample_size", "init_min_depth")
        for name in positive:
            if getattr(self, name) < 1:
                raise GreenmachineError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("sample_size", "eval_sample_size"):  # Kendall tau needs two architectures
            if getattr(self, name) < 2:
                raise GreenmachineError(f"{name} must be at least 2 (Kendall tau ranks two or more architectures), "
                                        f"got {getattr(self, name)}")
        check_seed(self.seed)
        from greenmachine.probing.probe import check_inits, check_spectrum_images  # probe imports this module

        check_spectrum_images(self.spectrum_images, self.batch_size, "spectrum_images")
        check_inits(self.inits, "inits")
        if self.max_height > MAX_TREE_HEIGHT:
            raise GreenmachineError(f"max_height must be at most {MAX_TREE_HEIGHT} (the documented tree-height limit), "
                                    f"got {self.max_height}")
        if self.executor not in ("auto", "serial", "process", "ray"):
            raise GreenmachineError(f"executor must be one of serial, process, ray, not {self.executor!r}")
        if self.ray_address and self.executor not in ("auto", "ray"):
            raise GreenmachineError(f"ray_address needs executor = \"ray\", not {self.executor!r}")
        if self.workers > MAX_WORKERS:
            raise GreenmachineError(f"workers must be at most {MAX_WORKERS}, got {self.workers}")
        if self.population > MAX_POPULATION:
            raise GreenmachineError(f"population must be at most {MAX_POPULATION}, got {self.population}")
        if self.generations > MAX_GENERATIONS:
            raise GreenmachineError(f"generations must be at most {MAX_GENERATIONS}, got {self.generations}")
        if not (math.isfinite(self.parsimony_tolerance) and 0.0 <= self.parsimony_tolerance <= 0.1):
            raise GreenmachineError(f"parsimony_tolerance must lie in [0, 0.1], got {self.parsimony_tolerance}")
        if self.generations < 0 or self.elitism < 0:
            raise GreenmachineError("generations and elitism cannot be negative")
        if self.init_max_depth < self.init_min_depth or self.init_max_depth >= self.max_height:
            raise GreenmachineError("need init_min_depth <= init_max_depth < max_height")
        for name in ("crossover_prob", "mutation_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise GreenmachineError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise GreenmachineError(f"device must be cpu or cuda, not {self.device!r}")
        return self

    def _validate_datasets(self) -> None:
        if self.combine not in COMBINE_RULES:
            raise GreenmachineError(f"combine must be one of {', '.join(COMBINE_RULES)}, not {str(self.combine)[:40]!r}")
        if not self.datasets:
            if self.combine != "mean":
                raise GreenmachineError("combine applies to a multi-dataset evolution only: give datasets "
                                        "(--datasets a,b) as well")
            return
        if not isinstance(self.datasets, tuple) or not all(isinstance(d, str) for d in self.datasets):
            raise GreenmachineError(f"datasets must be a list of dataset names, got {str(self.datasets)[:60]}")
        space = get_space(self.space)
        for name in self.datasets:
            check_dataset(name)
            space.check_dataset(name)
        if len(set(self.datasets)) != len(self.datasets):
            raise GreenmachineError(f"datasets names a dataset twice: {', '.join(self.datasets)}")
        if len(self.datasets) < 2:
            raise GreenmachineError(f"datasets needs two or more datasets; for one, use dataset = "
                                    f"{self.datasets[0]!r} (--dataset)")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data (proxy.json, checkpoint fingerprint).

        Why the multi-dataset keys are left out in single-dataset mode: a single-dataset run must write the very
        proxy.json and checkpoint fingerprint it wrote before they existed, so that its checkpoints still resume;
        ``spectrum_images`` = 1 and ``inits`` = 1 are left out for the same reason."""
        data = asdict(self)
        if self.datasets:
            data["datasets"] = list(self.datasets)  # JSON has no tuples: a checkpoint's fingerprint compares equal
        else:
            del data["datasets"], data["combine"]
        if self.spectrum_images == 1:
            del data["spectrum_images"]
        if self.inits == 1:
            del data["inits"]
        return data

    def override(self, **kwargs: Any) -> "EvolveConfig":
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "config") -> "EvolveConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise GreenmachineError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
        # to_dict() of a multi-dataset config writes both, dataset being the first of datasets: that is consistent
        if "datasets" in data and "dataset" in data and (
                not isinstance(data["datasets"], (list, tuple)) or list(data["datasets"])[:1] != [data["dataset"]]):
            raise GreenmachineError(f"{origin}: dataset and datasets are mutually exclusive (one dataset, or a "
                                    "multi-dataset evolution whose first dataset stratifies the sample)")
        defaults = cls()
        for key, value in data.items():
            want = type(getattr(defaults, key))
            if key == "datasets" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = tuple(value)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not want:
                raise GreenmachineError(f"{origin}: {key} must be {want.__name__}, got {value!r}")
            data = {**data, key: value}
        return replace(defaults, **data)


def load_config(path: str | Path | None, space: str | None = None) -> EvolveConfig:
    """Read a TOML config (flat keys, or under an ``[evolve]`` table); None gives the defaults.

    Why ``space``: a space may need other defaults than the package-wide ones (an EC-NAS network is much heavier to
    probe than a TSS one), so the space's ``evolve_defaults`` sit between the dataclass defaults and the file; the
    space is the one given on the command line, else the file's, else the default.
    """
    data = {} if path is None else _read_toml(Path(path))
    name = space or data.get("space") or EvolveConfig.space
    defaults = get_space(name).evolve_defaults if isinstance(name, str) else {}
    return EvolveConfig.from_dict({**defaults, **data}, origin=str(path) if path else "config")


def _read_toml(path: Path) -> dict:
    raw = read_user_bytes(path, "config file", MAX_CONFIG_BYTES)  # a FIFO or device is refused, not read forever
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GreenmachineError(f"config file {path} is not valid TOML: {' '.join(str(exc).split())[:200]}") from None
    if "evolve" in data and set(data) != {"evolve"}:
        raise GreenmachineError(f"config file {path}: settings beside the [evolve] table would be ignored: "
                                f"{', '.join(sorted(set(data) - {'evolve'}))}")
    data = data.get("evolve", data)
    if not isinstance(data, dict):
        raise GreenmachineError(f"config file {path}: [evolve] must be a table")
    return data
