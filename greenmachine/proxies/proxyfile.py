"""proxy.json: an evolved proxy as shareable data.

The tree is stored twice: as a readable expression and as the list of primitive names in prefix order, which
reloads exactly. Loading checks every name and type against the primitive set and never evaluates Python.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from greenmachine.errors import GreenmachineError
from greenmachine.files import write_text_atomic
from greenmachine.proxies.primitives import check_tokens, parse_expression, tree_expression
from greenmachine.spaces import space_names

FORMAT = "greenmachine-proxy"
FORMAT_VERSION = 1


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
    probe: dict[str, Any] = field(default_factory=dict)  # batch_size, batch_seed, init_seed
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
    if data.get("format_version") != FORMAT_VERSION:
        raise GreenmachineError(f"{origin} has proxy format version {data.get('format_version')!r}; expected {FORMAT_VERSION}")
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
    indices = data.get("sample_indices") or []
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise GreenmachineError(f"{origin}: sample_indices must be a list of integers")
    probe = data.get("probe") or {}
    if not isinstance(probe, dict) or not all(
        isinstance(probe.get(k, 0), int) and not isinstance(probe.get(k, 0), bool) for k in ("batch_size", "batch_seed", "init_seed")
    ):
        raise GreenmachineError(f"{origin}: probe must hold integer batch_size, batch_seed and init_seed")
    fitness = (data.get("fitness") or {}).get("kendall_tau") if isinstance(data.get("fitness"), dict) else None
    return Proxy(
        tokens=list(tokens),
        space=space,
        dataset=data.get("dataset"),
        fitness=fitness if isinstance(fitness, (int, float)) else None,
        sampling=data.get("sampling"),
        sample_indices=list(indices),
        seed=data.get("seed") if isinstance(data.get("seed"), int) else None,
        probe=dict(probe),
        config=data.get("config") if isinstance(data.get("config"), dict) else {},
    )


def load_proxy(path: str | Path) -> Proxy:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GreenmachineError(f"proxy file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GreenmachineError(f"cannot read proxy file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GreenmachineError(f"{path} is not valid JSON: {exc}") from None
    return proxy_from_json(data, str(path))
