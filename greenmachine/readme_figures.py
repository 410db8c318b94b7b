"""Regenerate every measured figure of the README by running the commands it quotes (``make readme-figures``).

Why: figures typed into a README drift from the code that produced them (a new tie-break, a faster probe, a
heavier test suite) and nobody notices until a new user gets other numbers. Here each figure comes from one run of
the command the README shows, parsed from that command's own output, and written between marker comments::

    <!-- figures:NAME -->
    ... generated, overwritten on every run ...
    <!-- /figures:NAME -->

Every block states when and on what machine it was measured (CPU model, cores, memory) and the load average just
before its run, so a reader can tell an idle measurement from one taken on a busy machine.

The commands run as a new user would type them, in a scratch folder (``--work``, default
``runs/readme-figures``) so that ``--out runs/demo`` lands there and nothing of the user's ``runs/`` is touched,
with a fresh probe cache (the README's timings are cold-cache timings). What every step printed and measured is
kept in ``<work>/figures.json``; ``--from-record`` renders the README again from such a file without running
anything. Steps: ``evolve`` and ``score`` (the quick start), ``bench`` (``make bench``), ``energy`` (the Energy
section's metered example), ``tests`` (``make test``), ``baselines`` (the comparison table, the longest: about 40
minutes on 2 cores).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from greenmachine.errors import GreenmachineError
from greenmachine.probing.memory import meminfo_bytes

ROOT = Path(__file__).resolve().parents[1]
#: The 1-minute load average below which the machine counts as idle (stated in every block).
IDLE_LOAD = 0.3
STEPS = ("evolve", "score", "evolve-sss", "bench", "energy", "tests", "baselines")

# The commands exactly as the README quotes them (``gm`` is ``.venv/bin/greenmachine``).
EVOLVE = ["gm", "evolve", "--space", "tss", "--dataset", "cifar10", "--out", "runs/demo"]
# The SSS default-sized run (issue 12: within 15 minutes on a 2-core CPU); the scratch cache holds no SSS network.
EVOLVE_SSS = ["gm", "evolve", "--space", "sss", "--dataset", "cifar10", "--out", "runs/demo-sss"]
SCORE = ["gm", "score", "runs/demo/proxy.json", "--sample-size", "500", "--exclude-evolution-sample",
         "--out", "runs/demo/scores.csv"]
BASELINES = ["gm", "baselines", "--space", "tss", "--dataset", "cifar10", "--sample-size", "500", "--sampling",
             "random", "--seed", "1", "--include", "runs/demo/proxy.json", "--exclude-evolution-sample",
             "--batch-size", "64", "--out", "runs/demo/baselines.csv"]
BENCH = ["make", "bench"]
# The Energy section's example: a hand-written NASWOT proxy scored on 50 networks, nothing cached, one thread.
ENERGY_PROXY = {"format": "greenmachine-proxy", "format_version": 1, "expression": "k_logdet_sum(relu_kernel)",
                "space": "tss", "dataset": "cifar10"}
ENERGY = ["gm", "score", "naswot.json", "--sample-size", "50", "--no-cache", "--out", "scores.csv"]
TESTS = ["make", "test"]
QUOTED = {"evolve": EVOLVE, "score": SCORE, "evolve-sss": EVOLVE_SSS, "baselines": BASELINES, "bench": BENCH,
          "energy": ENERGY, "tests": TESTS}


# --- the machine --------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What a reader needs to compare timings: CPU model, cores (all and usable), memory, software versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total = meminfo_bytes("MemTotal")
    mem_gb = None if total is None else total / 1024**3
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": mem_gb,
            "python": platform.python_version(), "threads": os.environ.get("GREENMACHINE_THREADS")}


def load_average() -> tuple[float, float, float] | None:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def wait_for_idle(minutes: float, poll_seconds: float = 15.0, sleep=time.sleep, clock=time.monotonic) -> bool:
    """Wait up to ``minutes`` for the 1-minute load average to fall below :data:`IDLE_LOAD`; True if it did.
    The run goes ahead either way: the blocks state the load they were measured under."""
    deadline = clock() + minutes * 60
    while True:
        load = load_average()
        if load is None or load[0] < IDLE_LOAD:
            return load is not None
        if clock() >= deadline:
            return False
        sleep(poll_seconds)


# --- running one command ------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One command's run: what it printed, how long it took and its peak resident memory (with its children)."""

    command: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_gb: float
    stdout: str
    stderr_tail: str
    started: str
    load_before: tuple[float, float, float] | None
    extra: dict[str, Any] = field(default_factory=dict)


