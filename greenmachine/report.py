"""Summaries: the end-of-run table, the score summary JSON, and the markdown table of the reproduction targets."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table
from rich.text import Text

from greenmachine.config import EvolveConfig
from greenmachine.energy.accounting import format_joules, format_kwh, sum_blocks, summary_line
from greenmachine.errors import GreenmachineError
from greenmachine.files import write_text_atomic

# Kendall tau of the published evolved proxies, on stratified samples of NATS-Bench (see the README).
PUBLISHED_TAU = {("tss", "cifar10"): 0.78, ("tss", "cifar100"): 0.71, ("sss", "cifar10"): 0.89, ("sss", "cifar100"): 0.77}


def evolution_summary(config: EvolveConfig, result, energy: dict | None = None) -> Table:
    datasets = " + ".join(config.datasets) or config.dataset  # a multi-dataset run names all of them
    table = Table(title=f"greenmachine evolve: {config.space} / {datasets}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    last = result.history[-1] if result.history else {}
    rows = [
        ("best Kendall tau (evolution sample)", f"{result.best_fitness:.4f}"),
        # never wrapped inside a name: cut with an ellipsis where too wide (the CLI prints it whole on its own line)
        ("best proxy", Text(result.best_expression, no_wrap=True, overflow="ellipsis")),
        ("sample", f"{len(result.sample_indices)} architectures, {config.sampling}, seed {config.seed}"
                   + (f", each probed under {config.inits} initialisations" if config.inits > 1 else "")),
        ("generations", f"{last.get('generation', 0)} (population {config.population})"),
        ("tree evaluations", str(sum(h["evaluations"] for h in result.history))),
        ("probe time", f"{result.probe_seconds:.1f} s"),
        ("total time", f"{result.seconds:.1f} s"),
        ("results", str(result.out_dir)),
    ]
    if energy is not None:
        rows.append(("energy", summary_line(energy)))
    for k, v in rows:
        table.add_row(k, v)
    return table


def comparison_table(result, title: str, energy: dict | None = None) -> Table:
    table = Table(title=title, caption=summary_line(energy) if energy is not None else None)
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


def write_score_summary(result, proxy_path, space: str, dataset: str, sampling: str, seed: int, path: Path,
                        energy: dict | None = None, extra: dict | None = None) -> None:
    """``scores.summary.json`` of a held-out score; ``extra`` adds fields a caller records beside them (make quality:
    which tree was scored, under which probe protocol), written in the same atomic write."""
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
    if energy is not None:
        summary["energy"] = energy
    summary.update(extra or {})
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


def find_energy_blocks(paths: list[Path]) -> list[tuple[Path, str, dict]]:
    """Every JSON file under ``paths`` (run folders, searched recursively, or JSON files) that holds an ``energy``
    block: its path, its name relative to the folder given (``run/proxy.json``), the block. A folder without any is an
    error, so that a typo does not sum to 0."""
    found: list[tuple[Path, str, dict]] = []
    for root in paths:
        if not root.exists():
            raise GreenmachineError(f"no such run folder or file: {root}")
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        shown = (lambda f: f.name) if root.is_file() else (lambda f: str(f.relative_to(root.parent)))
        blocks = []
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                if root.is_file():
                    raise GreenmachineError(f"{f} is not a readable JSON file") from None
                continue
            block = data.get("energy") if isinstance(data, dict) else None
            if isinstance(block, dict) and isinstance(block.get("joules"), (int, float)):
                blocks.append((f, shown(f), block))
        if not blocks:
            raise GreenmachineError(f"{root} holds no summary JSON with an energy block (proxy.json, "
                                    "*.summary.json written by evolve, score or baselines)")
        found.extend(blocks)
    return found


def energy_report_table(found: list[tuple[Path, str, dict]]) -> tuple[str, dict]:
    """One row per energy block (what each command spent, split into probing and the rest: GP, scoring, tree
    evaluation, loading), and a total row, as plain aligned text: a results table must not be cut or folded to
    the width of a terminal, nor change when piped. Estimated figures are marked ``*``."""
    header = ["file", "command", "source", "networks", "probing", "other", "total", "gCO2eq", "training them", "ratio"]
    rows = []
    for _, name, b in found:
        mark = "*" if b.get("estimated", True) else ""
        rows.append([name, str(b.get("command", "?")), f"{b.get('source', '?')}{mark}", f"{b.get('networks', 0):,}",
                     format_joules(float(b.get("probing_j") or 0.0)), format_joules(float(b.get("other_j") or 0.0)),
                     format_joules(float(b["joules"])), f"{float(b.get('co2eq_g') or 0.0):.3g}",
                     _avoided(b.get("training_kwh_avoided")), _ratio(b.get("training_kwh_avoided"), float(b["joules"]))])
    total = sum_blocks([b for _, _, b in found])
    rows.append(["total", "", "+".join(total["sources"]) + ("*" if total["estimated"] else ""),
                 f"{total['networks']:,}", format_joules(total["probing_j"]), format_joules(total["other_j"]),
                 format_joules(total["joules"]), f"{total['co2eq_g']:.3g}",
                 _avoided(total["training_kwh_avoided"]), _ratio(total["training_kwh_avoided"], total["joules"])])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows[:-1]),
           "  ".join("-" * w for w in widths), line(rows[-1]), "",
           "other = GP, tree evaluation, scoring, loading (everything outside the probing windows)"]
    if total["estimated"]:
        out.append("* estimated: CPU time x watts per core (no NVML or RAPL counter was readable)")
    return "\n".join(out) + "\n", total


def _avoided(k) -> str:
    return "unknown" if k is None else format_kwh(float(k))


def _ratio(k, joules: float) -> str:
    return "—" if k is None or joules <= 0 else f"1 : {float(k) * 3.6e6 / joules:,.0f}"
