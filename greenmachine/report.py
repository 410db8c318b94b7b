"""Summaries: the end-of-run table, the score summary JSON, and the markdown table of the reproduction targets."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.files import write_text_atomic

# Kendall tau of the published evolved proxies, on stratified samples of NATS-Bench (see the README).
PUBLISHED_TAU = {("tss", "cifar10"): 0.78, ("tss", "cifar100"): 0.71, ("sss", "cifar10"): 0.89, ("sss", "cifar100"): 0.77}


def evolution_summary(config: EvolveConfig, result) -> Table:
    table = Table(title=f"greenmachine evolve: {config.space} / {config.dataset}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    last = result.history[-1] if result.history else {}
    rows = [
        ("best Kendall tau (evolution sample)", f"{result.best_fitness:.4f}"),
        ("best proxy", result.best_expression),
        ("sample", f"{len(result.sample_indices)} architectures, {config.sampling}, seed {config.seed}"),
        ("generations", f"{last.get('generation', 0)} (population {config.population})"),
        ("tree evaluations", str(sum(h["evaluations"] for h in result.history))),
        ("probe time", f"{result.probe_seconds:.1f} s"),
        ("total time", f"{result.seconds:.1f} s"),
        ("results", str(result.out_dir)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def comparison_table(result, title: str) -> Table:
    table = Table(title=title)
    for col, just in (("proxy", "left"), ("kind", "left"), ("Kendall tau", "right"), ("Spearman rho", "right"),
                      ("valid", "right"), ("s / network", "right")):
        table.add_column(col, justify=just)
    for s in result.ranked():
        table.add_row(s.name, s.kind, _fmt(s.kendall_tau), _fmt(s.spearman_rho), str(s.valid),
                      f"{s.seconds_per_network:.3f}")
    return table


def summary_path(csv_path: str | Path) -> Path:
    """Where the summary of a scores CSV goes: ``scores.csv`` -> ``scores.summary.json``."""
    p = Path(csv_path)
    return p.with_name(p.stem + ".summary.json")


def write_score_summary(result, proxy_path, space: str, dataset: str, sampling: str, seed: int, path: Path) -> None:
    summary = {
        "proxy": str(proxy_path),
        "space": space,
        "dataset": dataset,
        "sampling": sampling,
        "seed": seed,
        "architectures": len(result.indices),
        "kendall_tau": result.kendall_tau,
        "spearman_rho": result.spearman_rho,
        "probe_seconds": result.probe_seconds,
        "seconds": result.seconds,
    }
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def reproduction_table(run_dirs: list[Path]) -> str:
    """One row per run folder that holds proxy.json and scores.summary.json (made by the Makefile targets)."""
    lines = [
        "| space | dataset | sampling | evolution sample | fitness (evolution sample) | held-out archs | "
        "Kendall tau (held-out) | Spearman rho | published tau (stratified) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    baseline_lines: list[str] = []
    for run in run_dirs:
        proxy_file, score_file = run / "proxy.json", summary_path(run / "scores.csv")
        if not proxy_file.is_file() or not score_file.is_file():
            raise GreenmachineError(f"{run} lacks proxy.json or {score_file.name}: run its make target first")
        proxy = json.loads(proxy_file.read_text())
        scores = json.loads(score_file.read_text())
        space, dataset = proxy["space"], proxy["dataset"]
        lines.append(
            f"| {space} | {dataset} | {proxy['sampling']} | {proxy['sample_size']} | "
            f"{_fmt(proxy['fitness']['kendall_tau'])} | {scores['architectures']} | {_fmt(scores['kendall_tau'])} | "
            f"{_fmt(scores['spearman_rho'])} | {_fmt(PUBLISHED_TAU.get((space, dataset)))} |"
        )
        baselines = summary_path(run / "baselines.csv")
        if baselines.is_file():
            data = json.loads(baselines.read_text())
            rows = [p for p in data["proxies"] if p["kind"] == "baseline"]
            best = max(rows, key=lambda p: -2 if p["kendall_tau"] is None else p["kendall_tau"])
            baseline_lines.append(
                f"| {space} | {dataset} | {proxy['sampling']} | best baseline: {best['name']} | — | "
                f"{data['architectures']} | {_fmt(best['kendall_tau'])} | {_fmt(best['spearman_rho'])} | — |"
            )
    return "\n".join(lines + baseline_lines) + "\n"
