"""Results are never lost or overwritten (issue 6): one run per folder (a lock naming its holder), no new run
mixed into a folder with other files, and checkpoints validated before they are used (forged or damaged ones are
refused with one line, never replayed)."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys

import pytest

from greenmachine.config import EvolveConfig
from greenmachine.errors import GreenmachineError
from greenmachine.search.engine import CHECKPOINT, RunFolder
from greenmachine.search.proxy_gp import run_evolution

TINY = EvolveConfig(sample_size=12, population=10, generations=1, batch_size=16, max_height=6, init_max_depth=4,
                    strata=4, seed=7)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir, tss_truth, cache):
    """A finished tiny run, copied by each test that damages it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run_evolution(TINY, tss_truth, data_dir, out, cache=cache)
    return out


def test_second_run_into_a_locked_folder_fails_at_once(tmp_path, data_dir, tss_truth, cache):
    out = tmp_path / "busy"
    with RunFolder(out, resume=False):
        with pytest.raises(GreenmachineError) as err:
            run_evolution(TINY, tss_truth, data_dir, out, cache=cache)
    msg = str(err.value)
    assert str(out) in msg and f"pid {os.getpid()}" in msg and socket.gethostname() in msg and "\n" not in msg


def test_locked_folder_from_the_command_line(tmp_path, env):
    out = tmp_path / "busy"
    with RunFolder(out, resume=False):
        res = subprocess.run([sys.executable, "-m", "greenmachine", "evolve", "--sample-size", "12", "--out", str(out),
                              "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(out) in lines[0]
    assert f"pid {os.getpid()}" in lines[0]


def test_the_lock_dies_with_its_holder(tmp_path):
    """kill -9 of the holder leaves no stale lock: the kernel releases flock with the process."""
    out = tmp_path / "held"
    code = f"from greenmachine.search.engine import RunLock; import pathlib, os; p = pathlib.Path({str(out)!r}); " \
           "p.mkdir(); RunLock(p).acquire(); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code])
    with RunFolder(out, resume=False):
        pass


def test_folder_with_files_but_no_checkpoint_refused(tmp_path, data_dir, tss_truth, cache):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "results.csv").write_text("precious\n")
    with pytest.raises(GreenmachineError, match="not empty .*results.csv.* no checkpoint"):
        run_evolution(TINY, tss_truth, data_dir, out, cache=cache)
    assert (out / "results.csv").read_text() == "precious\n"


def _forge(src, dst, edit):
    shutil.copytree(src, dst)
    path = dst / CHECKPOINT
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _set_pop_fitness(v):
    def edit(d):
        d["state"]["population"][0][1] = v
    return edit


def _forge_best(d):
    tokens = d["state"]["hall_of_fame"][0][0]
    d["state"]["hall_of_fame"][0][1] = 0.999
    d["state"]["fitness_memo"][" ".join(tokens)] = 0.999
    for row in d["state"]["population"]:
        if row[0] == tokens:
            row[1] = 0.999


FORGERIES = {
    "fitness above 1": (_set_pop_fitness(1.5), "finite number in \\[-1, 1\\]"),
    "fitness NaN": (_set_pop_fitness(math.nan), "finite number"),
    "fitness a string": (_set_pop_fitness("0.9"), "finite number"),
    "hall of fame claims a better tau": (lambda d: d["state"]["hall_of_fame"][0].__setitem__(1, 0.999),
                                         "disagrees with the memo"),
    "hall of fame and memo both forged": (_forge_best, "has fitness 0.999"),
    "population size": (lambda d: d["state"]["population"].pop(), "population must hold"),
    "generation ahead of history": (lambda d: d.__setitem__("generation", 5), "history"),
    "history renumbered": (lambda d: d["history"][0].__setitem__("generation", 3), "history"),
    "random state": (lambda d: d.__setitem__("random_state", [3, [1, 2], None]), "random_state"),
    "kind": (lambda d: d.__setitem__("kind", "architecture"), "not 'gp'"),
    "memo out of range": (lambda d: d["state"]["fitness_memo"].__setitem__("c_one", 7.0), "fitness_memo"),
    "tree too high": (lambda d: d["state"]["population"].__setitem__(
        0, [["neg"] * 9 + ["k_logdet_sum", "relu_kernel"], 0.1]), "max_height"),
    "negative totals": (lambda d: d["totals"].__setitem__("seconds", -1), "totals.seconds"),
    "not a checkpoint": (lambda d: d.__setitem__("format", "pickle"), "not a greenmachine checkpoint"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_or_damaged_checkpoint_refused(name, finished, tmp_path, data_dir, tss_truth, cache):
    edit, match = FORGERIES[name]
    out = tmp_path / "forged"
    _forge(finished, out, edit)
    before = (out / "history.csv").read_text()
    with pytest.raises(GreenmachineError, match=match) as err:
        run_evolution(TINY.override(generations=2), tss_truth, data_dir, out, cache=cache, resume=True)
    assert "\n" not in str(err.value)
    assert (out / "history.csv").read_text() == before  # nothing was replayed or rewritten


def test_checkpoint_with_nan_literal_is_refused(finished, tmp_path, data_dir, tss_truth, cache):
    out = tmp_path / "nan"
    shutil.copytree(finished, out)
    text = (out / CHECKPOINT).read_text()
    data = json.loads(text)
    data["state"]["hall_of_fame"][0][1] = float("inf")
    (out / CHECKPOINT).write_text(json.dumps(data))  # Python writes Infinity, which json.loads accepts
    with pytest.raises(GreenmachineError, match="finite"):
        run_evolution(TINY.override(generations=2), tss_truth, data_dir, out, cache=cache, resume=True)


def test_untouched_checkpoint_resumes(finished, tmp_path, data_dir, tss_truth, cache):
    out = tmp_path / "ok"
    shutil.copytree(finished, out)
    res = run_evolution(TINY.override(generations=2), tss_truth, data_dir, out, cache=cache, resume=True)
    assert [r["generation"] for r in res.history] == [0, 1, 2]
