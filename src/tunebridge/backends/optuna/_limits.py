"""When a study stops before its trial budget: wall time, a target value, or no improvement.

The same rule serves the Optuna loop (checked before each trial is claimed, in every worker) and the
Ray backend (an experiment-wide stopper): it reads only the study, so every process agrees.
"""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from tunebridge._record import outside_budget
from tunebridge.backends._options import StudyLimits

__all__ = ["limit_reached"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


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