# Forks the command from a bare interpreter and reports its ``wait4`` rusage. Why not wait4 on our own child: Linux
# records the old address space's high-water RSS at exec, and a child forked (or vforked) from this process starts
# with ours, so its ru_maxrss would be at least our own peak. A child of this launcher starts from the launcher's few
# MB (``-I -S``: no site packages), the floor of every figure. ru_maxrss covers the descendants the command waited
# for (``make`` -> python), not the largest of them summed.
_LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(command: list[str], argv: list[str], cwd: Path, env: dict[str, str]) -> Measured:
    """Run ``argv`` (``command`` is how the README writes it): its exit code, wall time and peak RSS (see above)."""
    load = load_average()
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out_path, err_path, usage_path = cwd / ".figures-stdout", cwd / ".figures-stderr", cwd / ".figures-usage"
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(usage_path), *argv], cwd=cwd,
                       env=env or None, stdout=out, stderr=err, check=False)
    wall = time.perf_counter() - t0
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    try:
        code, maxrss_kb = (int(x) for x in usage_path.read_text().split())
    except (OSError, ValueError):
        raise GreenmachineError(f"could not run {' '.join(argv)[:200]}: {stderr.strip()[-300:]}") from None
    for path in (out_path, err_path, usage_path):
        path.unlink()
    return Measured(command, code, round(wall, 1), round(maxrss_kb / 1024**2, 2), stdout, stderr[-4000:], started,
                    load)


# --- parsing what the commands print --------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_key_values(text: str) -> dict[str, Any]:
    """``key=value`` lines as greenmachine prints them; ``name k=v k=v`` becomes ``name.k``. Numbers become floats."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or "=" not in line:
            continue
        head = line.split(None, 1)[0]
        prefix = "" if "=" in head else head + "."
        body = line if not prefix else line[len(head):]
        if not prefix and "=" in head and head.split("=", 1)[0] in ("best_expression", "proxy", "csv", "figure"):
            key, value = line.split("=", 1)  # free text: the whole rest of the line
            out[key] = value.strip()
            continue
        for key, value in re.findall(r"(\w+)=(\S+)", body):
            try:
                out[prefix + key] = float(value) if re.fullmatch(_NUM, value) else value
            except ValueError:
                out[prefix + key] = value
    return out


def parse_probe_log(text: str) -> dict[str, float]:
    """The probing line of ``evolve.log``: ``probed in 186.0 s; terminals take 2100.0 MB``."""
    m = re.search(rf"probed in ({_NUM}) s; terminals take ({_NUM}) MB", text)
    return {"probe_seconds": float(m.group(1)), "terminals_mb": float(m.group(2))} if m else {}


def parse_pytest_summary(text: str) -> dict[str, Any]:
    """The last pytest line: ``231 passed, 2 deselected in 98.12s (0:01:38)``; counts per outcome, seconds."""
    lines = [line for line in text.splitlines() if re.search(r"\b(passed|failed|error)", line) and " in " in line]
    if not lines:
        return {}
    last = lines[-1].strip("= ")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed)", last)}
    seconds = re.search(rf" in ({_NUM})s", last)
    return {"counts": counts, "seconds": float(seconds.group(1)) if seconds else None}


# --- rendering -----------------------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """``275`` -> ``4 min 35 s``."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m} min" if h else f"{m} min {s} s"


def readme_command(command: list[str]) -> str:
    return " ".join(".venv/bin/greenmachine" if c == "gm" else c for c in command)


def provenance(run: dict[str, Any], record: dict[str, Any]) -> str:
    """The line under each block: when, on what, and how busy the machine was just before the figures run began
    (not before this step: the load of a step run just before would count as busy)."""
    info = record["machine"]
    load = record.get("load_before")
    cores = info.get("usable_cores") or info.get("cores")
    mem = f", {info['memory_gb']:.0f} GB" if info.get("memory_gb") else ""
    threads = f", GREENMACHINE_THREADS={info['threads']}" if info.get("threads") else ""
    if load is None:
        state = "load average unknown"
    else:
        idle = "idle" if load[0] < IDLE_LOAD else "NOT idle"
        state = f"load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min): {idle}"
    return (f"_Measured {run.get('started', '?')} on {info.get('cpu', '?')}, {cores} cores{mem}, "
            f"Python {info.get('python', '?')}{threads}; {state} (idle means a 1-minute load below {IDLE_LOAD})._")


