"""One rich progress bar for a whole study: trials done / pruned / failed, best value so far, ETA."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from tunebridge.backends._base import is_better

__all__ = ["StudyProgress"]


class StudyProgress:
    """Context manager showing the study's progress on stderr (silent when ``enabled`` is False).

    Args:
        total: The trial budget.
        mode: ``min`` or ``max`` for the best value; None for multi-objective studies.
        done: Trials already finished (a resumed study starts there).
    """

    def __init__(
        self, total: int, *, mode: str | None, enabled: bool = True, done: int = 0, description: str = "tuning"
    ) -> None:
        self.total = total
        self.mode = mode
        self.counts = {"complete": 0, "pruned": 0, "failed": 0}
        self.best: float | None = None
        self.enabled = enabled
        self._initial = done
        self._description = description
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> StudyProgress:
        if not self.enabled:
            return self
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
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "[green]✓{task.fields[complete]}[/] [yellow]✂{task.fields[pruned]}[/] [red]✗{task.fields[failed]}[/]"
            ),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(
            self._description, total=self.total, completed=self._initial, complete=0, pruned=0, failed=0, best="-"
        )
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, ev, tb)

    def update(self, state: str, value: float | None = None, *, advance: bool = True) -> None:
        """Record one finished trial (``complete``, ``pruned`` or ``failed``)."""
        self.counts[state] = self.counts.get(state, 0) + 1
        if (
            value is not None
            and self.mode is not None
            and state == "complete"
            and is_better(value, self.best, self.mode)
        ):
            self.best = value
        if self._progress is not None:
            self._progress.update(
                self._task,
                advance=1 if advance else 0,
                best="-" if self.best is None else f"{self.best:.4g}",
                **self.counts,
            )

    def note(self, message: str) -> None:
        """Print one line under the bar (e.g. why the study stopped early); silent when disabled."""
        if self._progress is not None:
            from rich.markup import escape

            self._progress.console.print(escape(message))
