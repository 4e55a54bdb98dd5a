"""The one progress bar of prunezoo (studies, the trainer, zoo runs, zoo analysis).

Shown only when stderr is a terminal unless told (``enabled=True/False``), and drawn on stderr, so
logs, CI output and results printed on stdout stay clean.
Imports only rich (and only when the bar is shown) and the standard library.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich.progress itself only once a bar is shown
    from rich.progress import Progress, TaskID


class ProgressBar:
    """``with ProgressBar("jobs", total) as bar: bar.advance()``: description, done/total, elapsed, ETA.

    ``transient`` bars disappear when done (nested ones, e.g. the trainer's inside a study); a disabled
    bar does nothing at all.
    """

    def __init__(
        self, description: str, total: int, *, completed: int = 0, enabled: bool | None = None, transient: bool = True
    ):
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.description, self.total, self.completed, self.transient = description, total, completed, transient
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        return self.start()

    def start(self) -> ProgressBar:
        """Show the bar (when enabled); :meth:`close` ends it. ``with`` does both."""
        if self.enabled and self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=self.transient,
                console=Console(stderr=True),
            )  # stdout stays for results
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.completed)
        return self

    def advance(self, n: int = 1, description: str | None = None) -> None:
        """``n`` more done; ``description`` replaces the label (e.g. the job that just finished)."""
        self.completed += n
        if self._progress is not None and self._task is not None:
            if description is None:
                self._progress.advance(self._task, n)
            else:
                self._progress.update(self._task, advance=n, description=description)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ProgressBar"]
