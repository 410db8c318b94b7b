"""Console behaviour a new user meets first: a fast ``--help``, progress lines where no terminal watches (a batch
job, ``nohup``, CI) that also reach the run's log, expressions printed whole, and errors that name their fix."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import click
import pytest
from rich.console import Console

from greenmachine.ui import Reporter, format_clock, format_rate

# --- start-up --------------------------------------------------------------------------------------------------

# Runs the CLI in a fresh interpreter and reports what it imported and the CPU seconds it took: CPU time, not wall
# time, so that a loaded machine does not make the check flaky (importing torch alone costs over a second of CPU).
PROBE = textwrap.dedent("""
    import json, sys, time
    t0 = time.process_time()
    from greenmachine.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    cpu = time.process_time() - t0
    heavy = sorted(m for m in ("torch", "numpy", "scipy", "deap", "matplotlib", "sklearn") if m in sys.modules)
    print("PROBE" + json.dumps({"code": code, "cpu": cpu, "heavy": heavy}))
""")


def _probe(*args: str) -> dict:
    env = {**os.environ, "GREENMACHINE_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("PROBE")]
    assert line, out.stdout + out.stderr
    return {**json.loads(line[-1][5:]), "stderr": out.stderr, "stdout": out.stdout}


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("args,code", [
    (["--help"], 0),
    (["evolve", "--help"], 0),
    (["score", "--help"], 0),
    (["evolve", "--space", "no-such-space"], 2),   # an argument error
    (["score"], 2),                                 # a missing argument
])
def test_help_and_argument_errors_do_not_import_torch(args, code):
    r = _probe(*args)
    assert r["code"] == code
    assert r["heavy"] == [], f"{args} imported {r['heavy']}"
    assert r["cpu"] < 0.6, f"{args} took {r['cpu']:.2f} s of CPU"
    if code == 2:
        lines = r["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")


HELP_ALL = textwrap.dedent("""
    import json, sys
    from greenmachine.cli import cli, main
    def walk(group, prefix=()):
        for name, cmd in group.commands.items():
            yield prefix + (name,)
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + (name,))
    paths = list(walk(cli))
    codes = {}
    for path in paths:
        try:
            main([*path, "--help"])
        except SystemExit as exc:
            codes[" ".join(path)] = exc.code
    heavy = sorted(m for m in ("torch", "numpy", "scipy", "deap", "matplotlib", "sklearn") if m in sys.modules)
    print("PROBE" + json.dumps({"codes": codes, "heavy": heavy}))
