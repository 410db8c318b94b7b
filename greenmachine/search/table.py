"""``make search-table``: the search benchmark of the README, one ``greenmachine search`` per objective.

TSS / CIFAR-10, cost = training energy, budget 1000 distinct architectures, seeds 0-4, for the oracle (the
benchmark's accuracy, reference only), random search (the same budget drawn uniformly, its front read off the
truth: what sampling alone gives), #params, synflow, NASWOT and the evolved proxy of the README. Each row is the
exact command printed in the table's footnote, run into ``<runs>/<row>`` (a stopped row resumes); the markdown
table is rebuilt from the rows' ``summary.json`` files, so it shows every row measured so far.

    python -m greenmachine.search.table --runs runs/search-table --out results/search-table.md [--only oracle,params]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from greenmachine.files import write_text_atomic

README_PROXY = Path(__file__).resolve().parents[2] / "configs" / "readme-proxy.json"


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    objective: str
    algorithm: str = "nsga2"


ROWS = (  # cheapest first: a stopped table has the cheap rows
    Row("oracle", "oracle (benchmark accuracy; reference only)", "accuracy"),
    Row("random", "random search (uniform sample, front read off the truth)", "accuracy", "random"),
    Row("params", "#params", "params"),
    Row("synflow", "synflow", "synflow"),
    Row("naswot", "NASWOT", "naswot"),
    Row("proxy", "evolved proxy (README, seed 0)", str(README_PROXY)),
)


def command(row: Row, out: Path, budget: int, seeds: str, space: str, dataset: str, cost: str) -> list[str]:
    args = [sys.executable, "-m", "greenmachine", "search", "--space", space, "--dataset", dataset,
            "--objective", row.objective, "--cost", cost, "--algorithm", row.algorithm, "--budget", str(budget),
            "--seeds", seeds, "--out", str(out), "--quiet"]
    if (out / "summary.json").is_file() or any(out.glob("seed-*/checkpoint.json")):
        args.append("--resume")
    return args


def _pm(mean, std, fmt="{:.3f}") -> str:
    if mean is None:
        return "–"
    return fmt.format(mean) + (" ± " + fmt.format(std) if std is not None else "")


def _summary(runs: Path, also: Path | None, row: Row) -> tuple[dict | None, bool]:
    """A row's summary.json from ``runs``, else from ``also`` (rows measured elsewhere, marked in the table)."""
    for base, elsewhere in ((runs, False), (also, True)):
        if base is not None and (base / row.name / "summary.json").is_file():
            return json.loads((base / row.name / "summary.json").read_text()), elsewhere
    return None, False


def table(runs: Path, rows=ROWS, budget: int = 1000, seeds: str = "0-4", also: Path | None = None,
          also_note: str = "") -> str:
    lines = [
        "| objective | algorithm | hv_ratio (mean ± std) | knee accuracy (%) | knee training energy (kWh) | "
        "cost saved at knee | search energy | training the found front (kWh) | seeds | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    marked = False
    ref = None
    for row in rows:
        s, elsewhere = _summary(runs, also, row)
        if s is None:
            continue
        ref = ref or s
        marked = marked or elsewhere
        m, sd = s["mean"], s["std"]
        per = s["per_seed"]
        joules = [r.get("joules") for r in per if r.get("joules") is not None]
        blocks = s.get("energy") or []
        source = blocks[0].get("source") if blocks else None
        est = bool(blocks and blocks[0].get("estimated"))
        total = sum(joules)
        energy = (f"{total / 1e3:.1f} kJ" if total >= 1e3 else f"{total:.1f} J") if joules else "–"
        if joules and source:
            energy += " (estimated: CPU time x W/core)" if est and source == "estimate" else f" ({source})"
        lines.append(
            f"| {row.label}{' †' if elsewhere else ''} | {row.algorithm} | {_pm(m['hv_ratio'], sd['hv_ratio'])} | "
            f"{_pm(m['knee_accuracy'], sd['knee_accuracy'], '{:.2f}')} | {_pm(m['knee_cost'], sd['knee_cost'], '{:.4f}')} | "
            f"{_pm(m['cost_saved_at_knee_fraction'], None, '{:.0%}')} | {energy} | "
            f"{_pm(m['front_true_cost'], sd['front_true_cost'], '{:.2f}')} | {len(per)} | "
            f"{sum(r['seconds'] for r in per):.0f} |")
    footer = ["", f"TSS / CIFAR-10, cost = training energy, budget {budget} distinct architectures, seeds {seeds}. "
                  "hv convention: maximise accuracy (%), minimise log10(training kWh); reference point = (median "
                  "accuracy of the space, worst log10 cost of the space)"
              + (f" = ({ref['reference_point']['accuracy']:.3f} %, {ref['reference_point']['log10_cost']:.4f}); "
                 f"true front hv = {ref['hv_true']:.4f}." if ref else ".")]
    footer.append("Rows: `python -m greenmachine.search.table` runs "
                  "`greenmachine search --space tss --dataset cifar10 --objective <objective> --cost train-energy "
                  f"--algorithm <algorithm> --budget {budget} --seeds {seeds} --out <runs>/<row>`.")
    if marked:
        footer.append(f"† measured in {also}" + (f": {also_note}" if also_note else "") + ".")
    return "\n".join(lines + footer) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/search-table"))
    ap.add_argument("--out", type=Path, default=Path("results/search-table.md"))
    ap.add_argument("--only", default=None, help="comma-separated row names: " + ",".join(r.name for r in ROWS))
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--space", default="tss")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--cost", default="train-energy")
    ap.add_argument("--table-only", action="store_true", help="rebuild the table from what has run")
    ap.add_argument("--also", type=Path, default=None,
                    help="another runs folder for rows missing from --runs (measured elsewhere; marked with †)")
    ap.add_argument("--also-note", default="", help="what the † rows' machine was")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else [r.name for r in ROWS]
    unknown = set(names) - {r.name for r in ROWS}
    if unknown:
        print(f"error: unknown row(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    rows = [r for r in ROWS if r.name in names]
    if not args.table_only:
        for row in rows:
            out = args.runs / row.name
            cmd = command(row, out, args.budget, args.seeds, args.space, args.dataset, args.cost)
            print(f"[{time.strftime('%H:%M:%S')}] {row.name}: {' '.join(cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            res = subprocess.run(cmd)
            print(f"[{time.strftime('%H:%M:%S')}] {row.name}: exit {res.returncode} after "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            if res.returncode != 0:
                return res.returncode
            write_text_atomic(args.out, table(args.runs, ROWS, args.budget, args.seeds, args.also, args.also_note))
    text = table(args.runs, ROWS, args.budget, args.seeds, args.also, args.also_note)
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
