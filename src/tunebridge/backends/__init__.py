"""What every backend shares: the trial contract and rules (``_base``), a trial's epoch end (``_epoch``), the
study contract (``_options``) and the one checkpoint delete (``_checkpoints``); standard library and the schema
only. The backends themselves are ``tunebridge.backends.optuna`` and ``tunebridge.backends.ray``.
"""

from __future__ import annotations

from tunebridge.backends._base import (
    CHECKPOINT_FILE,
    Objective,
    Progress,
    Reporter,
    Resume,
    StudyEvents,
    TrialOutcome,
    best_of,
    checkpoint_path,
    is_better,
    silent,
    trial_epochs,
    trial_label,
)
from tunebridge.backends._checkpoints import discard_checkpoint
from tunebridge.backends._epoch import EarlyStopRule, FollowsTrialEpochs, TrialEpochs
from tunebridge.backends._options import StudyLimits, StudyOptions, WorkerOptions

__all__ = [
    "CHECKPOINT_FILE",
    "EarlyStopRule",
    "FollowsTrialEpochs",
    "Objective",
    "Progress",
    "Reporter",
    "Resume",
    "StudyEvents",
    "StudyLimits",
    "StudyOptions",
    "TrialEpochs",
    "TrialOutcome",
    "WorkerOptions",
    "best_of",
    "checkpoint_path",
    "discard_checkpoint",
    "is_better",
    "silent",
    "trial_epochs",
    "trial_label",
]