""")


def test_every_subcommand_help_is_light():
    """Each command and group (including ones added later) answers --help without torch."""
    out = subprocess.run([sys.executable, "-c", HELP_ALL], capture_output=True, text=True, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("PROBE")]
    assert line, out.stderr[-2000:]
    r = json.loads(line[-1][5:])
    assert len(r["codes"]) >= 6 and set(r["codes"].values()) == {0}, r["codes"]
    assert r["heavy"] == [], r["heavy"]


def test_every_command_applies_the_thread_setting(monkeypatch):
    """GREENMACHINE_THREADS reaches torch when a command runs (after its arguments parsed), for every command."""
    import torch

    from greenmachine.cli import _Command, _configures_torch, cli

    for path, cmd in _commands(cli):
        if not isinstance(cmd, click.Group):
            assert isinstance(cmd, _Command) or getattr(cmd.callback, "configures_torch", False), \
                f"{' '.join(path)} would not apply GREENMACHINE_THREADS"
    seen = {}
    built = _Command("probe", callback=lambda: seen.setdefault("built", torch.get_num_threads()))
    added = _configures_torch(click.Command("added", callback=lambda: seen.setdefault("added", torch.get_num_threads())))
    before = torch.get_num_threads()
    monkeypatch.setenv("GREENMACHINE_THREADS", "3")
    try:
        built.main([], standalone_mode=False)
        torch.set_num_threads(1)
        added.main([], standalone_mode=False)
    finally:
        torch.set_num_threads(before)
    assert seen == {"built": 3, "added": 3}


@pytest.mark.parametrize("value", ["abc", "0"])
def test_a_bad_thread_setting_is_one_line(value, tmp_path, capsys, monkeypatch):
    from greenmachine.cli import main

    monkeypatch.setenv("GREENMACHINE_THREADS", value)
    with pytest.raises(SystemExit) as exc:
        main(["report", "--out", str(tmp_path / "t.md")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "GREENMACHINE_THREADS" in err[0] and err[0].startswith("error: ")


# --- plain progress --------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_n_items_with_rate_and_eta():
    stream, clock = io.StringIO(), FakeClock()
    reporter = Reporter(stream=stream, every=4, seconds=1e9, clock=clock)
    with reporter.session():
        for _ in reporter.track(range(10), 10, "probing networks"):
            clock.now += 2.0  # two seconds a network
    lines = stream.getvalue().splitlines()
    assert lines[0] == "probing networks: 0/10 started"
    assert lines[1] == "probing networks: 4/10 (40%), 2.00 s each, elapsed 0:08, ETA 0:12"
    assert lines[2] == "probing networks: 8/10 (80%), 2.00 s each, elapsed 0:16, ETA 0:04"
    assert lines[3] == "probing networks: 10/10 (100%), 2.00 s each, elapsed 0:20, done"
    assert len(lines) == 4


def test_plain_lines_every_m_seconds_and_the_default_cadence():
    stream, clock = io.StringIO(), FakeClock()
    reporter = Reporter(stream=stream, seconds=30, clock=clock)  # default every: a tenth of the work (100)
    advance = reporter.task("probing networks", 1000)
    for i in range(1000):
        clock.now += 0.25 if i < 200 else 0.01
        advance()
    lines = stream.getvalue().splitlines()[1:]
    # 0.25 s an item: the 100-item mark (25 s) comes before 30 s have passed, and so does the 200-item one
    done = [int(line.split(":")[1].split("/")[0]) for line in lines]
    assert done == [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    assert "4.00/s" in lines[0] and "ETA 3:45" in lines[0]  # 900 left at 4 a second
    clock2, stream2 = FakeClock(), io.StringIO()
    slow = Reporter(stream=stream2, every=1000, seconds=30, clock=clock2).task("evolving", 5)
    for _ in range(5):
        clock2.now += 31
        slow("best tau 0.500")
    lines2 = stream2.getvalue().splitlines()
    assert len(lines2) == 6 and lines2[1].endswith("31.00 s each, elapsed 0:31, ETA 2:04, best tau 0.500")
    assert format_clock(3723) == "1:02:03" and format_rate(0, 5.0) == "rate unknown"


def test_a_resumed_task_counts_done_work_but_not_in_the_rate():
    stream, clock = io.StringIO(), FakeClock()
    advance = Reporter(stream=stream, every=1, clock=clock).task("evolving", 10, completed=6)
    clock.now += 10
    advance()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "evolving: 6/10 (resumed) started"
    assert lines[1] == "evolving: 7/10 (70%), 10.00 s each, elapsed 0:10, ETA 0:30"


def test_non_terminal_stderr_gets_plain_lines_by_default(capsys):
    """No stream given: under pytest's capture stderr is not a terminal, exactly as under nohup or CI."""
    reporter = Reporter()
    with reporter.session():
        for _ in reporter.track(range(3), 3, "reading records"):
            pass
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "reading records: 0/3 started" and err[-1].startswith("reading records: 3/3 (100%)")


def test_a_terminal_gets_a_bar_and_no_plain_lines(monkeypatch):
    import greenmachine.ui as ui

    screen = io.StringIO()
    monkeypatch.setattr(ui, "err_console", Console(file=screen, force_terminal=True, width=100))
    reporter = Reporter()
    with reporter.session():
        for _ in reporter.track(range(3), 3, "probing networks"):
            pass
    text = screen.getvalue()
    assert "probing networks" in text and "3/3" in text and "started" not in text


