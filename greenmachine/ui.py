"""Console output: progress on stderr (stdout stays for results), plain progress lines where nobody watches a
terminal, the same lines in a run's log, and a quiet mode for tests and library use.

Why two kinds of progress: a rich bar redraws one line in place, which is right on a terminal but writes nothing
useful into a file — under ``nohup``, a batch scheduler or CI, a redirected rich bar shows nothing until the end.
So when stderr is not a terminal the reporter writes plain, self-contained lines instead (``done/total``, rate,
elapsed, ETA), every ``every`` items or every ``seconds`` seconds, whichever comes first. A logger attached with
:meth:`Reporter.attach_log` (the run's ``evolve.log``) receives the same lines whether or not a terminal watches,
so a log tells how far a run got and how fast.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

err_console = Console(stderr=True)
out_console = Console(soft_wrap=True)

#: A plain line at least every this many seconds (checked as items complete).
PLAIN_SECONDS = 30.0
#: ... and at least every tenth of the work.
PLAIN_FRACTION = 0.1


def format_clock(seconds: float) -> str:
    """``83`` -> ``1:23``, ``3723`` -> ``1:02:03``: short, and sortable by eye in a log."""
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_rate(done: int, elapsed: float) -> str:
    """Items per second where more than one a second completes, seconds per item otherwise (a generation)."""
    if done <= 0 or elapsed <= 0:
        return "rate unknown"
    rate = done / elapsed
    return f"{rate:.2f}/s" if rate >= 1 else f"{elapsed / done:.2f} s each"


class _PlainTask:
    """One unit of work reported as plain lines: decides when a line is due and formats it."""

    def __init__(self, reporter: "Reporter", description: str, total: int, completed: int):
        self.reporter = reporter
        self.description = description
        self.total = total
        self.done = completed
        self.base = completed  # items done before this process started (a resumed run): not in the rate
        self.start = reporter.clock()
        self.last_time = self.start
        self.last_done = completed
        self.every = reporter.every or max(1, math.ceil(total * PLAIN_FRACTION))
        self.status = ""
        reporter.emit(self.line(self.start, first=True))

    def advance(self, status: str = "", n: int = 1) -> None:
        self.done += n
        if status:
            self.status = status
        now = self.reporter.clock()
        if (self.done >= self.total or self.done - self.last_done >= self.every
                or now - self.last_time >= self.reporter.seconds):
            self.last_time, self.last_done = now, self.done
            self.reporter.emit(self.line(now))

    def line(self, now: float, first: bool = False) -> str:
        head = f"{self.description}: {self.done}/{self.total}"
        if first:
            return head + (" (resumed)" if self.done else "") + " started"
        elapsed = now - self.start
        fresh = self.done - self.base
        parts = [f"{head} ({100 * self.done / self.total:.0f}%)", format_rate(fresh, elapsed),
                 f"elapsed {format_clock(elapsed)}"]
        if self.done >= self.total:
            parts.append("done")
        elif fresh > 0 and elapsed > 0:
            parts.append(f"ETA {format_clock((self.total - self.done) * elapsed / fresh)}")
        else:
            parts.append("ETA unknown")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)


class Reporter:
    """Hands out progress: rich bars on a terminal, plain lines elsewhere, the same lines to attached loggers.

    ``quiet=True`` silences the console (library use, tests, ``--quiet``) but not an attached log: the run's
    record should not depend on how it was started. ``plain`` forces (True) or forbids (False) the plain lines;
    by default they are used exactly when stderr is not a terminal. ``every`` / ``seconds`` say how often a plain
    line is written (default: every tenth of the work or every 30 s). ``stream`` replaces stderr (tests).

    A search engine attaches its run log for the run's duration::

        with reporter.logging_to(files.log):
            ...  # every progress line also lands in evolve.log
    """

    def __init__(
        self,
        quiet: bool = False,
        *,
        log: logging.Logger | None = None,
        plain: bool | None = None,
        stream: TextIO | None = None,
        every: int | None = None,
        seconds: float = PLAIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.quiet = quiet
        self.plain = plain
        self.stream = stream
        self.every = every
        self.seconds = seconds
        self.clock = clock
        self._logs: list[logging.Logger] = [log] if log is not None else []
        self._progress: Progress | None = None

    # -- logs ---------------------------------------------------------------------------------------------
    def attach_log(self, logger: logging.Logger) -> None:
        """Write every progress line to ``logger`` too (INFO), from now until :meth:`detach_log`."""
        if logger not in self._logs:
            self._logs.append(logger)

    def detach_log(self, logger: logging.Logger) -> None:
        if logger in self._logs:
            self._logs.remove(logger)

    @contextmanager
    def logging_to(self, logger: logging.Logger) -> Iterator["Reporter"]:
        """:meth:`attach_log` for the ``with`` block: a closed run log is never written to afterwards."""
        self.attach_log(logger)
        try:
            yield self
        finally:
            self.detach_log(logger)

    # -- where lines go ---------------------------------------------------------------------------------
    def _plain_console(self) -> bool:
        if self.quiet:
            return False
        if self.plain is not None:
            return self.plain
        if self.stream is not None:
            return True
        return not err_console.is_terminal

    def emit(self, line: str) -> None:
        """One progress line: to the console when plain lines are on, and to every attached log."""
        if self._plain_console():
            stream = self.stream or sys.stderr
            print(line, file=stream, flush=True)
        for logger in self._logs:
            logger.info(line)

    def _plain_wanted(self) -> bool:
        return self._plain_console() or bool(self._logs)

    # -- progress ---------------------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator["Reporter"]:
        """Where rich bars are drawn (a terminal, not quiet), they live for the ``with`` block."""
        if self.quiet or self._plain_console():
            yield self
            return
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=err_console,
            transient=False,
        ) as progress:
            self._progress = progress
            try:
                yield self
            finally:
                self._progress = None

    def track(self, items: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Yield ``items`` and count each one as done once the consumer comes back for the next."""
        advance = self.task(description, total)
        for item in items:
            yield item
            advance()

    def task(self, description: str, total: int, completed: int = 0) -> Callable[..., None]:
        """A manually advanced unit of work: returns ``advance(status="")``.

        ``completed`` items were done before (a resumed run): they count toward done/total but not toward the
        rate, so the ETA of a resumed run is not inflated by work it did not do.
        """
        if total <= 0:
            return lambda status="": None
        bar = self._progress
        task_id = bar.add_task(description, total=total, completed=completed, status="") if bar is not None else None
        plain = _PlainTask(self, description, total, completed) if self._plain_wanted() else None
        if bar is None and plain is None:
            return lambda status="": None

        def advance(status: str = "") -> None:
            if bar is not None:
                bar.update(task_id, advance=1, status=status)
            if plain is not None:
                plain.advance(status)

        return advance
