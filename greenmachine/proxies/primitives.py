"""The GP language: typed primitives over network terminals, and a safe evaluator for its trees.

Types (DEAP ``PrimitiveSetTyped`` needs classes):

* ``WTensor`` / ``ATensor``: a tensor per layer, weight side (every Conv2d/Linear: ``weight``, ``grad``,
  ``synflow_grad``) or activation side (every ReLU: channel means ``act``, ``act_grad``);
* ``ETensor``: per ReLU, the eigenvalues of the channel correlation matrix of one image's map (``corr_eig``);
* ``KTensor``: a B x B kernel per ReLU (``relu_kernel``: NASWOT's Hamming kernel; ``act_cosine``);
* ``NKernel``: a B x B kernel per network (``jacob_corr``: the correlation of the per-image input Jacobians, the
  matrix of Mellor et al.'s Jacobian covariance; ``ntk``: the empirical neural tangent kernel of TE-NAS, the
  inner products of per-image weight gradients, over the first 16 images; or ``k_sum`` of a network's ReLU
  kernels, NASWOT's K). Two network kernels of different sides combine over the images they share (the first
  ones: every kernel is indexed by the minibatch's image order);
* ``WLayer`` / ``ALayer``: one number per layer, made by a per-layer reduction;
* ``Net``: one score per network, made by aggregating layers (or the log-determinant of the summed kernels), or
  probed as one number (``swap``: SWAP's count of distinct sample-wise activation patterns over the ReLUs).

Every operator is protected (division by ~0 returns 1, log of 0 returns 0, logdet of a singular kernel returns
-1e6) so that a random tree returns numbers; whatever is still NaN or infinite gives the worst fitness.

Trees are stored and exchanged as lists of primitive names in prefix order. :func:`tree_from_tokens` checks every
name and type against the primitive set before it builds a tree, and :func:`evaluate` walks the list with the
implementations below: no ``eval``, no ``gp.compile``, no pickle, so a shared proxy file can never run code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import torch
from deap import gp

from greenmachine.errors import GreenmachineError
from greenmachine.probing.memory import trim_heap
from greenmachine.probing.probe import (
    ACT_TERMINALS,
    KERNEL_TERMINALS,
    NET_KERNEL_TERMINALS,
    NET_SCALAR_TERMINALS,
    SPECTRUM_TERMINALS,
    SWAP_IMAGES,
)
from greenmachine.probing.terminals import Family, ProbeBatch


class WTensor: ...


class ATensor: ...


class KTensor: ...


class ETensor: ...


class NKernel: ...


class WLayer: ...


class ALayer: ...


class Net: ...


EPS = 1e-12
LOGDET_FLOOR = -1e6


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[type, ...]
    ret: type
    fn: Callable  # fn(batch, *argument values) -> value
    doc: str = ""

    @property
    def arity(self) -> int:
        return len(self.args)


def pdiv(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ok = y.abs() > EPS
    return torch.where(ok, x / torch.where(ok, y, torch.ones_like(y)), torch.ones_like(x))


def plog(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    return torch.where(a > 0, torch.log(a.clamp_min(torch.finfo(a.dtype).tiny)), torch.zeros_like(a))


def psqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x.abs())


def plogdet(k: torch.Tensor) -> torch.Tensor:
    """log|det K| (NASWOT's score), with singular kernels floored at LOGDET_FLOOR."""
    _, logabs = torch.linalg.slogdet(k)
    return torch.where(torch.isfinite(logabs), logabs, torch.full_like(logabs, LOGDET_FLOOR))


ELEMENTWISE_UNARY: dict[str, tuple[Callable, str]] = {
    "abs": (torch.abs, "|x|"),
    "square": (torch.square, "x^2"),
    "sqrt": (psqrt, "sqrt|x|"),
    "log": (plog, "log|x| (0 at 0)"),
    "neg": (torch.neg, "-x"),
    "relu": (torch.relu, "max(x, 0)"),
    "sigmoid": (torch.sigmoid, "1/(1+e^-x)"),
}
BINARY: dict[str, tuple[Callable, str]] = {
    "add": (torch.add, "x + y"),
    "sub": (torch.sub, "x - y"),
    "mul": (torch.mul, "x * y"),
    "div": (pdiv, "x / y (1 where |y| < 1e-12)"),
}
SCALAR_UNARY = {k: ELEMENTWISE_UNARY[k] for k in ("abs", "sqrt", "log", "neg")}


def _segment_std(fam: Family, x: torch.Tensor) -> torch.Tensor:
    mean = fam.per_layer(x, "mean")
    return torch.sqrt((fam.per_layer(x * x, "mean") - mean * mean).clamp_min(0))


def _standardize(fam: Family, x: torch.Tensor) -> torch.Tensor:
    mean = fam.broadcast(fam.per_layer(x, "mean"))
    std = fam.broadcast(_segment_std(fam, x))
    return pdiv(x - mean, std)


REDUCTIONS: dict[str, tuple[Callable[[Family, torch.Tensor], torch.Tensor], str]] = {
    "sum": (lambda f, x: f.per_layer(x, "sum"), "sum over the layer"),
    "mean": (lambda f, x: f.per_layer(x, "mean"), "mean over the layer"),
    "norm": (lambda f, x: torch.sqrt(f.per_layer(x * x, "sum")), "L2 norm of the layer"),
    "max": (lambda f, x: f.per_layer(x, "max"), "largest element of the layer"),
    "min": (lambda f, x: f.per_layer(x, "min"), "smallest element of the layer"),
    "std": (_segment_std, "standard deviation over the layer"),
    "count": (lambda f, x: f.lengths.to(x.dtype), "number of elements of the layer"),
}


def _family_ops(
    prefix: str,
    tensor_t: type,
    layer_t: type,
    family: Callable[[ProbeBatch], Family],
    per_net: Callable[[ProbeBatch, torch.Tensor, str], torch.Tensor] | None = None,
) -> list[Op]:
    """Elementwise ops and per-layer reductions of one family; ``per_net`` (the aggregation of this layer type
    over each network's layers) adds the layer-scalar arithmetic and the aggregators, once per layer type."""
    ops: list[Op] = []
    for name, (fn, doc) in ELEMENTWISE_UNARY.items():
        ops.append(Op(f"{prefix}_{name}", (tensor_t,), tensor_t, lambda b, x, fn=fn: fn(x), doc))
    ops.append(
        Op(f"{prefix}_standardize", (tensor_t,), tensor_t, lambda b, x: _standardize(family(b), x), "(x-mean)/std per layer")
    )
    for name, (fn, doc) in BINARY.items():
        ops.append(Op(f"{prefix}_{name}", (tensor_t, tensor_t), tensor_t, lambda b, x, y, fn=fn: fn(x, y), doc))
    for name, (fn, doc) in REDUCTIONS.items():
        ops.append(Op(f"{prefix}_{name}", (tensor_t,), layer_t, lambda b, x, fn=fn: fn(family(b), x), doc))
    if per_net is None:
        return ops
    lp = prefix + "l"
    for name, (fn, doc) in SCALAR_UNARY.items():
        ops.append(Op(f"{lp}_{name}", (layer_t,), layer_t, lambda b, x, fn=fn: fn(x), doc))
    for name, (fn, doc) in BINARY.items():
        ops.append(Op(f"{lp}_{name}", (layer_t, layer_t), layer_t, lambda b, x, y, fn=fn: fn(x, y), doc))
    for name, doc in (("sum", "sum over layers"), ("mean", "mean over layers")):
        ops.append(Op(f"{prefix}_{name}_layers", (layer_t,), Net, lambda b, x, r=name: per_net(b, x, r), doc))
    return ops


JACOV_K = 1e-5  # the jacov baseline's (and NASLib's) shift of the eigenvalues


def _eigenvalues(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending eigenvalues of each symmetric kernel of the stack, and which kernels are finite (a kernel with a
    non-finite entry is replaced by the identity for the decomposition, since eigvalsh fails on NaN)."""
    finite = torch.isfinite(k).all(dim=-1).all(dim=-1)
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    return torch.linalg.eigvalsh(torch.where(finite[:, None, None], k, eye)), finite


def jacov_score(k: torch.Tensor) -> torch.Tensor:
    """-sum(log(v + k) + 1/(v + k)) over the eigenvalues v of each kernel (the jacov score of a correlation
    matrix); a kernel whose eigenvalues leave the log's domain (v + k <= 0) gets NaN, the worst fitness."""
    v, finite = _eigenvalues(k)
    v = v + JACOV_K
    score = -(torch.log(v) + 1.0 / v).sum(dim=-1)
    return torch.where(finite, score, torch.full_like(score, float("nan")))


def _shared(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two stacks of network kernels cut to the images both cover: the ntk kernel spans the minibatch's first
    images, the others all of it, and row/column i is image i in each."""
    n = min(x.shape[-1], y.shape[-1])
    return x[..., :n, :n], y[..., :n, :n]


def kernel_condition(k: torch.Tensor) -> torch.Tensor:
    """log(lambda_max / lambda_min) of each symmetric kernel (TE-NAS's NTK condition number, as a log), lambda_min
    floored at 1e-12 lambda_max; NaN for a kernel with non-finite entries or no positive eigenvalue."""
    v, finite = _eigenvalues(k)
    top = v[..., -1]
    ok = finite & (top > 0)
    top = torch.where(ok, top, torch.ones_like(top))
    bottom = torch.maximum(v[..., 0], top * 1e-12)
    return torch.where(ok, torch.log(top) - torch.log(bottom), torch.full_like(top, float("nan")))


def kernel_correlation(k: torch.Tensor) -> torch.Tensor:
    """K_ij / sqrt(K_ii K_jj): the cosines between what the kernel's feature vectors are (for the ntk, the
    per-image gradients' directions); a zero diagonal entry gives a zero row and column."""
    d = torch.diagonal(k, dim1=-2, dim2=-1)
    inv = torch.where(d > 0, torch.rsqrt(d.clamp_min(torch.finfo(k.dtype).tiny)), torch.zeros_like(d))
    return k * inv[..., :, None] * inv[..., None, :]


def _kernel_sum(b: ProbeBatch, k: torch.Tensor) -> torch.Tensor:
    return torch.segment_reduce(k, "sum", lengths=b.kernel_layers_per_net, axis=0, unsafe=True)


def _const(value: float, kind: str) -> Callable:
    def fn(b: ProbeBatch) -> torch.Tensor:
        n = b.n if kind == "net" else (b.weight.n_layers if kind == "w" else int(b.relu_layers_per_net.sum()))
        return torch.full((n,), value, dtype=b.dtype, device=b.device)

    return fn


def relative_depth(layers_per_net: torch.Tensor) -> torch.Tensor:
    """k/L for the k-th (1-based) of the L layers of each network, concatenated over the networks."""
    total = int(layers_per_net.sum())
    starts = torch.cumsum(layers_per_net, 0) - layers_per_net
    position = torch.arange(1, total + 1, device=layers_per_net.device) - torch.repeat_interleave(starts, layers_per_net)
    return position / torch.repeat_interleave(layers_per_net, layers_per_net)


def _depth(kind: str) -> Callable:
    def fn(b: ProbeBatch) -> torch.Tensor:
        lengths = b.weight.layers_per_net if kind == "w" else b.relu_layers_per_net
        return relative_depth(lengths).to(b.device, b.dtype)

    return fn


def _terminal(family: str, name: str) -> Callable:
    def fn(b: ProbeBatch) -> torch.Tensor:
        store = {"w": b.weight.data, "a": b.act.data, "e": b.spectrum.data, "k": b.kernels,
                 "n": b.net_kernels, "s": b.net_scalars}[family]
        if name not in store:
            raise GreenmachineError(f"terminal {name!r} was not probed for this sample")
        return store[name]

    return fn


NET_KERNEL_DOCS = {
    "jacob_corr": "correlation of the per-image input Jacobians, B x B (the jacobian pass)",
    "ntk": "empirical NTK: inner products of the per-image weight gradients, first 16 images (the ntk pass)",
}
assert set(NET_KERNEL_DOCS) == set(NET_KERNEL_TERMINALS)


def build_ops() -> list[Op]:
    ops = _family_ops("w", WTensor, WLayer, lambda b: b.weight, lambda b, x, r: b.weight.per_net(x, r))
    ops += _family_ops("a", ATensor, ALayer, lambda b: b.act, lambda b, x, r: b.relu_per_net(x, r))
    ops += _family_ops("e", ETensor, ALayer, lambda b: b.spectrum)
    ops += [
        Op("k_add", (KTensor, KTensor), KTensor, lambda b, x, y: x + y, "sum of two kernels"),
        Op("k_mul", (KTensor, KTensor), KTensor, lambda b, x, y: x * y, "elementwise product of two kernels"),
        Op("k_logdet", (KTensor,), ALayer, lambda b, k: plogdet(k), "log|det| of each layer's kernel"),
        Op("k_logdet_sum", (KTensor,), Net, lambda b, k: plogdet(_kernel_sum(b, k)), "log|det| of the summed kernel"),
        # network kernels (opt-in, KERNEL_OPS): k_sum lets the ReLU kernels, the Jacobian correlation and the ntk mix;
        # n_logdet(k_sum(x)) is k_logdet_sum(x), which stays for the proxy files that use it
        Op("k_sum", (KTensor,), NKernel, lambda b, k: _kernel_sum(b, k), "the kernels of a network's ReLUs summed"),
        Op("n_add", (NKernel, NKernel), NKernel, lambda b, x, y: torch.add(*_shared(x, y)),
           "sum of two network kernels (over the images both cover)"),
        Op("n_mul", (NKernel, NKernel), NKernel, lambda b, x, y: torch.mul(*_shared(x, y)),
           "elementwise product of two network kernels (over the images both cover)"),
        Op("n_logdet", (NKernel,), Net, lambda b, k: plogdet(k), "log|det| of the network kernel"),
        Op("n_jacov", (NKernel,), Net, lambda b, k: jacov_score(k),
           "-sum(log(v + 1e-5) + 1/(v + 1e-5)) over the kernel's eigenvalues v (jacov on jacob_corr)"),
        Op("n_cond", (NKernel,), Net, lambda b, k: kernel_condition(k),
           "log(lambda_max / lambda_min) of the network kernel (TE-NAS's condition number on ntk)"),
        Op("n_trace", (NKernel,), Net, lambda b, k: torch.diagonal(k, dim1=-2, dim2=-1).sum(-1),
           "trace of the network kernel (on ntk: the summed squared per-image gradient norms)"),
        Op("n_corr", (NKernel,), NKernel, lambda b, k: kernel_correlation(k),
           "K_ij / sqrt(K_ii K_jj): the kernel as cosines (on ntk: of the per-image gradients)"),
    ]
    for name, (fn, doc) in {**SCALAR_UNARY, **BINARY}.items():
        ops.append(Op(name, (Net,) * (2 if name in BINARY else 1), Net, lambda b, *xs, fn=fn: fn(*xs), doc))
    # terminals (arity 0)
    for name in ("weight", "grad", "synflow_grad"):
        ops.append(Op(name, (), WTensor, _terminal("w", name), "weight-side terminal"))
    for name in ("act", "act_grad"):
        ops.append(Op(name, (), ATensor, _terminal("a", name), "activation-side terminal"))
    ops.append(Op("corr_eig", (), ETensor, _terminal("e", "corr_eig"), "channel-correlation eigenvalues per ReLU"))
    for name in ("relu_kernel", "act_cosine"):
        ops.append(Op(name, (), KTensor, _terminal("k", name), "kernel terminal"))
    for name, doc in NET_KERNEL_DOCS.items():
        ops.append(Op(name, (), NKernel, _terminal("n", name), doc))
    ops.append(Op("swap", (), Net, _terminal("s", "swap"),
                  f"SWAP: distinct activation patterns over the first {SWAP_IMAGES} images, all ReLUs (the swap pass)"))
    ops.append(Op("wl_one", (), WLayer, _const(1.0, "w"), "1 per weighted layer"))
    ops.append(Op("al_one", (), ALayer, _const(1.0, "a"), "1 per ReLU"))
    # structural terminals (opt-in, STRUCTURAL): where a layer sits in its network, in the order the probe lists
    # layers (weighted layers in module order, ReLUs in the order the forward pass calls them). Per-layer parameter
    # counts weighted by depth say which stage's width a network spends its parameters on, which decides SSS
    # CIFAR-100 accuracy (README, "Proxy quality")
    ops.append(Op("wl_depth", (), WLayer, _depth("w"), "k/L for the k-th of a network's L weighted layers"))
    ops.append(Op("al_depth", (), ALayer, _depth("a"), "k/L for the k-th of a network's L ReLUs"))
    for name, value in (("c_half", 0.5), ("c_one", 1.0), ("c_two", 2.0), ("c_ten", 10.0)):
        ops.append(Op(name, (), Net, _const(value, "net"), f"the constant {value}"))
    return ops


OPS: dict[str, Op] = {op.name: op for op in build_ops()}
# Terminals an evolution draws only when its config asks (``structural = true``): the language that earlier runs
# evolved in, and their seeded results, stay as they were. Every proxy file may use them (tree_from_tokens).
STRUCTURAL = ("wl_depth", "al_depth")
# ... and the same for the network kernels: jacob_corr (``jacobian = true``) needs the jacobian pass, a forward and
# a backward more per network, ntk (``ntk = true``) the ntk pass, 16 backwards more; an evolution probes them only
# then. The operators on network kernels come with either. swap (``swap = true``) needs the swap pass, a forward.
KERNEL_OPS = tuple(name for name, op in OPS.items() if op.arity and (op.ret is NKernel or NKernel in op.args))
# ReLU-side layer constants (al_one, al_depth) need the ReLU structure, which only the ce pass records (terminals_of)
_RELU_STRUCTURE = frozenset(name for name, op in OPS.items() if op.arity == 0 and op.ret is ALayer)
_RELU_SIDE = frozenset(ACT_TERMINALS + SPECTRUM_TERMINALS + KERNEL_TERMINALS)


def _left_out(structural: bool, jacobian: bool, ntk: bool = False, swap: bool = False) -> frozenset[str]:
    """The opt-in names that a language without these options leaves out."""
    return frozenset((() if structural else STRUCTURAL) + (() if jacobian else ("jacob_corr",))
                     + (() if ntk else ("ntk",)) + (() if jacobian or ntk else KERNEL_OPS)
                     + (() if swap else NET_SCALAR_TERMINALS))


def in_language(tokens: Sequence[str], structural: bool = False, jacobian: bool = False, ntk: bool = False,
                swap: bool = False) -> bool:
    """Whether a tree uses only what :func:`primitive_set` with these options holds (every proxy FILE may use the
    whole language; an evolution draws from its own, and seeds generation 0 only with trees in it)."""
    return not set(tokens) & _left_out(structural, jacobian, ntk, swap)


@lru_cache(maxsize=8)
def primitive_set(structural: bool = False, jacobian: bool = False, ntk: bool = False,
                  swap: bool = False) -> gp.PrimitiveSetTyped:
    """The DEAP primitive set; without ``structural`` it leaves out :data:`STRUCTURAL`, without ``jacobian``
    jacob_corr, without ``ntk`` the ntk terminal, without both the operators on network kernels, and without
    ``swap`` the swap terminal. Its functions are the implementations above; it is never compiled."""
    pset = gp.PrimitiveSetTyped("PROXY", [], Net)
    left_out = _left_out(structural, jacobian, ntk, swap)
    for op in OPS.values():
        if op.name in left_out:
            continue
        if op.arity:
            pset.addPrimitive(op.fn, list(op.args), op.ret, name=op.name)
        else:
            pset.addTerminal(op.name, op.ret, name=op.name)
    return pset


# ---- safe (de)serialisation -------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\()|(\))|(,))")


def parse_expression(text: str) -> list[str]:
    """Turn ``add(w_sum_layers(...), c_one)`` into prefix tokens, checking names and arities (no eval)."""
    tokens: list[str] = []
    pos = 0
    stack: list[list[int]] = []  # [expected arity, seen args]
    expect_arg = True
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise GreenmachineError(f"cannot parse the proxy expression at {text[pos:pos + 20]!r}")
        pos = m.end()
        name, lpar, rpar, comma = m.groups()
        if name:
            if not expect_arg:
                raise GreenmachineError(f"unexpected {name!r} in the proxy expression")
            if name not in OPS:
                raise GreenmachineError(f"unknown primitive {name!r} in the proxy expression")
            tokens.append(name)
            if OPS[name].arity:
                m2 = _TOKEN.match(text, pos)
                if not m2 or not m2.group(2):
                    raise GreenmachineError(f"primitive {name!r} needs '(' and {OPS[name].arity} arguments")
                pos = m2.end()
                stack.append([OPS[name].arity, 0])
                expect_arg = True
            else:
                expect_arg = False
                if stack:
                    stack[-1][1] += 1
        elif comma:
            if not stack or expect_arg or stack[-1][1] >= stack[-1][0]:
                raise GreenmachineError("misplaced ',' in the proxy expression")
            expect_arg = True
        elif rpar:
            if not stack or expect_arg or stack[-1][1] != stack[-1][0]:
                raise GreenmachineError("wrong number of arguments before ')' in the proxy expression")
            stack.pop()
            expect_arg = False
            if stack:
                stack[-1][1] += 1
        elif lpar:
            raise GreenmachineError("unexpected '(' in the proxy expression")
    if stack or not tokens:
        raise GreenmachineError("the proxy expression is incomplete")
    check_tokens(tokens)
    return tokens


def check_tokens(tokens: Sequence[str]) -> None:
    """Check a prefix token list: known names, matching types, one complete tree whose root is a Net score."""
    if not isinstance(tokens, (list, tuple)) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise GreenmachineError("a proxy tree must be a non-empty list of primitive names")
    pos = 0

    def walk(expected: type) -> None:
        nonlocal pos
        if pos >= len(tokens):
            raise GreenmachineError("the proxy tree ends early: a primitive lacks arguments")
        name = tokens[pos]
        op = OPS.get(name)
        if op is None:
            raise GreenmachineError(f"unknown primitive {name!r} in the proxy tree")
        if op.ret is not expected:
            raise GreenmachineError(f"{name!r} returns {op.ret.__name__} where {expected.__name__} is needed")
        pos += 1
        for arg in op.args:
            walk(arg)

    walk(Net)
    if pos != len(tokens):
        raise GreenmachineError("the proxy tree has extra tokens after its end")


def tree_from_tokens(tokens: Sequence[str]) -> gp.PrimitiveTree:
    check_tokens(tokens)
    pset = primitive_set(structural=True, jacobian=True, ntk=True, swap=True)
    return gp.PrimitiveTree([pset.mapping[t] for t in tokens])


def tree_tokens(tree: gp.PrimitiveTree) -> list[str]:
    return [node.name for node in tree]


def tree_expression(tokens: Sequence[str]) -> str:
    """Readable infix-call form, e.g. ``k_logdet_sum(relu_kernel)``."""
    out: list[str] = []
    pos = 0

    def walk() -> None:
        nonlocal pos
        op = OPS[tokens[pos]]
        pos += 1
        out.append(op.name)
        if op.arity:
            out.append("(")
            for i in range(op.arity):
                if i:
                    out.append(", ")
                walk()
            out.append(")")

    walk()
    return "".join(out)


def terminals_of(tokens: Sequence[str]) -> set[str]:
    """The probed terminals a tree reads; a ReLU-side layer constant (``al_one``, ``al_depth``) reads the ReLU
    structure, so it counts as ``act`` (without it, a tree of such a constant and synflow terms had no ReLUs)."""
    found = {t for t in tokens if OPS[t].arity == 0 and OPS[t].ret in (WTensor, ATensor, ETensor, KTensor, NKernel)}
    found |= set(tokens) & set(NET_SCALAR_TERMINALS)
    if _RELU_STRUCTURE & set(tokens) and not found & _RELU_SIDE:
        found.add("act")
    return found


SMALL_TYPES = (Net, WLayer, ALayer)


def evaluate(tokens: Sequence[str], batch: ProbeBatch) -> torch.Tensor:
    """Score every network of ``batch`` with the tree; returns a float tensor of length ``batch.n``.

    Results of per-layer and per-network subtrees are memoised in the batch, since a population shares many.
    """
    tokens = tuple(tokens)
    ends = _subtree_ends(tokens)

    def walk(i: int) -> torch.Tensor:
        op = OPS[tokens[i]]
        small = op.ret in SMALL_TYPES and op.arity
        if small:
            key = tokens[i : ends[i]]
            hit = batch.recall(key)
            if hit is not None:
                return hit
        args = []
        j = i + 1
        for _ in range(op.arity):
            args.append(walk(j))
            j = ends[j]
        value = op.fn(batch, *args)
        if small:
            batch.remember(key, value)
        return value

    with torch.no_grad():
        return walk(0).to(torch.float64)


def evaluate_chunks(tokens: Sequence[str], batches: Sequence[ProbeBatch]) -> torch.Tensor:
    """Scores of every network of several batches, in order. The heap is trimmed between chunks when it has grown
    (probing/memory.py): each chunk's temporaries have other sizes, and untrimmed they pile up over the chunks."""
    out = []
    for b in batches:
        out.append(evaluate(tokens, b).cpu())
        trim_heap()
    return torch.cat(out)


def _subtree_ends(tokens: Sequence[str]) -> list[int]:
    ends = [0] * len(tokens)
    for i in range(len(tokens) - 1, -1, -1):
        j = i + 1
        for _ in range(OPS[tokens[i]].arity):
            j = ends[j]
        ends[i] = j
    return ends
