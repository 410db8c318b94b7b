"""Console output: rich progress bars on stderr (stdout stays for results), and a quiet mode for tests."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

err_console = Console(stderr=True)
out_console = Console(soft_wrap=True)


class Reporter:
    """Hands out progress bars; ``quiet=True`` turns them off (library use, tests)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._progress: Progress | None = None

    @contextmanager
    def session(self) -> Iterator["Reporter"]:
        if self.quiet:
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
        if self._progress is None or total == 0:
            yield from items
            return
        task = self._progress.add_task(description, total=total, status="")
        for item in items:
            yield item
            self._progress.advance(task)

    def task(self, description: str, total: int):
        """A manually advanced bar: returns advance(status) or a no-op."""
        if self._progress is None:
            return lambda status="": None
        progress = self._progress
        task = progress.add_task(description, total=total, status="")

        def advance(status: str = "") -> None:
            progress.update(task, advance=1, status=status)

        return advance
