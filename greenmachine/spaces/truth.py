"""Ground truth: a table of measured metrics over a whole search space, and the NATS-Bench readers.

One result type for every space (:class:`GroundTruth`): the accuracy per dataset, the training seconds per epoch,
and any further metric the benchmark measured (``metric(name, dataset)``: ``train_energy_kwh``, ``train_seconds``,
``co2eq_g``, ``params``, ``val_accuracy``, ...), as arrays over the space's index range. Where a space's ground
truth lives and how it is read is the space's business (``SearchSpace.find_truth`` / ``load_truth``);
:func:`find_truth_source` and :func:`load_truth` only dispatch through the registry.

The NATS-Bench readers (shared by the TSS and SSS spaces) live here:

* the official benchmark directory (``NATS-tss-v1_0-3ffb9-simple``, ``NATS-sss-v1_0-50262-simple``): TSS at hp=200,
  SSS at hp=90, ``test-accuracy`` averaged over seeds (``is_random=False``). Its files are pickles; ``nats_bench``
  would ``pickle.load`` them unchecked, so greenmachine reads every file itself through the restricted unpickler
  (:func:`greenmachine.safepickle.safe_load`: plain containers, numbers, strings and numpy arrays only) and hands
  ``nats_bench`` the already-loaded dicts. Reading 15,625 or 32,768 records this way takes minutes, so
* ``export_table`` writes them once to the compact CSV format of ``shared/data/nats/tss-hp200.csv``
  (``index,arch,<dataset>...,<dataset>_train_s_per_epoch...``), which loads in a fraction of a second.

Every table is checked as it is read: a duplicated index or architecture, a short row, a non-numeric or
out-of-range accuracy (outside [0, 100] %) or a negative time is refused with one line naming the file and line.
"""

from __future__ import annotations

import collections
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from greenmachine.errors import GreenmachineError
from greenmachine.files import atomic_open
from greenmachine.probing.datasets import DATASETS, check_dataset

DATASET_NAMES = tuple(DATASETS)
TIME_SUFFIX = "_train_s_per_epoch"
#: metric names ``GroundTruth.metric`` answers where the benchmark measured them
METRICS = ("train_energy_kwh", "train_seconds", "co2eq_g", "params", "val_accuracy")


@dataclass
class GroundTruth:
    """Measured metrics of every architecture with a record; NaN where the source has none.

    ``accuracy`` (test accuracy in %) and ``train_seconds_per_epoch`` map each dataset the space has ground truth
    for to an array over the whole space; ``metrics`` maps a metric name to such a dict (see :data:`METRICS`;
    spaces may add their own, e.g. the spread over repeats, ``<name>_std``).
    """

    space: str
    hp: str
    archs: list[str | None]  # index -> arch string (None where the source does not list it)
    accuracy: dict[str, np.ndarray]
    train_seconds_per_epoch: dict[str, np.ndarray]
    source: str
    metrics: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {a: i for i, a in enumerate(self.archs) if a is not None}

    def _dataset(self, dataset: str) -> str:
        check_dataset(dataset)
        if dataset not in self.accuracy:
            raise GreenmachineError(
                f"the {self.space} ground truth has {', '.join(self.accuracy)} only, not {dataset!r}"
            )
        return dataset

    def available(self, dataset: str) -> np.ndarray:
        """Indices whose accuracy on ``dataset`` is known, ascending."""
        return np.flatnonzero(np.isfinite(self.accuracy[self._dataset(dataset)]))

    def acc(self, dataset: str, indices: Iterable[int]) -> np.ndarray:
        return self.accuracy[self._dataset(dataset)][np.asarray(list(indices), dtype=np.int64)]

    def metric(self, name: str, dataset: str) -> np.ndarray | None:
        """The array of metric ``name`` on ``dataset`` over the whole space, or None where the benchmark has none."""
        self._dataset(dataset)
        if name == "accuracy":
            return self.accuracy[dataset]
        return self.metrics.get(name, {}).get(dataset)

    def arch(self, index: int) -> str:
        if not 0 <= index < len(self.archs):
            raise GreenmachineError(f"architecture index {index} is outside the {self.space} space (0..{len(self.archs) - 1})")
        arch = self.archs[index]
        if arch is None:
            raise GreenmachineError(f"index {index} has no architecture in the ground truth {self.source}")
        return arch

    def index_of(self, arch: str) -> int:
        from greenmachine.spaces import get_space

        get_space(self.space).validate(arch)
        if arch not in self._index:
            raise GreenmachineError(f"{arch!r} is not listed in the ground truth {self.source}")
        return self._index[arch]

    def parse_archs(self, tokens: Iterable[str], dataset: str, what: str = "--archs") -> list[int]:
        """Turn ``--archs`` items (indices or arch strings) into indices that have a known accuracy; ``what``
        names the list in the errors (``ceiling --scores`` passes its file)."""
        self._dataset(dataset)
        out = []
        for tok in tokens:
            tok = tok.strip()
            if not tok:
                continue
            # an index has at most as many digits as the space's size (an all-digit module hash is an arch)
            numeric = tok.lstrip("-").isdigit() and tok.isascii() and len(tok.lstrip("-")) <= len(str(len(self.archs)))
            idx = int(tok) if numeric else self.index_of(tok)
            self.arch(idx)
            if not math.isfinite(self.accuracy[dataset][idx]):
                raise GreenmachineError(f"{what}: architecture {idx} has no {dataset} accuracy in {self.source}")
            out.append(idx)
        if not out:
            raise GreenmachineError(f"{what} names no architecture")
        if len(set(out)) != len(out):
            raise GreenmachineError(f"{what} names an architecture twice")
        return out