def test_the_log_gets_the_same_lines_quiet_or_not():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("greenmachine.test_ui.run")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(Keep())
    stream, clock = io.StringIO(), FakeClock()
    loud = Reporter(stream=stream, every=2, clock=clock, log=log)
    for _ in loud.track(range(4), 4, "probing networks"):
        clock.now += 1
    assert records == stream.getvalue().splitlines() and len(records) == 3
    records.clear()
    quiet = Reporter(quiet=True, stream=(silent := io.StringIO()), every=2, clock=clock)
    with quiet.logging_to(log):
        for _ in quiet.track(range(4), 4, "probing networks"):
            clock.now += 1
    assert silent.getvalue() == "" and len(records) == 3 and records[-1].startswith("probing networks: 4/4")
    for _ in quiet.track(range(4), 4, "after the run"):  # detached: nothing more reaches the closed log
        pass
    assert len(records) == 3
    assert Reporter(quiet=True).task("nothing watches", 5) is not None  # a no-op advance, no output


# --- expressions and the missing-truth error ----------------------------------------------------------------------

LONG = ("mul(log(w_mean_layers(w_std(synflow_grad))), a_sum_layers(e_min(corr_eig_very_long_terminal_name_x))) ")


def test_the_summary_table_never_wraps_inside_a_name():
    from types import SimpleNamespace

    from greenmachine.config import EvolveConfig
    from greenmachine.report import evolution_summary

    expr = LONG.strip()
    result = SimpleNamespace(best_fitness=0.8, best_expression=expr, sample_indices=[1, 2], history=[],
                             probe_seconds=1.0, seconds=2.0, out_dir="runs/demo")
    for width in (60, 80, 200):
        screen = io.StringIO()
        Console(file=screen, width=width, soft_wrap=True).print(evolution_summary(EvolveConfig(), result))
        text = screen.getvalue()
        row = [line for line in text.splitlines() if "best proxy" in line]
        assert len(row) == 1
        cell = row[0].split("│")[2].strip()
        # either the whole expression or a visibly cut prefix of it, and nothing of it on the next line
        assert cell == expr or (cell.endswith("…") and expr.startswith(cell[:-1]))
        following = text.splitlines()[text.splitlines().index(row[0]) + 1]
        assert "corr_eig" not in following and "synflow" not in following


def test_missing_ground_truth_names_truth_export(tmp_path, capsys, data_dir):
    from greenmachine.cli import main

    (tmp_path / "nats").mkdir()
    (tmp_path / "images").symlink_to(data_dir / "images")
    with pytest.raises(SystemExit) as exc:
        main(["evolve", "--space", "sss", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert "greenmachine truth export --space sss" in err[0] and str(tmp_path / "nats" / "sss-hp90.csv") in err[0]
    assert not (tmp_path / "run").exists()


def test_evolve_without_a_terminal_prints_progress_lines_and_logs_them(tmp_path, env):
    """As under nohup or CI: stderr is a pipe. Plain progress lines appear there, and in evolve.log, during the run."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "greenmachine", "evolve", "--sample-size", "6", "--sampling", "random",
            "--population", "4", "--generations", "1", "--batch-size", "8", "--seed", "5", "--no-cache",
            "--out", str(out)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**env, "GREENMACHINE_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    err = run.stderr.splitlines()
    assert "probing networks: 0/6 started" in err
    done = [line for line in err if line.startswith("probing networks: 6/6 (100%)")]
    assert len(done) == 1 and (" each, elapsed " in done[0] or "/s, elapsed " in done[0]) and done[0].endswith("done")
    assert any(line.startswith("evolving: 2/2 (100%)") for line in err)
    assert not any("\r" in line or "\x1b[" in line for line in err)  # no bar redraws, no colour codes
    log = (out / "evolve.log").read_text()
    assert "probing networks: 6/6 (100%)" in log and "evolving: 2/2 (100%)" in log
    assert f"best_expression={json.loads((out / 'proxy.json').read_text())['expression']}" in run.stdout
