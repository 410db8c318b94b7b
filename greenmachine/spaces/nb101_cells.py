"""NAS-Bench-101 cells: one representation for the EC-NAS space and the energy surrogate.

A NAS-Bench-101 cell is a DAG of at most 7 vertices (input, up to 5 operations, output) and at most 9 edges, given
as an upper-triangular 0/1 adjacency matrix and one operation per vertex. The EC-NAS data spells cells three ways:

* the measured CSVs (``ecnas_*V9E_4epochs_measured.csv``): a row-major 0/1 adjacency string and comma-separated
  operation names including ``input`` / ``output`` (:func:`parse_cell`);
* ``generated_graphs_*.json``: ``{module_hash: [matrix, labels]}`` with integer labels (:func:`cell_from_graph`);
* the 7-vertex surrogate set: a 7x7 adjacency padded at the end and one op code per vertex
  (:func:`parse_cell_codes`).

All three become the same frozen :class:`Cell`, so a model trained on one spelling predicts cells given in another.
Cells are validated on construction (one-line :class:`GreenmachineError`), and the parsers return the *pruned* cell:
NAS-Bench-101 drops vertices that are not on a path from input to output before building (and hashing) a network,
so two spellings of the same network must become the same cell.

The module hash is NAS-Bench-101's own (``graph_util.hash_module`` over labels -1 input, -2 output and the index
of the op in :data:`OPS`), which is what keys the benchmark and the EC-NAS tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from greenmachine.errors import GreenmachineError

#: The operations of NAS-Bench-101, in its canonical order (a vertex's hash label is its index here).
OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
INPUT = "input"
OUTPUT = "output"
PAD = "pad"
#: NAS-Bench-101's limits on a cell.
MAX_VERTICES = 7
MAX_EDGES = 9

#: Labels of ``generated_graphs_*.json`` (and of the hash): -1 input, -2 output, else the index in :data:`OPS`.
_LABEL_TO_OP = {-1: INPUT, -2: OUTPUT, **{i: op for i, op in enumerate(OPS)}}
_OP_TO_LABEL = {op: label for label, op in _LABEL_TO_OP.items()}
#: Op codes of the EC-NAS 7-vertex surrogate set (surrogate-ec-nasbench's op2vec).
SURROGATE_OP_CODES = {0: PAD, 1: INPUT, 2: "conv1x1-bn-relu", 3: "conv3x3-bn-relu", 4: "maxpool3x3", 5: OUTPUT}
#: The vocabulary of the one-hot op part of :func:`encode`; a padding vertex is all zeros.
ENCODING_OPS: tuple[str, ...] = (INPUT, *OPS, OUTPUT)


@dataclass(frozen=True)
class Cell:
    """One NAS-Bench-101 cell: an upper-triangular 0/1 adjacency matrix and one op per vertex.

    ``ops[0]`` is ``"input"``, ``ops[-1]`` is ``"output"``, the others are in :data:`OPS`. Construction validates
    (so a ``Cell`` that exists is well formed); it does not prune: use :meth:`pruned`, or the parsers, which prune.
    """

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        _validate(self.matrix, self.ops)

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return int(sum(map(sum, self.matrix)))

    def array(self) -> np.ndarray:
        """The adjacency matrix as an n x n int array (a fresh copy)."""
        return np.array(self.matrix, dtype=np.int64).reshape(self.num_vertices, self.num_vertices)

    def labels(self) -> list[int]:
        """NAS-Bench-101's integer labels: -1 input, -2 output, else the op's index in :data:`OPS`."""
        return [_OP_TO_LABEL[op] for op in self.ops]

    def pruned(self) -> Cell:
        """The cell NAS-Bench-101 builds: vertices not on an input-to-output path removed (``self`` if none are)."""
        keep = _on_path(self.array())
        if all(keep):
            return self
        idx = [i for i, k in enumerate(keep) if k]
        m = self.array()[np.ix_(idx, idx)]
        return Cell(_as_tuple(m), tuple(self.ops[i] for i in idx))

    def module_hash(self) -> str:
        """NAS-Bench-101's graph-invariant MD5 hash of the pruned cell (the key of its tables and of EC-NAS')."""
        return self._hash

    @cached_property
    def _hash(self) -> str:
        from nasbench_pytorch.model.graph_util import hash_module

        cell = self.pruned()
        return hash_module(cell.array(), cell.labels())

    def padded(self, n: int = MAX_VERTICES) -> tuple[np.ndarray, tuple[str, ...]]:
        """The pruned cell padded to ``n`` vertices at the end (after the output), ops ``"pad"``.

        Padding at the end is the layout of EC-NAS' 7-vertex surrogate set (``adjacency_7x7``), so that set's cells
        pad back to exactly its rows; padding vertices have no edges.
        """
        cell = self.pruned()
        v = cell.num_vertices
        if n < v:
            raise GreenmachineError(f"cannot pad a {v}-vertex cell to {n} vertices")
        out = np.zeros((n, n), dtype=np.int64)
        out[:v, :v] = cell.array()
        return out, cell.ops + (PAD,) * (n - v)

    def adjacency_string(self) -> str:
        """The row-major 0/1 string of the measured CSVs."""
        return "".join(str(x) for row in self.matrix for x in row)

    def operations_string(self) -> str:
        """The comma-separated op names of the measured CSVs."""
        return ",".join(self.ops)


def _as_tuple(m: np.ndarray) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(x) for x in row) for row in m)


def _on_path(m: np.ndarray) -> list[bool]:
    """For each vertex, whether it lies on a path from vertex 0 to vertex n-1 (NAS-Bench-101's pruning rule)."""
    n = len(m)
    from_input = [False] * n
    from_input[0] = True
    for v in range(n):  # upper-triangular: one pass in vertex order is a topological sweep
        if from_input[v]:
            for w in range(v + 1, n):
                if m[v, w]:
                    from_input[w] = True
    to_output = [False] * n
    to_output[n - 1] = True
    for v in range(n - 1, -1, -1):
        if any(m[v, w] and to_output[w] for w in range(v + 1, n)):
            to_output[v] = True
    return [a and b for a, b in zip(from_input, to_output)]


def _validate(matrix, ops) -> None:
    """Raise a one-line GreenmachineError unless (matrix, ops) is a NAS-Bench-101 cell."""
    if not isinstance(ops, tuple) or not all(isinstance(op, str) for op in ops):
        raise GreenmachineError("cell ops must be a tuple of operation names")
    n = len(ops)
    if not 2 <= n <= MAX_VERTICES:
        raise GreenmachineError(f"a cell has 2 to {MAX_VERTICES} vertices, got {n}")
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise GreenmachineError(f"cell adjacency must be {n} x {n} for {n} ops")
    for row in matrix:
        for x in row:
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x not in (0, 1):
                raise GreenmachineError(f"cell adjacency entries must be 0 or 1, got {x!r}")
    if any(matrix[i][j] for i in range(n) for j in range(i + 1)):
        raise GreenmachineError("cell adjacency must be strictly upper-triangular (edges go from lower to higher vertex)")
    for i, op in enumerate(ops):
        if op not in (INPUT, OUTPUT, *OPS):
            raise GreenmachineError(f"unknown operation {op!r} (expected one of {', '.join(OPS)})")
        expected = INPUT if i == 0 else OUTPUT if i == n - 1 else None
        if (expected or op) != op or (expected is None and op in (INPUT, OUTPUT)):
            raise GreenmachineError(f"cell ops must start with 'input' and end with 'output' (only there), got {','.join(ops)}")
    edges = sum(map(sum, matrix))
    if edges > MAX_EDGES:
        raise GreenmachineError(f"a NAS-Bench-101 cell has at most {MAX_EDGES} edges, got {edges}")
    if not _on_path(np.array(matrix, dtype=np.int64).reshape(n, n))[n - 1]:
        raise GreenmachineError("cell has no path from input to output")


def _strip_padding(m: np.ndarray, ops: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop trailing ``pad`` vertices, which must have no edges."""
    v = len(ops)
    while v and ops[v - 1] == PAD:
        v -= 1
    if PAD in ops[:v]:
        raise GreenmachineError("'pad' vertices may only come after the output")
    if m[v:, :].any() or m[:, v:].any():
        raise GreenmachineError("a 'pad' vertex has edges")
    return m[:v, :v], ops[:v]


def _square(values: list[int], what: str) -> np.ndarray:
    n = int(round(len(values) ** 0.5))
    if n * n != len(values) or n == 0:
        raise GreenmachineError(f"{what} has {len(values)} entries, not a square number")
    return np.array(values, dtype=np.int64).reshape(n, n)


def parse_cell(adjacency: str, operations: str) -> Cell:
    """A pruned cell from the CSV spelling: ``"0110001000010000"`` and ``"input,maxpool3x3,maxpool3x3,output"``.

    Trailing ``pad`` ops (with edge-free rows and columns) are dropped, so padded spellings parse too.
    """
    adjacency = str(adjacency).strip()
    if not adjacency or any(ch not in "01" for ch in adjacency):
        raise GreenmachineError(f"adjacency must be a string of 0/1 digits, got {adjacency[:60]!r}")
    ops = [op.strip() for op in str(operations).split(",")]
    if len(adjacency) != len(ops) ** 2:
        raise GreenmachineError(
            f"adjacency has {len(adjacency)} entries but {len(ops)} operations need {len(ops) ** 2}")
    m = _square([int(ch) for ch in adjacency], "adjacency")
    m, ops = _strip_padding(m, ops)
    return Cell(_as_tuple(m), tuple(ops)).pruned()


def parse_cell_codes(adjacency: str, op_codes: str) -> Cell:
    """A pruned cell from the 7-vertex surrogate set: padded adjacency string and op codes (``"1334235"``).

    Codes: 0 pad, 1 input, 2 conv1x1-bn-relu, 3 conv3x3-bn-relu, 4 maxpool3x3, 5 output (surrogate-ec-nasbench).
    """
    codes = str(op_codes).strip()
    if not codes or any(ch not in "012345" for ch in codes):
        raise GreenmachineError(f"op codes must be digits 0-5, got {codes[:20]!r}")
    return parse_cell(adjacency, ",".join(SURROGATE_OP_CODES[int(ch)] for ch in codes))


def cell_from_graph(matrix, labels) -> Cell:
    """A pruned cell from ``generated_graphs_*.json``: a nested-list matrix and labels (-1, -2, 0, 1, 2)."""
    try:
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.issubdtype(m.dtype, np.integer):
            raise ValueError
        ops = [_LABEL_TO_OP[int(label)] for label in labels]
    except (ValueError, TypeError, KeyError):
        raise GreenmachineError(f"not a NAS-Bench-101 graph: matrix {str(matrix)[:60]}, labels {str(labels)[:40]}")
    if len(ops) != len(m):
        raise GreenmachineError(f"graph has a {len(m)} x {len(m)} matrix but {len(ops)} labels")
    return Cell(_as_tuple(m), tuple(ops)).pruned()


ENCODING_LENGTH = MAX_VERTICES * (MAX_VERTICES - 1) // 2 + MAX_VERTICES * len(ENCODING_OPS)


def encode(cell: Cell) -> np.ndarray:
    """Fixed-length features of a cell: the upper triangle of the 7x7 padded adjacency, then one-hot ops.

    Length :data:`ENCODING_LENGTH` (21 + 7 x 5 = 56), float64. Ops one-hot over :data:`ENCODING_OPS`; a padding
    vertex is all zeros. Cells of 2 to 7 vertices share the layout, so one model reads any of them.
    """
    m, ops = cell.padded(MAX_VERTICES)
    upper = m[np.triu_indices(MAX_VERTICES, k=1)].astype(np.float64)
    onehot = np.zeros((MAX_VERTICES, len(ENCODING_OPS)))
    for i, op in enumerate(ops):
        if op != PAD:
            onehot[i, ENCODING_OPS.index(op)] = 1.0
    return np.concatenate([upper, onehot.ravel()])


@dataclass(frozen=True)
class NetworkCost:
    """Analytic size and work of the NAS-Bench-101 CIFAR network built from one cell.

    The network is NAS-Bench-101's: a 3x3 stem (128 channels), 3 stacks of 3 cells (channels doubling and
    resolution halving after stacks 1 and 2: 32x32, 16x16, 8x8), global average pooling and a linear classifier.
    Counting analytically (the same channel split as ``nasbench_pytorch``) costs microseconds per cell, where
    building the torch module costs tens of milliseconds: it lets a surrogate score the 423k cells of the space.
    """

    params: int  #: trainable parameters (conv weights, BN scale/shift, classifier), as EC-NAS' ``trainable_params``
    conv_macs: int  #: multiply-accumulates of all convolutions for one 32x32 image
    pool_ops: int  #: comparisons of the 3x3 max-pools in the cells, one image
    activations: int  #: output elements of every vertex, projection and stem, one image (a memory-traffic proxy)


def network_cost(cell: Cell, num_labels: int = 10, stem_channels: int = 128, num_stacks: int = 3,
                 cells_per_stack: int = 3, image_size: int = 32) -> NetworkCost:
    """Parameters, MACs, pooling work and activations of the NAS-Bench-101 network of ``cell`` (pruned first)."""
    from nasbench_pytorch.model.model import compute_vertex_channels

    cell = cell.pruned()
    m = cell.array()
    n = cell.num_vertices
    hw = image_size * image_size
    params = 3 * stem_channels * 9 + 2 * stem_channels
    macs = hw * 3 * stem_channels * 9
    acts = hw * stem_channels
    pools = 0
    in_c = out_c = stem_channels
    for stack in range(num_stacks):
        if stack > 0:
            out_c *= 2
            hw //= 4
        for _ in range(cells_per_stack):
            vc = compute_vertex_channels(in_c, out_c, m)
            for t in range(1, n):
                if m[0, t]:  # 1x1 projection of the cell input (conv-bn-relu)
                    params += in_c * vc[t] + 2 * vc[t]
                    macs += hw * in_c * vc[t]
                    acts += hw * vc[t]
                if t < n - 1:
                    c = vc[t]
                    k = 9 if cell.ops[t] == "conv3x3-bn-relu" else 1 if cell.ops[t] == "conv1x1-bn-relu" else 0
                    if k:
                        params += k * c * c + 2 * c
                        macs += hw * k * c * c
                    else:
                        pools += hw * 9 * c
                    acts += hw * c
            acts += hw * out_c
            in_c = out_c
    params += out_c * num_labels + num_labels
    return NetworkCost(int(params), int(macs), int(pools), int(acts))