# --- checked reading of tables ------------------------------------------------------------------------------------


def row_error(path: str | Path, line: int, message: str) -> GreenmachineError:
    """The one-line error for a bad row: ``ground-truth table FILE, line N: ...``."""
    return GreenmachineError(f"ground-truth table {path}, line {line}: {message}")


def read_rows(path: str | Path, required: Iterable[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` of a CSV table that has the ``required`` columns; short or long rows refused."""
    path = Path(path)
    if not path.is_file():
        raise GreenmachineError(f"ground-truth table not found: {path}")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(required) - set(reader.fieldnames or [])
            if missing:
                raise GreenmachineError(f"ground-truth table {path} lacks the columns {sorted(missing)}")
            for row in reader:
                if None in row:
                    raise row_error(path, reader.line_num, f"{len(reader.fieldnames) + len(row[None])} fields, "
                                                           f"the header has {len(reader.fieldnames)}")
                if any(v is None for v in row.values()):
                    short = sum(v is not None for v in row.values())
                    raise row_error(path, reader.line_num, f"short row: {short} fields, the header has "
                                                           f"{len(reader.fieldnames)}")
                yield reader.line_num, row
    except (csv.Error, UnicodeDecodeError) as exc:
        raise GreenmachineError(f"ground-truth table {path} is malformed: {exc}") from None


def parse_number(path, line: int, column: str, text: str, low: float | None = None, high: float | None = None,
                 optional: bool = True) -> float:
    """A finite number from a table cell within ``[low, high]``; an empty cell is NaN where ``optional``."""
    text = (text or "").strip()
    if not text:
        if optional:
            return math.nan
        raise row_error(path, line, f"{column} is empty")
    try:
        value = float(text)
    except ValueError:
        raise row_error(path, line, f"{column} is not a number: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise row_error(path, line, f"{column} is not finite: {text[:40]!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise row_error(path, line, f"{column} = {value!r} is outside {bounds}")
    return value


def parse_index(path, line: int, text: str, size: int, space: str) -> int:
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()):
        raise row_error(path, line, f"index {text[:40]!r} is not a non-negative integer")
    i = int(text)
    if i >= size:
        raise row_error(path, line, f"index {i} is outside the {space} space (0..{size - 1})")
    return i


# --- NATS-Bench compact tables ------------------------------------------------------------------------------------


def _empty(size: int, datasets: Iterable[str]) -> dict[str, np.ndarray]:
    return {d: np.full(size, np.nan) for d in datasets}


def load_table(path: str | Path, space: str) -> GroundTruth:
    """Read the compact NATS-Bench CSV table (the format of ``shared/data/nats/tss-hp200.csv``), checking every row."""
    from greenmachine.spaces import get_space

    sp = get_space(space)
    acc, secs = _empty(sp.size, sp.datasets), _empty(sp.size, sp.datasets)
    archs: list[str | None] = [None] * sp.size
    lines: dict[str, int] = {}
    for line, row in read_rows(path, ("index", "arch", *sp.datasets)):
        i = parse_index(path, line, row["index"], sp.size, space)
        arch = row["arch"].strip()
        if archs[i] is not None:
            raise row_error(path, line, f"index {i} is listed twice")
        if arch in lines:
            raise row_error(path, line, f"architecture {arch[:80]!r} is listed twice (first on line {lines[arch]})")
        try:
            sp.validate(arch)
        except GreenmachineError as exc:
            raise row_error(path, line, str(exc)) from None
        lines[arch] = line
        archs[i] = arch
        for d in sp.datasets:
            acc[d][i] = parse_number(path, line, d, row[d], 0.0, 100.0)
            secs[d][i] = parse_number(path, line, d + TIME_SUFFIX, row.get(d + TIME_SUFFIX, ""), 0.0)
    archs = sp.finish_table(archs, str(path))
    return GroundTruth(space, sp.hp, archs, acc, secs, source=str(path), metrics=nats_metrics(sp, secs))


def nats_metrics(sp, secs: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``train_seconds``: NATS-Bench's ``train-all-time`` is ``train-per-time`` times the hp epochs."""
    epochs = int(sp.hp)
    return {"train_seconds": {d: s * epochs for d, s in secs.items()}}


# --- NATS-Bench official directories, read through the restricted unpickler ----------------------------------------


def _official_records(path: Path) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in path.glob("*.pickle.pbz2") if p.name.split(".")[0].isdigit())


def _record_file(path: Path, index: int) -> Path:
    for name in (f"{index:06d}.pickle.pbz2", f"{index}.pickle.pbz2"):
        if (path / name).is_file():
            return path / name
    raise GreenmachineError(f"official record {index} is missing from {path}")


class OfficialDirectory:
    """An official NATS-Bench directory opened without ``pickle.load``: the ``nats_bench`` API object is built from
    the meta dict and fed each record's dict as it is needed (what ``api.reload`` does, minus the unchecked load)."""

    def __init__(self, path: str | Path, space: str):
        import nats_bench

        from greenmachine.safepickle import safe_load
        from greenmachine.spaces import get_space

        self.path = Path(path)
        self.space = get_space(space)
        meta_file = self.path / "meta.pickle.pbz2"
        if not meta_file.is_file():
            raise GreenmachineError(f"not an official NATS-Bench directory: {meta_file} is missing")
        meta = safe_load(meta_file, what="NATS-Bench meta file")
        if not isinstance(meta, dict) or not isinstance(meta.get("meta_archs"), list) or not all(
            isinstance(a, str) for a in meta["meta_archs"]
        ):
            raise GreenmachineError(f"{meta_file} holds no list of architecture strings (meta_archs)")
        try:
            self.api = nats_bench.create(
                {"meta_archs": meta["meta_archs"], "arch2infos": {}, "evaluated_indexes": []},
                self.space.nats_name, fast_mode=False, verbose=False,
            )
        except Exception as exc:
            raise GreenmachineError(f"cannot open the official NATS-Bench directory {self.path}: {exc}") from None

    @property
    def meta_archs(self) -> list[str]:
        return self.api.meta_archs

    def load_record(self, index: int) -> None:
        """Read one record file through the restricted unpickler into the API (once)."""
        from nats_bench.api_utils import ArchResults

        from greenmachine.safepickle import safe_load

        if index in self.api.arch2infos_dict:
            return
        if not 0 <= index < len(self.api.meta_archs):
            raise GreenmachineError(f"index {index} is outside the official directory {self.path}")
        xfile = _record_file(self.path, index)
        data = safe_load(xfile, what="NATS-Bench record")
        if not isinstance(data, dict):
            raise GreenmachineError(f"official record {xfile} is not a dict of hp -> results")
        try:
            hp2archres = collections.OrderedDict(
                (hp, ArchResults.create_from_state_dict(results)) for hp, results in data.items()
            )
        except Exception as exc:
            raise GreenmachineError(f"official record {xfile} is malformed: {type(exc).__name__}: {exc}") from None
        self.api.arch2infos_dict[index] = hp2archres
        self.api._avaliable_hps.update(hp2archres)
        self.api.evaluated_indexes.add(index)

    def drop_record(self, index: int) -> None:
        self.api.arch2infos_dict.pop(index, None)

    def more_info(self, index: int, dataset: str, hp: str) -> dict:
        self.load_record(index)
        return self.api.get_more_info(index, dataset, hp=hp, is_random=False)

    def cost_info(self, index: int, dataset: str, hp: str) -> dict:
        self.load_record(index)
        return self.api.get_cost_info(index, dataset, hp=hp)

    def net_config(self, index: int, dataset: str) -> dict:
        self.load_record(index)
        return self.api.get_net_config(index, dataset)


def open_official(path: str | Path, space: str) -> OfficialDirectory:
    """An official directory, read through the restricted unpickler (see :class:`OfficialDirectory`)."""
    return OfficialDirectory(path, space)


def load_official(
    path: str | Path,
    space: str,
    indices: Iterable[int] | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] = lambda it: it,
) -> GroundTruth:
    """Read test accuracies (hp=200 for TSS, 90 for SSS, averaged over seeds) and train seconds per epoch."""
    path = Path(path)
    official = open_official(path, space)
    sp = official.space
    archs = list(official.meta_archs)
    sp.check_order(archs)
    acc, secs = _empty(sp.size, sp.datasets), _empty(sp.size, sp.datasets)
    todo = _official_records(path) if indices is None else sorted(set(indices))
    for i in progress(todo):
        try:
            for d in sp.datasets:
                info = official.more_info(i, d, sp.hp)
                acc[d][i] = info["test-accuracy"]
                secs[d][i] = info["train-per-time"]
        except GreenmachineError:
            raise
        except Exception as exc:
            raise GreenmachineError(f"official record {i} in {path} is unreadable: {type(exc).__name__}: {exc}") from None
        for d in sp.datasets:
            if not (0.0 <= acc[d][i] <= 100.0) or (np.isfinite(secs[d][i]) and secs[d][i] < 0):
                raise GreenmachineError(f"official record {i} in {path}: {d} accuracy {acc[d][i]!r} or time "
                                        f"{secs[d][i]!r} is out of range")
        # keep memory flat: 32,768 records do not fit
        official.drop_record(i)
    return GroundTruth(space, sp.hp, archs, acc, secs, source=str(path), metrics=nats_metrics(sp, secs))


def official_costs(path: str | Path, space: str, index: int, dataset: str) -> dict:
    """The official ``get_cost_info`` (params in millions, FLOPs in millions) of one record."""
    from greenmachine.spaces import get_space

    return open_official(path, space).cost_info(index, dataset, get_space(space).hp)


def export_table(truth: GroundTruth, out: str | Path) -> int:
    """Write every architecture with at least one known accuracy in the compact format; returns the row count."""
    datasets = tuple(truth.accuracy)
    rows = 0
    with atomic_open(out, newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", *datasets, *(d + TIME_SUFFIX for d in datasets)])
        for i, arch in enumerate(truth.archs):
            if arch is None or not any(np.isfinite(truth.accuracy[d][i]) for d in datasets):
                continue
            vals = [truth.accuracy[d][i] for d in datasets] + [truth.train_seconds_per_epoch[d][i] for d in datasets]
            w.writerow([i, arch, *("" if not np.isfinite(v) else repr(float(v)) for v in vals)])
            rows += 1
    return rows


# --- dispatch through the registry ---------------------------------------------------------------------------------


def find_truth_source(data_dir: str | Path, space: str) -> Path:
    """Where the ground truth of ``space`` lives under ``data_dir`` (the space decides)."""
    from greenmachine.spaces import get_space

    return get_space(space).find_truth(data_dir)


def load_truth(source: str | Path, space: str, progress=lambda it: it) -> GroundTruth:
    from greenmachine.spaces import get_space

    return get_space(space).load_truth(Path(source), progress=progress)
