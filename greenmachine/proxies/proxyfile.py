"""proxy.json: an evolved proxy as shareable data.

The tree is stored twice: as a readable expression and as the list of primitive names in prefix order, which
reloads exactly. Loading checks every name and type against the primitive set and never evaluates Python.

A proxy file is something a user hands over, so it is read with limits: a regular file only (a FIFO or a device is
refused without blocking), at most :data:`MAX_PROXY_BYTES`, JSON nested at most ``files.MAX_JSON_DEPTH`` deep, a
tree at most ``config.MAX_TREE_HEIGHT`` high (checked before any recursive walk), known space and dataset, seeds
in ``0..config.SEED_MAX``.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from greenmachine.config import MAX_TREE_HEIGHT, check_seed
from greenmachine.errors import GreenmachineError
from greenmachine.files import load_json, write_text_atomic
from greenmachine.probing.datasets import check_dataset
from greenmachine.probing.probe import check_inits, check_spectrum_images
from greenmachine.proxies.primitives import OPS, check_tokens, parse_expression, tree_expression
from greenmachine.spaces import space_names

FORMAT = "greenmachine-proxy"
FORMAT_VERSION = 1
MAX_PROXY_BYTES = 1 << 20  # 1 MiB: a tree of the maximum height with 2-ary nodes is far below it
MAX_EXPRESSION_CHARS = 200_000


def expression_height(text: str) -> int:
    """Height of the tree an expression string describes, bounded by its parenthesis nesting (no recursion)."""
    depth = best = 0
    for ch in text:
        if ch == "(":
            depth += 1
            best = max(best, depth)
        elif ch == ")":
            depth -= 1
    return best


def tokens_height(tokens: list) -> int:
    """Height of a prefix token list (a terminal alone is 0, as in DEAP), walked with a stack, not recursion.
    Unknown names count as terminals here; check_tokens names them afterwards."""
    best = 0
    pending: list[int] = []  # children still expected by each open node, root first
    for name in tokens:
        depth = len(pending)
        best = max(best, depth)
        if pending:
            pending[-1] -= 1
        op = OPS.get(name) if isinstance(name, str) else None
        if op is not None and op.arity:
            pending.append(op.arity)
        while pending and pending[-1] == 0:
            pending.pop()
    return best


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("greenmachine", "torch", "deap", "numpy", "scipy", "nats_bench", "xautodl"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass
class Proxy:
    tokens: list[str]
    space: str | None = None
    dataset: str | None = None
    fitness: float | None = None
    sampling: str | None = None
    sample_indices: list[int] = field(default_factory=list)
    seed: int | None = None
    probe: dict[str, Any] = field(default_factory=dict)  # batch_size, batch_seed, init_seed[, spectrum_images, inits]
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def expression(self) -> str:
        return tree_expression(self.tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "expression": self.expression,
            "tokens": list(self.tokens),
            "fitness": {"kendall_tau": self.fitness, "on": "evolution sample"},
            "space": self.space,
            "dataset": self.dataset,
            "sampling": self.sampling,
            "sample_size": len(self.sample_indices),
            "sample_indices": list(self.sample_indices),
            "seed": self.seed,
            "probe": self.probe,
            "config": self.config,
            "versions": package_versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **self.extra,
        }


def save_proxy(proxy: Proxy, path: str | Path) -> None:
    write_text_atomic(path, json.dumps(proxy.to_json(), indent=2) + "\n")


def proxy_from_json(data: Any, origin: str) -> Proxy:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GreenmachineError(f"{origin} is not a greenmachine proxy file (no \"format\": \"{FORMAT}\")")
    if type(data.get("format_version")) is not int or data.get("format_version") != FORMAT_VERSION:
        raise GreenmachineError(f"{origin} has proxy format version {data.get('format_version')!r}; expected {FORMAT_VERSION}")
    tokens = data.get("tokens")
    expression = data.get("expression")
    if tokens is not None and (not isinstance(tokens, list) or len(tokens) > MAX_PROXY_BYTES // 4):
        raise GreenmachineError(f"{origin}: tokens must be a list of primitive names")
    if expression is not None and (not isinstance(expression, str) or len(expression) > MAX_EXPRESSION_CHARS):
        raise GreenmachineError(f"{origin}: expression must be a string of at most {MAX_EXPRESSION_CHARS} characters")
    height = max(tokens_height(tokens) if tokens is not None else 0,
                 expression_height(expression) if expression is not None else 0)
    if height > MAX_TREE_HEIGHT:
        raise GreenmachineError(f"{origin}: the tree is {height} levels high; the limit is {MAX_TREE_HEIGHT}")
    try:
        if "tokens" in data:
            tokens = data["tokens"]
            check_tokens(tokens)
            if "expression" in data and parse_expression(str(data["expression"])) != list(tokens):
                raise GreenmachineError("its expression and its tokens describe different trees")
        elif "expression" in data:
            tokens = parse_expression(str(data["expression"]))
        else:
            raise GreenmachineError("it has neither tokens nor expression")
    except GreenmachineError as exc:
        raise GreenmachineError(f"{origin}: {exc}") from None
    space = data.get("space")
    if space is not None and space not in space_names():
        raise GreenmachineError(f"{origin}: unknown space {space!r}")
    dataset = data.get("dataset")
    if dataset is not None:
        if not isinstance(dataset, str):
            raise GreenmachineError(f"{origin}: dataset must be a dataset name, got {str(dataset)[:40]!r}")
        try:
            check_dataset(dataset)
        except GreenmachineError as exc:
            raise GreenmachineError(f"{origin}: {exc}") from None
    sampling = data.get("sampling")
    if sampling is not None and not isinstance(sampling, str):
        raise GreenmachineError(f"{origin}: sampling must be a string")
    indices = data.get("sample_indices") or []
    if not isinstance(indices, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices
    ):
        raise GreenmachineError(f"{origin}: sample_indices must be a list of non-negative integers")
    probe = data.get("probe") or {}
    if not isinstance(probe, dict) or not all(
        isinstance(probe.get(k, 0), int) and not isinstance(probe.get(k, 0), bool) for k in ("batch_size", "batch_seed", "init_seed")
    ):
        raise GreenmachineError(f"{origin}: probe must hold integer batch_size, batch_seed and init_seed")
    try:
        for k in ("batch_seed", "init_seed"):
            if k in probe:
                check_seed(probe[k], f"probe.{k}")
        if data.get("seed") is not None:
            check_seed(data["seed"], "seed")
    except GreenmachineError as exc:
        raise GreenmachineError(f"{origin}: {exc}") from None
    if "batch_size" in probe and probe["batch_size"] < 2:
        raise GreenmachineError(f"{origin}: probe.batch_size must be at least 2, got {probe['batch_size']}")
    if "spectrum_images" in probe:
        check_spectrum_images(probe["spectrum_images"], probe.get("batch_size", 64),
                              f"{origin}: probe.spectrum_images")
    if "inits" in probe:
        check_inits(probe["inits"], f"{origin}: probe.inits")
    fitness = (data.get("fitness") or {}).get("kendall_tau") if isinstance(data.get("fitness"), dict) else None
    return Proxy(
        tokens=list(tokens),
        space=space,
        dataset=dataset,
        fitness=fitness if isinstance(fitness, (int, float)) else None,
        sampling=sampling,
        sample_indices=list(indices),
        seed=data.get("seed") if isinstance(data.get("seed"), int) else None,
        probe=dict(probe),
        config=data.get("config") if isinstance(data.get("config"), dict) else {},
    )


def load_proxy(path: str | Path) -> Proxy:
    """Read and check a proxy file (limits: see the module docstring)."""
    path = Path(path)
    data = load_json(path, "proxy file", MAX_PROXY_BYTES)
    return proxy_from_json(data, str(path))
