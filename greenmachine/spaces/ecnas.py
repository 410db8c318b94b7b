"""EC-NAS: NAS-Bench-101 cells with at most 4 or 5 vertices, with measured 4-epoch CIFAR-10 training energy.

EC-NAS ("Energy Consumption Aware Tabular Benchmarks for NAS", Bakhtiarifard et al.) trained every NAS-Bench-101
cell of at most 4 (91 cells, 3 repeats) and at most 5 vertices (2,532 cells, 1 repeat) for 4 epochs on CIFAR-10 and
measured accuracy, training time, energy (carbontracker: GPU + CPU, PUE 1.59) and CO2eq. Its own code needs
TensorFlow and Git LFS files; here the measured CSVs of ``DATA/ecnas`` (see its README) are the ground truth.

* **Architectures** are NAS-Bench-101 **module hashes** (the benchmark's own key; 32 hex digits). The cells are
  *generated* (every upper-triangular DAG of 2..V vertices and <= 9 edges with every vertex on an input-output path,
  every labelling with the 3 operations, deduplicated by hash, as NAS-Bench-101's ``generate_graphs.py``), so the
  space needs no data to validate, build or search; the tests check the result equals the keys of
  ``generated_graphs_*.json``. **Index order:** ascending module hash (the key order of those JSON files).
* **Networks** are ``nasbench_pytorch``'s NAS-Bench-101 network: stem 3x3 conv with 128 channels, 3 stacks of 3
  cells, 2x2 max-pool and channel doubling between stacks, the original channel split among the vertices feeding
  the output and 1x1 projections of the input; ``forward`` returns logits. Two changes (see :func:`build_network`):
  its ``Placeholder`` modules each hold a dummy scalar parameter that the TensorFlow original does not have (that is
  the whole difference to EC-NAS' ``trainable_params``: 2 + one per interior vertex without an input edge, per cell,
  i.e. tens per network), so they are replaced by parameter-free identities; and BatchNorm momentum is PyTorch's
  default 0.1 everywhere (nasbench_pytorch passes TensorFlow's decay 0.997 as PyTorch momentum to some layers only).
* **Ground truth** per cell: 4-epoch test accuracy (in %, the ``accuracy``), validation accuracy, training time,
  energy (kWh), CO2eq (g) and trainable parameters, as measured; for the 4-vertex set the mean over the 3 repeats,
  with the spread (sample standard deviation) as ``<metric>_std`` and the count as ``repeats``.
"""

from __future__ import annotations

import itertools
import random
from functools import lru_cache
from pathlib import Path

from greenmachine.errors import GreenmachineError
from greenmachine.spaces.base import Progress, SearchSpace

EPOCHS = 4
MAX_EDGES = 9
#: what each measured column becomes: (metric name, CSV column, scale, upper bound of the raw value)
MEASURED = (
    ("accuracy", "test_acc_4ep", 100.0, 1.0),
    ("val_accuracy", "val_acc_4ep", 100.0, 1.0),
    ("train_seconds", "training_time_s_4ep", 1.0, None),
    ("train_energy_kwh", "energy_kwh_4ep", 1.0, None),
    ("co2eq_g", "co2eq_g_4ep", 1.0, None),
)
COLUMNS = ("module_hash", "repeat", "adjacency", "operations", "trainable_params", "epochs",
           *(col for _, col, _, _ in MEASURED))
_HEX = frozenset("0123456789abcdef")


