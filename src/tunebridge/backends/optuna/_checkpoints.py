"""The best trials' weights are kept, the rest deleted: top-k checkpoints across the whole study.

A trial's objective writes the weights of its reported epoch (``_record.CHECKPOINT``); after each
finished trial the backend keeps the files of the ``keep`` best complete trials, deletes the others,
and names the best one on the study (``best_checkpoint``), so every worker converges on the same set.
The Ray backend runs it on its mirror study too; files are deleted by :func:`discard_checkpoint`
(``tunebridge.backends._checkpoints``), the one place that deletes one.
"""

from __future__ import annotations

import os

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.backends._checkpoints import discard_checkpoint  # the one delete, shared with Ray

__all__ = ["BEST_CHECKPOINT_ATTR", "discard_checkpoint", "keep_best_checkpoints"]

BEST_CHECKPOINT_ATTR = "best_checkpoint"


def keep_best_checkpoints(study: optuna.Study, keep: int) -> str | None:
    """Keep the checkpoints of the ``keep`` best complete trials (by the first objective); returns the best's path."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if isinstance(t.user_attrs.get(_record.CHECKPOINT), str) and t.values
    ]
    sign = 1.0 if study.directions[0] == StudyDirection.MINIMIZE else -1.0
    ranked = sorted(complete, key=lambda t: (sign * t.values[0], t.number))
    for t in ranked[keep:]:
        discard_checkpoint(t.user_attrs[_record.CHECKPOINT])
    kept = [t.user_attrs[_record.CHECKPOINT] for t in ranked[:keep] if os.path.exists(t.user_attrs[_record.CHECKPOINT])]
    best = kept[0] if kept else None
    if study.user_attrs.get(BEST_CHECKPOINT_ATTR) != best:
        study.set_user_attr(BEST_CHECKPOINT_ATTR, best)
    return best
