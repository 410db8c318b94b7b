"""Ground-truth accuracies of NATS-Bench architectures, from the official API or from a compact table.

Two backends, one result (:class:`GroundTruth`):

* the official benchmark directory (``NATS-tss-v1_0-3ffb9-simple``, ``NATS-sss-v1_0-50262-simple``), read with
  ``nats_bench.create(..., fast_mode=True)``: TSS at hp=200, SSS at hp=90, ``test-accuracy`` averaged over seeds
  (``is_random=False``). Reading 15,625 or 32,768 records this way takes many minutes, so
* ``export_table`` writes them once to the compact CSV format of ``shared/data/nats/tss-hp200.csv``
  (``index,arch,<dataset>...,<dataset>_train_s_per_epoch...``), which loads in a fraction of a second.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from greenmachine.probing.datasets import DATASETS, check_dataset
from greenmachine.errors import GreenmachineError
from greenmachine.files import atomic_open
from greenmachine.spaces import check_official_order, check_space, space_size, sss_archs, validate_arch

HP = {"tss": "200", "sss": "90"}
OFFICIAL_GLOB = {"tss": "NATS-tss-v1_0-*-simple", "sss": "NATS-sss-v1_0-*-simple"}
DATASET_NAMES = tuple(DATASETS)
TIME_SUFFIX = "_train_s_per_epoch"


@dataclass
class GroundTruth:
    """Accuracy (in %) of every architecture with a record; NaN where the source has none."""

    space: str
    hp: str
    archs: list[str | None]  # official index -> arch string (None where the source does not list it)
    accuracy: dict[str, np.ndarray]
    train_seconds_per_epoch: dict[str, np.ndarray]
    source: str
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {a: i for i, a in enumerate(self.archs) if a is not None}

    def available(self, dataset: str) -> np.ndarray:
        """Indices whose accuracy on ``dataset`` is known, ascending."""
        check_dataset(dataset)
        return np.flatnonzero(np.isfinite(self.accuracy[dataset]))

    def acc(self, dataset: str, indices: Iterable[int]) -> np.ndarray:
        return self.accuracy[dataset][np.asarray(list(indices), dtype=np.int64)]

    def arch(self, index: int) -> str:
        if not 0 <= index < len(self.archs):
            raise GreenmachineError(f"architecture index {index} is outside the {self.space} space (0..{len(self.archs) - 1})")
        arch = self.archs[index]
        if arch is None:
            raise GreenmachineError(f"index {index} has no architecture in the ground truth {self.source}")
        return arch

    def index_of(self, arch: str) -> int:
        validate_arch(self.space, arch)
        if arch not in self._index:
            raise GreenmachineError(f"{arch!r} is not listed in the ground truth {self.source}")
        return self._index[arch]

    def parse_archs(self, tokens: Iterable[str], dataset: str) -> list[int]:
        """Turn ``--archs`` items (indices or arch strings) into indices that have a known accuracy."""
        out = []
        for tok in tokens:
            tok = tok.strip()
            if not tok:
                continue
            idx = int(tok) if tok.lstrip("-").isdigit() else self.index_of(tok)
            self.arch(idx)
            if not math.isfinite(self.accuracy[dataset][idx]):
                raise GreenmachineError(f"architecture {idx} has no {dataset} accuracy in {self.source}")
            out.append(idx)
        if not out:
            raise GreenmachineError("--archs names no architecture")
        if len(set(out)) != len(out):
            raise GreenmachineError("--archs names an architecture twice")
        return out


def _empty(space: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = space_size(space)
    return ({d: np.full(n, np.nan) for d in DATASET_NAMES}, {d: np.full(n, np.nan) for d in DATASET_NAMES})


def load_table(path: str | Path, space: str) -> GroundTruth:
    """Read the compact CSV table (the format of ``shared/data/nats/tss-hp200.csv``)."""
    check_space(space)
    path = Path(path)
    if not path.is_file():
        raise GreenmachineError(f"ground-truth table not found: {path}")
    acc, secs = _empty(space)
    archs: list[str | None] = list(sss_archs()) if space == "sss" else [None] * space_size(space)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"index", "arch", *DATASET_NAMES} - set(reader.fieldnames or [])
            if missing:
                raise GreenmachineError(f"ground-truth table {path} lacks the columns {sorted(missing)}")
            for row in reader:
                i = int(row["index"])
                if not 0 <= i < len(archs):
                    raise GreenmachineError(f"ground-truth table {path}: index {i} is outside the {space} space")
                if space == "sss" and archs[i] != row["arch"]:
                    raise GreenmachineError(f"ground-truth table {path}: index {i} is not {row['arch']!r} in SSS")
                archs[i] = row["arch"]
                for d in DATASET_NAMES:
                    acc[d][i] = float(row[d]) if row[d] not in ("", None) else np.nan
                    t = row.get(d + TIME_SUFFIX)
                    secs[d][i] = float(t) if t not in ("", None) else np.nan
    except (ValueError, KeyError, csv.Error, UnicodeDecodeError) as exc:
        raise GreenmachineError(f"ground-truth table {path} is malformed: {exc}") from None
    if space == "tss" and all(a is not None for a in archs):
        check_official_order(space, archs)  # type: ignore[arg-type]
    return GroundTruth(space, HP[space], archs, acc, secs, source=str(path))


def _official_records(path: Path) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in path.glob("*.pickle.pbz2") if p.name[0].isdigit())


def open_official(path: str | Path, space: str):
    """The official API object for a benchmark directory (fast mode: records load lazily)."""
    import nats_bench

    path = Path(path)
    if not (path / "meta.pickle.pbz2").is_file():
        raise GreenmachineError(f"not an official NATS-Bench directory: {path / 'meta.pickle.pbz2'} is missing")
    try:
        return nats_bench.create(str(path), check_space(space), fast_mode=True, verbose=False)
    except Exception as exc:
        raise GreenmachineError(f"cannot open the official NATS-Bench directory {path}: {exc}") from None


def load_official(
    path: str | Path,
    space: str,
    indices: Iterable[int] | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda it: it,
) -> GroundTruth:
    """Read test accuracies through ``nats_bench`` (hp=200 for TSS, 90 for SSS, averaged over seeds)."""
    path = Path(path)
    api = open_official(path, space)
    archs = list(api.meta_archs)
    check_official_order(space, archs)
    acc, secs = _empty(space)
    todo = _official_records(path) if indices is None else sorted(set(indices))
    hp = HP[space]
    for i in progress(todo):
        try:
            for d in DATASET_NAMES:
                info = api.get_more_info(i, d, hp=hp, is_random=False)
                acc[d][i] = info["test-accuracy"]
                secs[d][i] = info["train-per-time"]
        except Exception as exc:
            raise GreenmachineError(f"official record {i} in {path} is unreadable: {exc}") from None
        # fast mode keeps every record it loads; drop it so that 32,768 records do not fill the memory
        api.arch2infos_dict.pop(i, None)
    return GroundTruth(space, hp, archs, acc, secs, source=str(path))


def official_costs(path: str | Path, space: str, index: int, dataset: str) -> dict:
    """The official ``get_cost_info`` (params in millions, FLOPs in millions) of one record."""
    api = open_official(path, space)
    return api.get_cost_info(index, dataset, hp=HP[space])


def find_truth_source(data_dir: str | Path, space: str) -> Path:
    """Where the ground truth of ``space`` lives under ``data_dir``: the compact table first, then the
    official directory (``nats/NATS-...-simple`` or one folder below ``nats/``)."""
    check_space(space)
    nats = Path(data_dir) / "nats"
    table = nats / f"{space}-hp{HP[space]}.csv"
    if table.is_file():
        return table
    found = sorted(nats.glob(OFFICIAL_GLOB[space])) + sorted(nats.glob("*/" + OFFICIAL_GLOB[space]))
    if found:
        return found[0]
    raise GreenmachineError(
        f"no {space.upper()} ground truth under {nats}: expected {table.name} or an official "
        f"{OFFICIAL_GLOB[space]} directory (set --data-dir or GREENMACHINE_DATA)"
    )


def load_truth(source: str | Path, space: str, progress=lambda it: it) -> GroundTruth:
    source = Path(source)
    if source.is_dir():
        return load_official(source, space, progress=progress)
    return load_table(source, space)


def export_table(truth: GroundTruth, out: str | Path) -> int:
    """Write every architecture with at least one known accuracy in the compact format; returns the row count."""
    rows = 0
    with atomic_open(out, newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", *DATASET_NAMES, *(d + TIME_SUFFIX for d in DATASET_NAMES)])
        for i, arch in enumerate(truth.archs):
            if arch is None or not any(np.isfinite(truth.accuracy[d][i]) for d in DATASET_NAMES):
                continue
            vals = [truth.accuracy[d][i] for d in DATASET_NAMES] + [truth.train_seconds_per_epoch[d][i] for d in DATASET_NAMES]
            w.writerow([i, arch, *("" if not np.isfinite(v) else repr(float(v)) for v in vals)])
            rows += 1
    return rows