@lru_cache(maxsize=None)
def generate_cells(max_vertices: int) -> dict:
    """Every NAS-Bench-101 cell of 2..``max_vertices`` vertices and <= 9 edges: ``{module hash: Cell}``, sorted.

    As NAS-Bench-101's ``generate_graphs.py``, in its order: all upper-triangular 0/1 matrices whose every vertex
    lies on an input-to-output path (``is_full_dag``), every labelling of the interior vertices, the first spelling
    of each hash kept. About 1 s for 5 vertices.
    """
    import numpy as np
    from nasbench_pytorch.model.graph_util import gen_is_edge_fn, hash_module, is_full_dag

    from greenmachine.spaces.nb101_cells import OPS, Cell

    found: dict[str, tuple] = {}
    for v in range(2, max_vertices + 1):
        # the enumeration order of generate_graphs.py (bit masks filled column-major), so that of isomorphic
        # spellings the one kept is the benchmark's
        for bits in range(2 ** (v * (v - 1) // 2)):
            m = np.fromfunction(gen_is_edge_fn(bits), (v, v), dtype=np.int8).astype(np.int64)
            if int(m.sum()) > MAX_EDGES or not is_full_dag(m):
                continue
            for labels in itertools.product(range(len(OPS)), repeat=v - 2):
                h = hash_module(m, [-1, *labels, -2])
                if h not in found:
                    found[h] = (m, labels)
    cells = {}
    for h in sorted(found):
        m, labels = found[h]
        cells[h] = Cell(tuple(tuple(int(x) for x in row) for row in m), ("input", *(OPS[i] for i in labels), "output"))
    return cells


def _identity_placeholders(module) -> None:
    """Replace nasbench_pytorch's ``Placeholder`` (an identity holding a dummy scalar parameter) by ``nn.Identity``."""
    import torch.nn as nn
    from nasbench_pytorch.model.model import Placeholder

    for name, child in module.named_children():
        if isinstance(child, Placeholder):
            setattr(module, name, nn.Identity())
        else:
            _identity_placeholders(child)
    if hasattr(module, "last_inop") and isinstance(module.last_inop, Placeholder):
        module.last_inop = module.input_op[len(module.input_op) - 1]


class ECNAS(SearchSpace):
    """One EC-NAS variant: cells of at most ``max_vertices`` vertices, ground truth ``ecnas_<tag>_4epochs_measured``."""

    datasets = ("cifar10",)
    hp = str(EPOCHS)
    # An EC-NAS network (128 channels at 32x32, 1.2M-20M parameters) probes ~7x slower than a TSS one and keeps ~12x
    # more terminal bytes (16 B per parameter: weights, gradients, synflow gradients), so a default run probes 30
    # networks at batch 16: measured 14.6 min wall and 12.3 GB peak RSS on the shared 2-core machine (README, "EC-NAS")
    evolve_defaults = {"sample_size": 30, "batch_size": 16}

    def __init__(self, name: str, max_vertices: int, tag: str):
        # cheap: the registry builds every space to list the CLI choices; the cells are generated on first use
        self.name = name
        self.max_vertices = max_vertices
        self.tag = tag

    @property
    def size(self) -> int:  # type: ignore[override]
        return len(generate_cells(self.max_vertices))

    @property
    def example(self) -> str:  # type: ignore[override]
        return self.archs()[0]

    def archs(self) -> tuple[str, ...]:
        """Every cell's module hash, in index order (ascending hash)."""
        return tuple(generate_cells(self.max_vertices))

    def cell(self, arch: str):
        """The (pruned) :class:`greenmachine.spaces.nb101_cells.Cell` of a module hash."""
        return generate_cells(self.max_vertices)[self.validate(arch)]

    def validate(self, arch: str) -> str:
        if not isinstance(arch, str) or len(arch) != 32 or not set(arch) <= _HEX:
            raise GreenmachineError(
                f"{str(arch)[:80]!r} is not an {self.name} architecture: give a NAS-Bench-101 module hash "
                f"(32 lowercase hex digits), e.g. {self.example}"
            )
        if arch not in generate_cells(self.max_vertices):
            raise GreenmachineError(
                f"module hash {arch} is not a cell of {self.name} (NAS-Bench-101 cells of at most "
                f"{self.max_vertices} vertices and {MAX_EDGES} edges)"
            )
        return arch

    def arch_of_cell(self, cell) -> str:
        """The architecture (module hash) of a cell, refused unless the cell is in this space."""
        return self.validate(cell.module_hash())

    # --- networks --------------------------------------------------------------------------------------------------

    def build_network(self, arch: str, dataset: str):
        """NAS-Bench-101's network in torch (nasbench_pytorch), parameter-for-parameter the benchmark's."""
        from nasbench_pytorch.model import ModelSpec, Network

        cell = self.cell(arch)
        net = Network(ModelSpec(cell.array(), list(cell.ops)), num_labels=self.num_classes(dataset),
                      stem_out_channels=128, num_stacks=3, num_modules_per_stack=3, momentum=0.1)
        _identity_placeholders(net)
        net.__dict__["feature_module"] = net.layers[-1]  # the last cell: the map before global pooling
        return net

    # --- ground truth ------------------------------------------------------------------------------------------------

    def find_truth(self, data_dir: str | Path) -> Path:
        path = Path(data_dir) / "ecnas" / f"ecnas_{self.tag}_{EPOCHS}epochs_measured.csv"
        if not path.is_file():
            raise GreenmachineError(f"no {self.name} ground truth: {path} is missing (set --data-dir or GREENMACHINE_DATA)")
        return path

    def load_truth(self, source: str | Path, progress: Progress = lambda it: it):
        """Read and check the measured CSV; one line per (cell, repeat); repeats are averaged."""
        import numpy as np

        from greenmachine.spaces.nb101_cells import parse_cell
        from greenmachine.spaces.truth import GroundTruth, parse_number, read_rows, row_error

        source = Path(source)
        if source.is_dir():
            source = self.find_truth(source.parent if source.name == "ecnas" else source)
        index = {h: i for i, h in enumerate(self.archs())}
        seen: dict[tuple[str, int], int] = {}
        values: dict[str, list[list[float]]] = {name: [[] for _ in index] for name, *_ in MEASURED}
        params = np.full(self.size, np.nan)
        for line, row in read_rows(source, COLUMNS):
            h = row["module_hash"].strip()
            try:
                cell = parse_cell(row["adjacency"], row["operations"])
                self.validate(h)
            except GreenmachineError as exc:
                raise row_error(source, line, str(exc)) from None
            if cell.module_hash() != h:
                raise row_error(source, line, f"the cell's module hash is {cell.module_hash()}, not {h}")
            rep = row["repeat"].strip()
            if not (rep.isascii() and rep.isdigit()) or int(rep) < 1:
                raise row_error(source, line, f"repeat {rep[:20]!r} is not a positive integer")
            if (h, int(rep)) in seen:
                raise row_error(source, line, f"cell {h} repeat {rep} is listed twice (first on line {seen[h, int(rep)]})")
            seen[h, int(rep)] = line
            if row["epochs"].strip() != str(EPOCHS):
                raise row_error(source, line, f"epochs is {row['epochs'][:20]!r}, the benchmark is {EPOCHS} epochs")
            i = index[h]
            p = parse_number(source, line, "trainable_params", row["trainable_params"], 0.0, optional=False)
            if p != int(p) or (np.isfinite(params[i]) and params[i] != p):
                raise row_error(source, line, f"trainable_params {row['trainable_params']!r} is not one whole count per cell")
            params[i] = p
            for name, col, _scale, high in MEASURED:
                values[name][i].append(parse_number(source, line, col, row[col], 0.0, high))
        if not seen:
            raise GreenmachineError(f"ground-truth table {source} has no rows")

        def reduce(name: str, fn, scale: float, min_n: int = 1) -> np.ndarray:
            out = np.full(self.size, np.nan)
            for i, vals in enumerate(values[name]):
                finite = [v for v in vals if np.isfinite(v)]
                if len(finite) >= min_n:
                    out[i] = fn(np.asarray(finite)) * scale
            return out

        means = {name: reduce(name, np.mean, scale) for name, _, scale, _ in MEASURED}
        repeats = np.array([len(v) for v in values["accuracy"]], dtype=float)
        metrics = {name: {"cifar10": means[name]} for name in means if name != "accuracy"}
        metrics["params"] = {"cifar10": params}
        metrics["repeats"] = {"cifar10": repeats}
        if repeats.max() > 1:
            for name, _, scale, _ in MEASURED:
                metrics[f"{name}_std"] = {"cifar10": reduce(name, lambda a: np.std(a, ddof=1), scale, min_n=2)}
        return GroundTruth(
            self.name, self.hp, list(self.archs()), {"cifar10": means["accuracy"]},
            {"cifar10": means["train_seconds"] / EPOCHS}, source=str(source), metrics=metrics,
        )

    # --- search operators ------------------------------------------------------------------------------------------

    def random_arch(self, rng: random.Random) -> str:
        return rng.choice(self.archs())

    def neighbours(self, arch: str) -> list[str]:
        """The cells one edit away, in a fixed order: one interior operation changed, or one edge added or removed
        (then pruned); only where there is none of those in the space (the 2-vertex cell), one vertex inserted
        on an edge. Each listed once; never ``arch`` itself."""
        from greenmachine.spaces.nb101_cells import OPS, Cell

        cell = self.cell(arch)
        n = cell.num_vertices
        cells = generate_cells(self.max_vertices)
        out: dict[str, None] = {}

        def consider(matrix, ops) -> None:
            try:
                h = Cell(tuple(map(tuple, matrix)), tuple(ops)).pruned().module_hash()
            except GreenmachineError:  # no input-output path, or too many edges
                return
            if h != arch and h in cells:
                out.setdefault(h)

        for k in range(1, n - 1):
            for op in OPS:
                if op != cell.ops[k]:
                    consider(cell.matrix, cell.ops[:k] + (op,) + cell.ops[k + 1:])
        for i in range(n - 1):
            for j in range(i + 1, n):
                m = [list(r) for r in cell.matrix]
                m[i][j] = 1 - m[i][j]
                consider(m, cell.ops)
        if not out and n < self.max_vertices:
            for i in range(n - 1):
                for j in range(i + 1, n):
                    if not cell.matrix[i][j]:
                        continue
                    for op in OPS:  # vertex v (between i and j in the order) on the path i -> v -> j
                        v = j
                        m = [list(r[:v]) + [0] + list(r[v:]) for r in cell.matrix]
                        m.insert(v, [0] * (n + 1))
                        m[i][j + 1] = 0
                        m[i][v], m[v][j + 1] = 1, 1
                        consider(m, cell.ops[:v] + (op,) + cell.ops[v:])
        return list(out)

    def mutate(self, arch: str, rng: random.Random) -> str:
        """A uniformly drawn neighbour (:meth:`neighbours`): one operation changed, or one edge added or removed."""
        options = self.neighbours(arch)
        if not options:  # pragma: no cover - every cell of these spaces has a neighbour (tested)
            raise GreenmachineError(f"no mutation of {arch} stays in {self.name}")
        return rng.choice(options)

    def crossover(self, a: str, b: str, rng: random.Random) -> tuple[str, str]:
        """Each child keeps one parent's topology and takes a one-point crossover of the parents' interior operations
        (position by position; a position the other parent lacks keeps its own operation). Relabelling a cell of the
        space always gives a cell of the space."""
        from greenmachine.spaces.base import one_point
        from greenmachine.spaces.nb101_cells import Cell

        ca, cb = self.cell(a), self.cell(b)
        ia, ib = list(ca.ops[1:-1]), list(cb.ops[1:-1])
        width = max(len(ia), len(ib))
        pa, pb = ia + [None] * (width - len(ia)), ib + [None] * (width - len(ib))
        xa, xb = one_point(pa, pb, rng) if width >= 2 else (pb, pa)
        children = []
        for cell, own, genes in ((ca, ia, xa), (cb, ib, xb)):
            ops = [g if g is not None else o for g, o in zip(genes, own)]
            child = Cell(cell.matrix, ("input", *ops, "output")).pruned().module_hash()
            children.append(child if child in generate_cells(self.max_vertices) else cell.module_hash())
        return children[0], children[1]


class ECNAS4V(ECNAS):
    """Cells of at most 4 vertices: 91 cells, 3 measured repeats each."""

    def __init__(self) -> None:
        super().__init__("ecnas-4v", 4, "4V9E")


class ECNAS5V(ECNAS):
    """Cells of at most 5 vertices: 2,532 cells, 1 measured repeat each."""

    def __init__(self) -> None:
        super().__init__("ecnas-5v", 5, "5V9E")
