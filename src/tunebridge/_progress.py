"""One progress display for a whole study: trials done / pruned / failed, best value so far, ETA, and the
running trial (its number, epoch and current metric).

On a terminal it is a rich bar redrawn in place, with the running trial on a line of its own. Without one
(``sys.stderr`` is not a TTY: a log file, CI, a pipe) it prints one plain line per finished trial instead,
so logs stay readable. ``NO_COLOR`` is honoured.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any

from tunebridge import _record
from tunebridge.backends import best_of, is_better

__all__ = ["StudyProgress", "study_progress"]


def study_progress(study: Any, opts: Any, n_trials: int) -> StudyProgress:
    """The study's progress bar (a backend's ``progress=``), from the trials it already holds and their best value.

    A resumed study starts where it was: its finished trials, their counts as the run's summary counts
    them (re-queued trials are not failures), and its best value so far.
    """
    from optuna.trial import TrialState

    from tunebridge.backends.optuna import count_finished

    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    trials = study.get_trials(deepcopy=False)
    counts = {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL and not _record.outside_budget(t) for t in trials),
    }
    done = min(count_finished(trials), n_trials)
    bar = StudyProgress(n_trials, mode=mode, done=done, counts=counts, metric=opts.metrics[0])
    if mode is not None:
        bar.best = best_of((t.value for t in trials if t.state == TrialState.COMPLETE), mode)
    return bar


class StudyProgress:
    """Context manager showing the study's progress on stderr (silent when ``enabled`` is False).

    Args:
        total: The trial budget.
        mode: ``min`` or ``max`` for the best value; None for multi-objective studies.
        done: Trials already finished (a resumed study starts there).
        counts: The study's finished trials so far by state (``complete``, ``pruned``, ``failed``): a
            resumed study's counts are the whole study's, as in the run's summary.
        metric: The monitored metric's name, shown next to the running trial's current value.
    """

    def __init__(
        self,
        total: int,
        *,
        mode: str | None,
        enabled: bool = True,
        done: int = 0,
        description: str = "tuning",
        counts: dict[str, int] | None = None,
        metric: str = "value",
    ) -> None:
        self.total = total
        self.mode = mode
        self.counts = {"complete": 0, "pruned": 0, "failed": 0, **(counts or {})}
        self.best: float | None = None
        self.enabled = enabled
        self.metric = metric
        self.done = done
        self.current = ""  # the running trial, in words
        self._description = description
        self._progress: Any = None
        self._task: Any = None
        self._lines = False  # one line per finished trial (no terminal)
        self._started = time.monotonic()
        self._finished = 0  # trials this run finished (the ETA's rate)

    def __enter__(self) -> StudyProgress:
        if not self.enabled:
            return self
        self._started = time.monotonic()
        if not sys.stderr.isatty():
            self._lines = True
            return self
        self._progress = _rich_progress()
        self._progress.__enter__()
        self._task = self._progress.add_task(
            self._description, total=self.total, completed=self.done, best=self._best(), **self.counts
        )
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, ev, tb)

    def running(self, number: int, epoch: int, budget: int | None = None, value: float | None = None) -> None:
        """Name the running trial: its number, epoch (of the budget) and current metric value."""
        of = f"/{budget}" if budget else ""
        shown = "" if value is None else f", {self.metric} {value:.4g}"
        where = f"epoch {epoch}{of}" if epoch > 0 else f"starting ({budget or '?'} epochs at most)"
        self.current = f"running: trial {number}, {where}{shown}"
        if self._progress is not None:
            self._progress.current = self.current
            self._progress.refresh()

    def update(
        self, state: str, value: float | None = None, *, advance: bool = True, number: int | None = None
    ) -> None:
        """Record one finished trial (``complete``, ``pruned`` or ``failed``; ``number``: which one)."""
        self.counts[state] = self.counts.get(state, 0) + 1
        self.done += 1 if advance else 0
        self._finished += 1 if advance else 0
        self.current = ""
        if (
            value is not None
            and self.mode is not None
            and state == "complete"
            and is_better(value, self.best, self.mode)
        ):
            self.best = value
        if self._progress is not None:
            self._progress.current = ""
            self._progress.update(self._task, advance=1 if advance else 0, best=self._best(), **self.counts)
        elif self._lines:
            trial = f"trial {number} {state}" if number is not None else f"a trial {state}"
            shown = f" ({self.metric} {value:.4g})" if value is not None else ""
            print(f"{self._description} {self.line()} | {trial}{shown}", file=sys.stderr, flush=True)

    def line(self) -> str:
        """The progress in one plain line: done/budget, counts, best, elapsed time and ETA."""
        c = self.counts
        elapsed = time.monotonic() - self._started
        text = f"{self.done}/{self.total} ✓{c['complete']} ✂{c['pruned']} ✗{c['failed']} best {self._best()}"
        left = max(self.total - self.done, 0)
        eta = _clock(elapsed / self._finished * left) if self._finished else "-"
        return f"{text} elapsed {_clock(elapsed)} eta {eta}"

    def note(self, message: str) -> None:
        """Print one line under the bar (e.g. why the study stopped early); silent when disabled."""
        if self._progress is not None:
            from rich.markup import escape

            self._progress.console.print(escape(message))
        elif self._lines:
            print(message, file=sys.stderr, flush=True)

    def _best(self) -> str:
        return "-" if self.best is None else f"{self.best:.4g}"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _rich_progress() -> Any:
    """A rich Progress with one more line under the bar: the running trial."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Progress(Progress):
        current = ""

        def get_renderables(self) -> Any:
            yield self.make_tasks_table(self.tasks)
            if self.current:
                yield Text(self.current, style="dim", overflow="ellipsis", no_wrap=True)

    return _Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn(
            "[green]✓{task.fields[complete]}[/] [yellow]✂{task.fields[pruned]}[/] [red]✗{task.fields[failed]}[/]"
        ),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr, no_color="NO_COLOR" in os.environ or None),
        transient=False,
    )
