"""What every backend shares: the trial contract and rules (``_base``), a trial's epoch end (``_epoch``), the
study contract (``_options``), the one checkpoint delete (``_checkpoints``), resume points (``_resume``) and
preemption (``_preempt``); standard library and the schema
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
from tunebridge.backends._preempt import PREEMPTED_EXIT_CODE, preemptible
from tunebridge.backends._preempt import requested as preemption_requested
from tunebridge.backends._resume import (
    KEPT_FILE,
    ResumeOptions,
    ResumePlan,
    ResumePoint,
    ResumeWriter,
    discard_point,
    read_point,
)

__all__ = [
    "CHECKPOINT_FILE",
    "KEPT_FILE",
    "PREEMPTED_EXIT_CODE",
    "EarlyStopRule",
    "FollowsTrialEpochs",
    "Objective",
    "Progress",
    "Reporter",
    "Resume",
    "ResumeOptions",
    "ResumePlan",
    "ResumePoint",
    "ResumeWriter",
    "StudyEvents",
    "StudyLimits",
    "StudyOptions",
    "TrialEpochs",
    "TrialOutcome",
    "WorkerOptions",
    "best_of",
    "checkpoint_path",
    "discard_checkpoint",
    "discard_point",
    "is_better",
    "preemptible",
    "preemption_requested",
    "read_point",
    "silent",
    "trial_epochs",
    "trial_label",
]