def _f(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _evolve_rows(evolve: dict[str, Any]) -> list[str]:
    """The two table rows of a default evolution: its cost from a cold probe cache, and its fitness."""
    p = evolve["extra"]
    probing = f" (probing {duration(p.get('probe_seconds'))})" if p.get("probe_seconds") is not None else ""
    terminals = f", terminals {p['terminals_mb'] / 1000:.1f} GB" if p.get("terminals_mb") is not None else ""
    sample = (" ".join(str(x) for x in (p["sample_size"], p.get("sampling"), "archs") if x)
              if p.get("sample_size") else "evolution sample")
    return [f"| default evolution, cold probe cache | `{readme_command(evolve['command'])}` | "
            f"{duration(evolve['wall_seconds'])} wall{probing}, {evolve['peak_rss_gb']:.1f} GB peak RSS{terminals} |",
            f"| its fitness ({sample}) | same | Kendall tau {_f(p.get('best_kendall_tau'), 4)} |"]


def render_default_run(record: dict[str, Any]) -> str | None:
    evolve, score = record["runs"].get("evolve"), record["runs"].get("score")
    if not evolve and not score:
        return None
    rows = ["| what | command | result |", "|---|---|---|"]
    if evolve:
        rows += _evolve_rows(evolve)
    if score:
        s = score["extra"]
        rows.append(f"| held-out score ({s.get('architectures', 500):.0f} random archs, disjoint) | "
                    f"`{readme_command(score['command'])}` | **Kendall tau {_f(s.get('kendall_tau'))}**, "
                    f"Spearman rho {_f(s.get('spearman_rho'))} ({duration(score['wall_seconds'])}, "
                    f"{score['peak_rss_gb']:.1f} GB peak) |")
    for label, run in (("evolution", evolve), ("held-out score", score)):
        e = run["extra"] if run else {}
        if e.get("energy_joules") is not None:
            rows.append(f"| energy of the {label}, as its summary states | same | {e['energy_joules']:.0f} J "
                        f"(source: {e.get('source', '?')}) |")
    text = "\n".join(rows)
    if evolve and evolve["extra"].get("best_expression"):
        text += f"\n\nThe proxy evolved with seed 0 (`runs/demo/proxy.json`):\n\n```\n{evolve['extra']['best_expression']}\n```"
    first = evolve or score
    return text + "\n\n" + provenance(first, record)


def render_sss_default_run(record: dict[str, Any]) -> str | None:
    evolve = record["runs"].get("evolve-sss")
    if not evolve:
        return None
    text = "\n".join(["| what | command | result |", "|---|---|---|", *_evolve_rows(evolve)])
    e = evolve["extra"]
    if e.get("energy_joules") is not None:
        text += f"\n| energy of the evolution, as its summary states | same | {e['energy_joules']:.0f} J " \
                f"(source: {e.get('source', '?')}) |"
    if e.get("best_expression"):
        text += f"\n\nIts proxy (`runs/demo-sss/proxy.json`):\n\n```\n{e['best_expression']}\n```"
    return text + "\n\n" + provenance(evolve, record)


def bench_sections(stdout: str) -> dict[str, dict[str, Any]]:
    """``make bench`` runs greenmachine.bench once per space; each run starts with its ``device=... space=...``
    line. The key=value lines of each run, by space (``_head`` holds that first line)."""
    out: dict[str, dict[str, Any]] = {}
    current: list[str] = []
    for line in stdout.splitlines() + ["device=__end__"]:
        if line.startswith("device=") and current:
            kv = parse_key_values("\n".join(current))
            out[str(kv.get("space", f"run{len(out) + 1}"))] = {**kv, "_head": current[0]}
            current = []
        if line.startswith("device=") or current:
            current.append(line)
    return out


def render_bench(record: dict[str, Any]) -> str | None:
    bench = record["runs"].get("bench")
    if not bench:
        return None
    b = bench["extra"]
    spaces: dict[str, dict[str, Any]] = b.get("spaces") or {str(b.get("space", "tss")): b}
    names = list(spaces)
    rows = ["| quantity | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, key: str, fmt) -> None:
        if any(key in spaces[n] for n in names):
            rows.append(f"| {label} | " + " | ".join(fmt(spaces[n]) if key in spaces[n] else "" for n in names) + " |")

    row("probe seconds per network (all passes)", "probe_seconds_per_network.mean",
        lambda v: f"mean {_f(v['probe_seconds_per_network.mean'])}, median {_f(v.get('probe_seconds_per_network.median'))}, "
                  f"max {_f(v.get('probe_seconds_per_network.max'))}")
    row("plain train-mode forward+backward, same networks", "forward_backward_seconds_per_network.mean",
        lambda v: f"mean {_f(v['forward_backward_seconds_per_network.mean'])} s")
    row("probe / forward+backward", "probe_to_forward_backward_ratio",
        lambda v: _f(v["probe_to_forward_backward_ratio"], 2))
    row("probe energy per network (as `make bench` meters it)", "probe_joules_per_network.mean",
        lambda v: f"mean {_f(v['probe_joules_per_network.mean'], 2)} J, max {_f(v.get('probe_joules_per_network.max'), 2)} J")
    row("probe size per network", "probe_megabytes_per_network.mean",
        lambda v: f"mean {_f(v['probe_megabytes_per_network.mean'], 1)} MB, max {_f(v.get('probe_megabytes_per_network.max'), 1)} MB")
    row("tree evaluations per second (random trees, no memo)", "tree_evaluations_per_second",
        lambda v: _f(v["tree_evaluations_per_second"], 1))
    heads = [spaces[n].get("_head", "") for n in names if spaces[n].get("_head")]
    settings = "Settings: " + "; ".join(f"`{h}`" for h in heads) + "." if heads else ""
    return "\n".join(rows) + (f"\n\n{settings}" if settings else "") + "\n\n" + provenance(bench, record)


def render_tests(record: dict[str, Any]) -> str | None:
    tests = record["runs"].get("tests")
    if not tests:
        return None
    t = tests["extra"]
    counts = ", ".join(f"{n} {k}" for k, n in t.get("counts", {}).items()) or "no summary line"
    state = "passed" if tests["returncode"] == 0 else f"FAILED (exit {tests['returncode']})"
    return (f"`make test` {state}: {counts} in {duration(tests['wall_seconds'])} wall "
            f"(pytest's own count: {duration(t.get('seconds'))}); `make test-slow` runs the deselected ones.\n\n"
            + provenance(tests, record))


def render_baselines(record: dict[str, Any]) -> str | None:
    run = record["runs"].get("baselines")
    if not run or not run["extra"].get("proxies"):
        return None
    total = run["extra"].get("architectures")
    rows = [f"`{readme_command(run['command'])}`", "",
            f"({duration(run['wall_seconds'])} wall, {run['peak_rss_gb']:.1f} GB peak.)", "",
            "| proxy | kind | Kendall tau | Spearman rho | networks with a finite score | s / network |",
            "|---|---|---|---|---|---|"]
    for p in run["extra"]["proxies"]:
        tau = _f(p.get("kendall_tau"))
        rows.append(f"| {p['name']} | {p['kind']} | {'**' + tau + '**' if p['kind'] == 'evolved' else tau} | "
                    f"{_f(p.get('spearman_rho'))} | {p.get('valid', '—')} / {total} | "
                    f"{_f(p.get('seconds_per_network'))} |")
    return "\n".join(rows) + "\n\n" + provenance(run, record)


def render_energy(record: dict[str, Any]) -> str | None:
    run = record["runs"].get("energy")
    if not run:
        return None
    line = next((x for x in run["stdout"].splitlines() if x.startswith("energy:")), None)
    if line is None:
        return None
    block = run["extra"].get("energy") or {}
    per = block.get("per_network_j")
    meter = block.get("meter") or {}
    details = [f"{per:.1f} J per network probed" if per is not None else None,
               f"source `{block['source']}`" if block.get("source") else None,
               f"{meter['cpu_seconds']:.0f} s of CPU time x {meter['cpu_watts_per_core']:g} W"
               if block.get("source") == "estimate" and meter.get("cpu_seconds") is not None
               and meter.get("cpu_watts_per_core") is not None else None,
               f"training: {block['training_method']}" if block.get("training_method") else None]
    return ("```bash\n"
            f"echo '{json.dumps(ENERGY_PROXY)}' > naswot.json\n"
            f"GREENMACHINE_THREADS=1 {readme_command(run['command'])}\n"
            "```\n\n"
            f"```\n{line}\n```\n\n"
            f"({'; '.join(d for d in details if d)}.)\n\n" + provenance(run, record))


RENDERERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "default-run": render_default_run,
    "sss-default-run": render_sss_default_run,
    "bench": render_bench,
    "energy": render_energy,
    "tests": render_tests,
    "baselines": render_baselines,
}


# --- rewriting the README -----------------------------------------------------------------------------------------


# A marker is a line of its own, so that prose can mention `<!-- figures:NAME -->` without being one.
def block_pattern(name: str) -> re.Pattern:
    n = re.escape(name)
    return re.compile(rf"(^<!-- figures:{n} -->\n)(.*?)(^<!-- /figures:{n} -->$)", re.S | re.M)


def _count_lines(text: str, line: str) -> int:
    return len(re.findall(rf"^{re.escape(line)}$", text, re.M))


def replace_block(text: str, name: str, content: str) -> str:
    """Put ``content`` between the marker lines of block ``name``; each must be there exactly once."""
    opens = _count_lines(text, f"<!-- figures:{name} -->")
    closes = _count_lines(text, f"<!-- /figures:{name} -->")
    if opens != 1 or closes != 1:
        raise GreenmachineError(f"the README must hold exactly one '<!-- figures:{name} -->' and one "
                                f"'<!-- /figures:{name} -->' (found {opens} and {closes})")
    pattern = block_pattern(name)
    if not pattern.search(text):
        raise GreenmachineError(f"README block {name}: its closing marker comes before its opening one")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(3), text, count=1)


