"""A progress bar for long operations: rich on a terminal's stderr, silent when stderr is not a TTY or when off.

Results go to stdout or files; the bar lives on stderr so piping output never captures it.
"""

from __future__ import annotations

import sys
from typing import IO

__all__ = ["Progress"]


class Progress:
    """A rich progress bar of ``total`` steps on stderr (``enabled=None``: only when stderr is a TTY)."""

    def __init__(self, total: int | None, description: str, *, enabled: bool | None = None,
                 file: IO[str] | None = None):
        self.total = total
        """Steps in all."""
        self.description = description
        """The label before the bar."""
        self.completed = 0
        """Steps done so far."""
        stream = file if file is not None else sys.stderr
        if enabled is None:
            isatty = getattr(stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        """Whether a bar is drawn."""
        self._bar = None
        self._task = None
        if enabled:
            # rich is imported only when a bar is drawn: batch jobs and tests never pay for it.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            # A stream handed in explicitly (tests, log capture) is drawn as a terminal; stderr is left to rich.
            console = Console(file=stream, force_terminal=True if file is not None else None)
            self._bar = RichProgress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more steps done."""
        self.completed += n
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def set_total(self, total: int | None) -> None:
        """Change the number of steps (e.g. once deduplication or resume has shrunk the work)."""
        self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()
