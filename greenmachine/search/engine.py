"""The one search engine: the generational loop, run folder, lock, checkpoint, resume and history.

Evolving proxies (``proxy_gp.py``) and searching architectures (``architecture.py``) are the same kind of job: a
seeded population changes generation by generation, every generation is appended to ``history.csv`` and written
to a JSON checkpoint, and a stopped run resumes exactly where it stopped. What differs (trees and Kendall fitness,
genomes and two objectives) lives in a :class:`Problem`; the engine owns everything that must be right for both:

* **one run per folder**: an exclusive ``flock`` on ``<out>/.greenmachine.lock`` (released by the kernel when the
  holder dies, so ``kill -9`` never leaves a stale lock); a second run into the same folder fails at once, naming
  the folder and the holder's pid and host. A folder that holds files but no checkpoint is refused rather than
  mixed with a new run.
* **a checkpoint from the start**: the first checkpoint (generation -1) is written as soon as the problem is set
  up (its sample chosen), before the long probing, so Ctrl-C during probing followed by ``--resume`` works.
  A start that fails before that leaves no folder behind.
* **checkpoints are data, checked before use**: JSON (never pickle); structure, generation, history and the
  random state are validated here, the problem validates its own state (population, fitness values) and the
  engine refuses anything forged or damaged with one line instead of replaying it.
* **totals over every part of a run**: wall seconds, probe seconds and evaluations of all sessions add up.
* **energy**: with a ``meter`` (``greenmachine.energy.meter``), ``history.csv`` gets the cumulative joules
  measured in this process, added to those of the earlier parts.

The random state is the ``random`` module's, as DEAP's operators draw from it; it is saved in the checkpoint.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import json
import logging
import math
import os
import random
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from greenmachine.errors import GreenmachineError
from greenmachine.files import atomic_open, write_text_atomic
from greenmachine.ui import Reporter

CHECKPOINT = "checkpoint.json"
LOCK = ".greenmachine.lock"
CHECKPOINT_FORMAT = "greenmachine-checkpoint"
CHECKPOINT_VERSION = 2
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024  # a checkpoint is a few MB at most; refuse to read anything absurd


def fingerprint_differences(old: Any, new: dict[str, Any], limit: int = 3) -> str:
    """What differs between a checkpoint's fingerprint and this run's, in a few words ("device 'cuda' there, 'cpu'
    here"): a refused --resume should say which setting to change back, not only that one differs. Settings that
    change numbers (the device, too: GPU and CPU probes differ in rounding) are all in the fingerprint. Values are
    cut to a few dozen characters: the checkpoint is a file, and the error stays one line whatever it holds."""

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    def name(key: str) -> str:  # a key as written, cut, with anything unprintable (a newline) replaced
        return "".join(c if c.isprintable() else "?" for c in str(key)[:40])

    if not isinstance(old, dict):
        return "no readable fingerprint"
    parts = []
    old_cfg = old.get("config") if isinstance(old.get("config"), dict) else {}
    new_cfg = new.get("config") if isinstance(new.get("config"), dict) else {}
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            parts.append(f"{name(key)} {short(old_cfg.get(key))} there, {short(new_cfg.get(key))} here")
    for key in sorted((set(old) | set(new)) - {"config"}):
        if old.get(key) != new.get(key):
            parts.append(f"another {name(key).replace('_', ' ')}")
    if len(parts) > limit:
        parts = parts[:limit] + [f"{len(parts) - limit} more"]
    return "; ".join(parts) or "other settings"


class CheckpointError(GreenmachineError):
    """A checkpoint that is not what this run wrote: damaged, forged, or of another run."""


class Meter(Protocol):
    def joules(self) -> float: ...


class Problem(Protocol):
    """What a search must provide to the engine. ``step(0)`` creates and evaluates the first population."""

    kind: str  # "gp" or "architecture": a checkpoint of one kind is never read as the other
    history_fields: list[str]  # columns of history.csv, including "seconds" (filled by the engine)
    log_name: str  # the log file in the run folder

    def fingerprint(self) -> dict[str, Any]: ...
    def setup(self, log: logging.Logger, reporter: Reporter) -> None: ...
    def total_generations(self) -> int | None: ...
    def finished(self, generation: int) -> bool: ...
    def step(self, generation: int) -> dict[str, Any]: ...
    def state(self) -> dict[str, Any]: ...
    def restore(self, state: Any) -> None: ...
    def write_results(self, folder: "RunFolder", generation: int) -> None: ...
    def describe(self, record: dict[str, Any]) -> str: ...


@dataclass
class RunTotals:
    """What all parts of a run spent; the checkpoint keeps the parts before this one."""

    seconds: float = 0.0
    probe_seconds: float = 0.0
    joules: float | None = None
    parts: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "probe_seconds": self.probe_seconds, "joules": self.joules,
                "parts": self.parts}

    @classmethod
    def from_json(cls, data: Any, origin: str) -> "RunTotals":
        if not isinstance(data, dict):
            raise CheckpointError(f"{origin}: totals must be an object")
        out = cls()
        for key in ("seconds", "probe_seconds"):
            v = data.get(key)
            if not _finite_number(v) or v < 0:
                raise CheckpointError(f"{origin}: totals.{key} must be a non-negative number, got {v!r}")
            setattr(out, key, float(v))
        j = data.get("joules")
        if j is not None and (not _finite_number(j) or j < 0):
            raise CheckpointError(f"{origin}: totals.joules must be a non-negative number or null, got {j!r}")
        out.joules = None if j is None else float(j)
        parts = data.get("parts")
        if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
            raise CheckpointError(f"{origin}: totals.parts must be a positive integer, got {parts!r}")
        out.parts = parts
        return out


@dataclass
class RunOutcome:
    history: list[dict[str, Any]]
    totals: RunTotals
    last_generation: int
    resumed_from: int | None  # the generation the run resumed after (-1: before the first), None: a fresh run
    extra: dict[str, Any] = field(default_factory=dict)


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class RunLock:
    """An exclusive advisory lock on a run folder, with the holder's pid and host written in the lock file."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise GreenmachineError(f"cannot lock the run folder {self.path.parent}: {exc}") from None
            holder = self._holder()
            raise GreenmachineError(f"{self.path.parent} is in use by another run ({holder}); wait for it to end, "
                                    "or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        os.fsync(fd)
        self._fd = fd

    def _holder(self) -> str:
        try:
            data = json.loads(self.path.read_text()[:4096] or "{}")
            return f"pid {int(data['pid'])} on host {str(data['host'])[:100]}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class RunFolder:
    """A run folder: locked while the run is on, refused when it holds something else, removed again if the
    run fails before its first checkpoint (a failed start must not block the next attempt)."""

    def __init__(self, path: str | Path, resume: bool, log_name: str = "run.log"):
        self.dir = Path(path)
        self.resume = resume
        self.checkpoint = self.dir / CHECKPOINT
        self.history = self.dir / "history.csv"
        self.log_path = self.dir / log_name
        self._created = False
        self._lock: RunLock | None = None
        self.started = False  # True once the first checkpoint is on disk
        self.progressed = False  # True once a generation's checkpoint is on disk
        self.log = logging.getLogger(f"greenmachine.run.{self.dir.resolve()}")

    def __enter__(self) -> "RunFolder":
        if self.dir.exists() and not self.dir.is_dir():
            raise GreenmachineError(f"--out {self.dir} exists and is not a folder")
        if self.resume and not self.dir.is_dir():
            raise GreenmachineError(f"--resume: no checkpoint in {self.dir} (the folder does not exist)")
        try:
            self._created = not self.dir.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GreenmachineError(f"cannot create the run folder {self.dir}: {exc.strerror or exc}") from None
        if not os.access(self.dir, os.W_OK | os.X_OK):
            self._cleanup()
            raise GreenmachineError(f"the run folder {self.dir} is not writable")
        self._lock = RunLock(self.dir)
        try:
            self._lock.acquire()
        except GreenmachineError:
            self._lock = None
            if self._created:
                self._cleanup()
            raise
        try:
            self._check_contents()
        except GreenmachineError:
            self._lock.release()
            self._lock = None
            raise
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        if not self.log.handlers:
            handler = logging.FileHandler(self.log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.log.addHandler(handler)
        self.started = self.checkpoint.is_file()
        return self

    def _check_contents(self) -> None:
        has_checkpoint = self.checkpoint.is_file()
        if self.resume:
            if not has_checkpoint:
                raise GreenmachineError(f"--resume: no checkpoint in {self.dir}")
            return
        if has_checkpoint:
            raise GreenmachineError(f"{self.dir} already holds a run: pass --resume to continue it, or choose another --out")
        others = sorted(p.name for p in self.dir.iterdir() if p.name != LOCK)
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise GreenmachineError(f"{self.dir} is not empty ({shown}) but holds no checkpoint: refusing to mix a "
                                    "new run with it; choose another --out or empty it")

    def __exit__(self, exc_type, exc, tb) -> None:
        for h in list(self.log.handlers):
            h.close()
            self.log.removeHandler(h)
        if self._lock is not None:
            # A start that fails leaves nothing behind: before the first checkpoint, whatever the cause; after it
            # (during the setup, e.g. probing), on an error in a folder this run created, so that fixing the cause
            # and running the same command again works. An interrupt keeps the checkpoint: --resume continues.
            failed_start = exc_type is not None and (not self.started or (
                self._created and not self.progressed and not issubclass(exc_type, KeyboardInterrupt)))
            if failed_start:
                self._lock.release(remove=True)
                self._cleanup()
            else:
                self._lock.release()
            self._lock = None

    def _cleanup(self) -> None:
        """Remove what this run put in a folder it created (nothing else is ever there: the folder was new)."""
        if self._created and self.dir.is_dir():
            shutil.rmtree(self.dir, ignore_errors=True)
        elif self.dir.is_dir():  # an empty folder that existed before: leave it, minus our log
            self.log_path.unlink(missing_ok=True)

    # checkpoint -----------------------------------------------------------------------------------------------

    def read_checkpoint(self, kind: str, fingerprint: dict[str, Any]) -> dict[str, Any]:
        origin = str(self.checkpoint)
        try:
            if self.checkpoint.stat().st_size > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(f"--resume: {origin} is larger than {MAX_CHECKPOINT_BYTES >> 20} MB")
            data = json.loads(self.checkpoint.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise CheckpointError(f"--resume: unreadable checkpoint {origin}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"--resume: {origin} is not a greenmachine checkpoint")
        if data.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"--resume: {origin} has checkpoint version {data.get('version')!r}; "
                                  f"this greenmachine writes {CHECKPOINT_VERSION}")
        if data.get("kind") != kind:
            raise CheckpointError(f"--resume: {origin} is a {data.get('kind')!r} run, not {kind!r}")
        if data.get("fingerprint") != fingerprint:
            raise GreenmachineError(
                f"--resume: {origin} belongs to a run with other settings or another sample "
                f"({fingerprint_differences(data.get('fingerprint'), fingerprint)}); "
                "use the same config, or another --out"
            )
        gen = data.get("generation")
        if not isinstance(gen, int) or isinstance(gen, bool) or gen < -1:
            raise CheckpointError(f"--resume: {origin} is damaged (generation {gen!r})")
        history = data.get("history")
        if not isinstance(history, list) or len(history) != gen + 1 or not all(
            isinstance(r, dict) and r.get("generation") == i for i, r in enumerate(history)
        ):
            raise CheckpointError(f"--resume: {origin} is damaged (its history does not hold generations 0..{gen})")
        data["totals"] = RunTotals.from_json(data.get("totals"), f"--resume: {origin}")
        if gen >= 0:
            data["random_state"] = _random_state(data.get("random_state"), origin)
        return data

    def write_checkpoint(self, kind: str, fingerprint: dict[str, Any], generation: int, state: Any,
                         history: list[dict[str, Any]], totals: RunTotals) -> None:
        write_text_atomic(self.checkpoint, json.dumps({
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": kind,
            "generation": generation,
            "fingerprint": fingerprint,
            "state": state,
            "history": history,
            "totals": totals.to_json(),
            "random_state": _json_state(random.getstate()) if generation >= 0 else None,
        }, allow_nan=False))
        self.started = True
        self.progressed = self.progressed or generation >= 0

    def write_history(self, fields: list[str], history: list[dict[str, Any]]) -> None:
        with atomic_open(self.history, newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(history)


def _json_state(state) -> list:
    return [state[0], list(state[1]), state[2]]


def _random_state(value: Any, origin: str) -> tuple:
    """The ``random`` module's state from JSON, checked: version 3, 625 words of 32 bits, gauss None or a float."""
    ok = (isinstance(value, list) and len(value) == 3 and value[0] == 3 and isinstance(value[1], list)
          and len(value[1]) == 625 and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**32
                                           for x in value[1])
          and (value[2] is None or _finite_number(value[2])))
    if not ok:
        raise CheckpointError(f"--resume: {origin} is damaged (random_state is not a Mersenne Twister state)")
    state = (3, tuple(value[1]), value[2])
    try:
        random.Random().setstate(state)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"--resume: {origin} is damaged (random_state: {exc})") from None
    return state


@contextmanager
def _logging_to(reporter: Reporter, log: logging.Logger) -> Iterator[None]:
    """Progress lines land in the run's log too (for runs nobody watches), for the run's duration only."""
    attach, detach = getattr(reporter, "attach_log", None), getattr(reporter, "detach_log", None)
    if callable(attach):
        attach(log)
    try:
        yield
    finally:
        if callable(detach):
            detach(log)


def finished_run(out_dir: str | Path, problem: Problem) -> bool:
    """Whether ``out_dir`` holds a checkpoint of this very problem (kind and fingerprint) whose last generation
    finished it. Resuming such a run would set the problem up (probe its whole sample) only to find nothing left
    to do, so a caller that runs many of them (``make quality``) asks first. The checkpoint is read and checked
    as a resume reads it (:meth:`RunFolder.read_checkpoint`, no lock taken); anything it refuses is "no": the run
    is then resumed, and :func:`run_problem` says what is wrong with it."""
    try:
        checkpoint = RunFolder(out_dir, resume=True).read_checkpoint(problem.kind, problem.fingerprint())
    except GreenmachineError:
        return False
    return problem.finished(checkpoint["generation"] + 1)


def run_problem(
    problem: Problem,
    out_dir: str | Path,
    seed: int,
    resume: bool = False,
    reporter: Reporter | None = None,
    meter: Meter | None = None,
    progress_label: str = "generations",
) -> RunOutcome:
    """Run ``problem`` generation by generation into ``out_dir``; see the module docstring for the guarantees."""
    start = time.perf_counter()
    reporter = reporter or Reporter(quiet=True)
    fingerprint = problem.fingerprint()
    with RunFolder(out_dir, resume, problem.log_name) as folder, _logging_to(reporter, folder.log):
        checkpoint = folder.read_checkpoint(problem.kind, fingerprint) if resume else None
        previous = checkpoint["totals"] if checkpoint else RunTotals(parts=0)
        totals = RunTotals(parts=previous.parts + 1)
        history: list[dict[str, Any]] = list(checkpoint["history"]) if checkpoint else []
        last = checkpoint["generation"] if checkpoint else -1
        joules0 = meter.joules() if meter is not None else None

        def current_totals() -> RunTotals:
            t = RunTotals(seconds=previous.seconds + time.perf_counter() - start,
                          probe_seconds=previous.probe_seconds + getattr(problem, "probe_seconds", 0.0),
                          parts=totals.parts)
            if meter is not None:
                t.joules = (previous.joules or 0.0) + meter.joules() - joules0
            return t

        if checkpoint is None:  # the run exists from here on: Ctrl-C during the setup can be resumed
            folder.write_checkpoint(problem.kind, fingerprint, -1, None, [], current_totals())
        problem.setup(folder.log, reporter)
        if checkpoint is not None and last >= 0:
            problem.restore(checkpoint["state"])
            random.setstate(checkpoint["random_state"])
            folder.log.info("resumed after generation %d", last)
        else:
            random.seed(seed)
            if checkpoint is not None:
                folder.log.info("resumed before generation 0")
        total = problem.total_generations()
        advance = reporter.task(progress_label, total) if total is not None else (lambda status="": None)
        for _ in range(min(last + 1, total or 0)):
            advance()
        gen = last + 1
        while not problem.finished(gen):
            t_gen = time.perf_counter()
            record = problem.step(gen)
            record["seconds"] = round(time.perf_counter() - t_gen, 3)
            cur = current_totals()
            if meter is not None:
                record["joules"] = round(cur.joules or 0.0, 3)
            history.append(record)
            problem.write_results(folder, gen)
            fields = list(problem.history_fields) + (["joules"] if meter is not None else [])
            folder.write_history(fields, history)
            folder.write_checkpoint(problem.kind, fingerprint, gen, problem.state(), history, cur)
            folder.log.info("generation %d: %s (%.1f s)", gen, problem.describe(record), record["seconds"])
            advance(problem.describe(record))
            last = gen
            gen += 1
        final = current_totals()
        if last >= 0:  # the totals of the whole run, also when nothing was left to do
            folder.write_checkpoint(problem.kind, fingerprint, last, problem.state(), history, final)
        folder.log.info("done after generation %d: %.1f s over %d part(s)", last, final.seconds, final.parts)
    return RunOutcome(history=history, totals=final, last_generation=last,
                      resumed_from=checkpoint["generation"] if checkpoint else None)