def block_names(text: str) -> list[str]:
    return re.findall(r"^<!-- figures:([\w.-]+) -->$", text, re.M)


def rewrite_readme(text: str, record: dict[str, Any]) -> tuple[str, list[str]]:
    """Every block the record has figures for is regenerated; blocks it has nothing for are left as they are."""
    done = []
    for name in block_names(text):
        renderer = RENDERERS.get(name)
        if renderer is None:
            raise GreenmachineError(f"the README has a block figures:{name} that nothing generates "
                                    f"(known: {', '.join(RENDERERS)})")
        content = renderer(record)
        if content is not None:
            text = replace_block(text, name, content)
            done.append(name)
    return text, done


# --- the steps ----------------------------------------------------------------------------------------------------


def _gm_argv(command: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("greenmachine")
    head = [str(exe)] if exe.is_file() else [sys.executable, "-m", "greenmachine"]
    return [*head, *command[1:]] if command[0] == "gm" else list(command)


def run_step(name: str, work: Path, env: dict[str, str]) -> Measured:
    """One step; ``make`` runs with ``-o .venv/.installed`` so that a README run never reinstalls the venv it
    measures (``make readme-figures`` itself depends on ``install``)."""
    if name in ("evolve", "evolve-sss"):
        command = QUOTED[name]
        run = run_measured(command, _gm_argv(command), work, env)
        out = work / command[command.index("--out") + 1]
        log = out / "evolve.log"
        run.extra = {**parse_key_values(run.stdout), **parse_probe_log(log.read_text() if log.is_file() else "")}
        proxy = out / "proxy.json"
        if proxy.is_file():
            saved = json.loads(proxy.read_text())
            run.extra.update({k: saved.get(k) for k in ("sample_size", "sampling")})
    elif name == "score":
        run = run_measured(SCORE, _gm_argv(SCORE), work, env)
        run.extra = parse_key_values(run.stdout)
    elif name == "baselines":
        run = run_measured(BASELINES, _gm_argv(BASELINES), work, env)
        summary = work / "runs" / "demo" / "baselines.summary.json"
        run.extra = json.loads(summary.read_text()) if summary.is_file() else {}
    elif name == "bench":
        run = run_measured(BENCH, ["make", "--no-print-directory", "-o", ".venv/.installed", "-C", str(ROOT), "bench"], work, env)
        run.extra = {"spaces": bench_sections(run.stdout)}
    elif name == "energy":
        (work / "naswot.json").write_text(json.dumps(ENERGY_PROXY) + "\n")
        run = run_measured(ENERGY, _gm_argv(ENERGY), work, {**env, "GREENMACHINE_THREADS": "1"})
        summary = work / "scores.summary.json"
        run.extra = {**parse_key_values(run.stdout),
                     "energy": json.loads(summary.read_text()).get("energy") if summary.is_file() else None}
    elif name == "tests":
        run = run_measured(TESTS, ["make", "--no-print-directory", "-o", ".venv/.installed", "-C", str(ROOT), "test"], work, env)
        run.extra = parse_pytest_summary(run.stdout)
    else:
        raise GreenmachineError(f"unknown step {name!r}: choose from {', '.join(STEPS)}")
    return run


@click.command()
@click.option("--readme", type=click.Path(dir_okay=False), default=str(ROOT / "README.md"), show_default=True)
@click.option("--steps", default=",".join(STEPS), show_default=True,
              help="Comma- or space-separated steps to run; the others' blocks stay as they are.")
@click.option("--work", type=click.Path(file_okay=False), default=str(ROOT / "runs" / "readme-figures"),
              show_default=True, help="Scratch folder (emptied first): the commands run here, with a fresh cache.")
@click.option("--from-record", type=click.Path(dir_okay=False), default=None,
              help="Render the README from a saved figures.json instead of running anything.")
@click.option("--wait-idle", type=click.FloatRange(0), default=0.0, show_default=True, metavar="MINUTES",
              help=f"First wait up to this long for a 1-minute load average below {IDLE_LOAD}.")
def main(readme: str, steps: str, work: str, from_record: str | None, wait_idle: float) -> None:
    """Run the commands the README quotes and rewrite its figures between <!-- figures:NAME --> markers."""
    readme_path = Path(readme)
    if not readme_path.is_file():
        raise GreenmachineError(f"no README at {readme_path}")
    text = readme_path.read_text()
    if from_record:
        record = json.loads(Path(from_record).read_text())
    else:
        chosen = [s for s in re.split(r"[,\s]+", steps) if s]
        bad = [s for s in chosen if s not in STEPS]
        if bad:
            raise GreenmachineError(f"unknown step(s) {', '.join(bad)}: choose from {', '.join(STEPS)}")
        if "score" in chosen and "evolve" not in chosen or "baselines" in chosen and "evolve" not in chosen:
            raise GreenmachineError("score and baselines use the proxy that the evolve step makes: add evolve")
        for name in block_names(text):  # fail before hours of running, not after
            replace_block(text, name, "")
        work_dir = Path(work).resolve()
        marker = work_dir / ".readme-figures-work"
        if work_dir.exists() and any(work_dir.iterdir()) and not marker.is_file():
            raise GreenmachineError(f"--work {work_dir} holds files this script did not make: choose an empty folder")
        if work_dir.exists():
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True)
        marker.write_text("scratch folder of greenmachine.readme_figures: emptied on every run\n")
        env = {**os.environ, "GREENMACHINE_CACHE": str(work_dir / "cache")}
        if "GREENMACHINE_DATA" not in env:
            env["GREENMACHINE_DATA"] = str(ROOT.parent / "shared" / "data")
        if wait_idle and not wait_for_idle(wait_idle):
            click.echo(f"the machine is still busy after {wait_idle:g} min (load {load_average()}): measuring anyway; "
                       "the README will say so", err=True)
        record = {"machine": machine(), "load_before": load_average(), "runs": {}}
        click.echo(f"machine: {record['machine']}; load average {record['load_before']}", err=True)
        for name in [s for s in STEPS if s in chosen]:  # the README's order: evolve before score and baselines
            click.echo(f"{name}: {readme_command(QUOTED[name])}", err=True)
            run = run_step(name, work_dir, env)
            record["runs"][name] = asdict(run)
            (work_dir / "figures.json").write_text(json.dumps(record, indent=2) + "\n")
            click.echo(f"{name}: exit {run.returncode}, {duration(run.wall_seconds)}, {run.peak_rss_gb:.2f} GB", err=True)
            if run.returncode != 0 and name != "tests":
                raise GreenmachineError(f"step {name} failed (exit {run.returncode}); its record is in "
                                        f"{work_dir / 'figures.json'}: {run.stderr_tail.strip().splitlines()[-1:]}")
    # read again: a run takes hours, and the README may have been edited meanwhile (only the blocks are ours)
    text = readme_path.read_text()
    new, done = rewrite_readme(text, record)
    if new != text:
        readme_path.write_text(new)
    click.echo(f"rewrote {', '.join(done) or 'nothing'} in {readme_path}")


def cli() -> None:
    try:
        main(standalone_mode=False)
    except GreenmachineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    cli()
