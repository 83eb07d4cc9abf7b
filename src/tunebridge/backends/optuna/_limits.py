"""When a study stops before its trial budget: wall time, a target value, or no improvement.

The same rule serves the Optuna loop (checked before each trial is claimed, in every worker) and the
Ray backend (an experiment-wide stopper): it reads only the study, so every process agrees.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tunebridge._record import outside_budget
from tunebridge.errors import SchemaError, show

__all__ = ["StudyLimits", "limit_reached"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class StudyLimits:
    """Stop conditions besides the trial budget.

    Attributes:
        timeout: Seconds of wall time for this run (like Optuna's ``optimize(timeout=)``): no trial
            starts after it; the running one finishes.
        target: Stop once the best value reaches it (``<=`` for min, ``>=`` for max).
        patience_trials: Stop when the best value has not improved over this many finished trials.
    """

    timeout: float | None = None
    target: float | None = None
    patience_trials: int | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0
        ):
            raise SchemaError("`timeout` must be a number of seconds > 0", path="timeout", value=show(self.timeout))
        if self.target is not None and (
            isinstance(self.target, bool) or not isinstance(self.target, (int, float)) or not math.isfinite(self.target)
        ):
            raise SchemaError("`stop.target` must be a finite number", path="stop.target", value=show(self.target))
        if self.patience_trials is not None and (
            isinstance(self.patience_trials, bool)
            or not isinstance(self.patience_trials, int)
            or self.patience_trials < 1
        ):
            raise SchemaError(
                "`stop.patience_trials` must be an integer >= 1",
                path="stop.patience_trials",
                value=show(self.patience_trials),
            )

    @property
    def active(self) -> bool:
        """Whether any condition is set."""
        return self.timeout is not None or self.target is not None or self.patience_trials is not None


def limit_reached(study: optuna.Study, limits: StudyLimits | None, *, started: float, mode: str | None) -> str | None:
    """Why the study should stop now (a sentence), or None to go on.

    Args:
        started: ``time.monotonic()`` when this run began (the timeout counts from there).
        mode: ``min``/``max`` of the single objective (None for several: only the timeout applies).
    """
    if limits is None or not limits.active:
        return None
    if limits.timeout is not None and time.monotonic() - started >= limits.timeout:
        return f"timeout: {limits.timeout:g} s of wall time have passed"
    if mode is None or (limits.target is None and limits.patience_trials is None):
        return None
    finished = [
        t
        for t in study.get_trials(deepcopy=False, states=_FINISHED)
        if not (t.state == TrialState.FAIL and outside_budget(t))
    ]
    finished.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
    sign = 1.0 if mode == "min" else -1.0
    best, best_at = None, -1
    for i, t in enumerate(finished):
        if t.state == TrialState.COMPLETE and t.value is not None and (best is None or sign * t.value < sign * best):
            best, best_at = t.value, i
    if limits.target is not None and best is not None and sign * best <= sign * limits.target:
        return f"stop.target: the best value {best:.6g} reached the target {limits.target:g}"
    if limits.patience_trials is not None and best is not None:
        since = len(finished) - 1 - best_at
        if since >= limits.patience_trials:
            return f"stop.patience_trials: no improvement over the last {since} finished trials (best {best:.6g})"
    return None
