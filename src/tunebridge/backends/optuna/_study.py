"""Running trials with ask/tell: failures isolated, budget shared by all workers.

One trial goes through steps that the one trial loop (``_loop.py``) calls, whatever executes the
trial: :func:`start_trial` (sample the config),
then :func:`settle_trial` (the objective returned), :func:`fail_trial` (it raised) or
:func:`abandon_trial` (the process is interrupted: the config goes back in the queue).

A trial's record (its config, outcome or failure, and bookkeeping) is written once, when the trial
ends, together with its final state: one storage operation (see ``_attrs.py``), where writing each
attribute when it is known cost a dozen.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.backends._base import TrialOutcome, finite_objective_values, may_prune
from tunebridge.backends._options import StudyOptions, WorkerOptions
from tunebridge.backends._preempt import Preempted
from tunebridge.backends._preempt import requested as preemption_requested
from tunebridge.backends._resume import ResumeWriter, discard_point
from tunebridge.backends.optuna._attrs import tell, write_attrs
from tunebridge.backends.optuna._checkpoints import discard_checkpoint
from tunebridge.backends.optuna._compile import decode, suggest
from tunebridge.backends.optuna._internals import storage_of, trial_id_of
from tunebridge.backends.optuna._mo_pruner import report_several
from tunebridge.backends.optuna._queue import requeue
from tunebridge.schema import Scalar, Space

__all__ = [
    "OptunaReporter",
    "abandon_trial",
    "fail_trial",
    "settle_trial",
    "start_trial",
    "trial_config",
]

# What a started trial will record when it ends (its config; a failed settle's outcome), by trial.
_PENDING: weakref.WeakKeyDictionary[optuna.Trial, dict[str, Any]] = weakref.WeakKeyDictionary()


def trial_config(space: Space, trial: optuna.trial.FrozenTrial) -> dict[str, Scalar]:
    """The config a finished trial ran with: its recorded config, else decoded from its params."""
    config = _record.config_of(trial.user_attrs)
    return config if config is not None else decode(space, trial.params)


class OptunaReporter:
    """Reports the monitored metric once per epoch to an Optuna trial and asks its pruner."""

    def __init__(self, trial: optuna.Trial, metric: str, n_objectives: int, budget: int | None = None) -> None:
        self.trial = trial
        self.label = f"trial_{trial.number}"  # names the trial's files (kept weights, logs)
        self.metric = metric
        self.n_objectives = n_objectives
        self.budget = budget
        self.last_epoch = 0
        # Every epoch's metrics (those before a resume included): what a resume point records.
        self.history: dict[int, dict[str, float]] = {}
        # Writes the trial's resume points (None: none) into the folder its first heartbeat named on the trial.
        self.writer: ResumeWriter | None = None
        # The point this trial went on from: the trial names it until its own first point replaces it.
        self.resumed_from: str | None = None
        # Told every epoch and value (the progress display names the running trial with it).
        self.watch: Callable[[int, float | None], None] | None = None

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        if self.watch is not None:
            value = metrics.get(self.metric)
            self.watch(epoch, float(value) if value is not None else None)
        self.history[epoch] = dict(metrics)
        self._resume_point(epoch, checkpoint)
        if epoch <= self.last_epoch:
            # One value per step: a second validation within the same epoch (val_check_interval < 1) is not
            # reported again.
            return False
        self.last_epoch = epoch
        if self.n_objectives > 1:  # Optuna cannot report several values: MO-ASHA keeps its own rungs
            return may_prune(epoch, self.budget) and report_several(self.trial, epoch, metrics)
        self.trial.report(float(metrics[self.metric]), step=epoch)
        return may_prune(epoch, self.budget) and bool(self.trial.should_prune())

    def point_due(self, epoch: int) -> str | None:
        """The folder that the end of ``epoch`` saves its training state into when a resume point is due
        (None: none). For a save every rank of a DDP trial takes part in: rank 0 asks, all ranks save
        there, then :meth:`report` (given a ``checkpoint`` that saves nothing more) completes the point."""
        if self.writer is None or not (preemption_requested() or self.writer.due(epoch)):
            return None
        return self.writer.prepare()

    def _resume_point(self, epoch: int, checkpoint: Callable[[str], None] | None) -> None:
        """Write a resume point when one is due, or when the process was asked to go (then stop here)."""
        going = preemption_requested()
        if (
            self.writer is not None
            and checkpoint is not None
            and (going or self.writer.prepared is not None or self.writer.due(epoch))
        ):
            self.writer.write(epoch, self.history, checkpoint, kept=getattr(self, "kept_checkpoint", None))
            if self.resumed_from is not None:  # the trial's own point replaces the one it went on from
                storage, trial_id = storage_of(self.trial.study), trial_id_of(self.trial)
                write_attrs(storage, trial_id, {_record.RESUME_POINT: self.writer.folder})
                if self.resumed_from != self.writer.folder:
                    discard_point(self.resumed_from)
                self.resumed_from = None
        if going:
            raise Preempted(f"preempted after epoch {epoch}: the trial goes on from its resume point")


def start_trial(
    study: optuna.Study, trial: optuna.Trial, opts: StudyOptions, worker: WorkerOptions
) -> dict[str, Scalar] | None:
    """Sample a claimed trial's config; None when it cannot be sampled (the trial is failed).

    The config is recorded with the trial's outcome (:func:`settle_trial`, :func:`fail_trial`); until
    then the trial's params hold it. Its worker is recorded by its heartbeat (``_liveness.Heartbeat``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            config = suggest(trial, opts.space)
    except Exception as exc:  # e.g. an enqueued config that no longer fits the space
        fail_trial(study, trial, exc)
        return None
    _PENDING[trial] = _record.config_attrs(config)
    return config


def settle_trial(
    study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome, opts: StudyOptions
) -> tuple[str, float | None]:
    """Record a returned trial and tell the study; returns ``(state, value)`` for the progress bar.

    Raises:
        FloatingPointError: An objective value is not finite (the caller fails the trial).
    """
    attrs = {**_PENDING.get(trial, {}), **_record.outcome_attrs(outcome)}
    try:
        values = None if outcome.pruned else finite_objective_values(outcome, opts.metrics)
    except Exception:
        discard_checkpoint(outcome.extra.get(_record.CHECKPOINT))  # the trial fails: it keeps no weights
        attrs.pop(_record.CHECKPOINT, None)
        attrs.pop(_record.MODULE_CLASS, None)
        _PENDING[trial] = attrs  # recorded with the failure
        raise
    _PENDING.pop(trial, None)
    if values is None:
        tell(study, trial, attrs, state=TrialState.PRUNED)
        return "pruned", None
    tell(study, trial, attrs, values if len(values) > 1 else values[0])
    return "complete", values[0]


def fail_trial(study: optuna.Study, trial: optuna.Trial, exc: BaseException) -> tuple[str, None]:
    """Mark a trial FAIL with its reason and traceback; the study goes on.

    A trial that another worker has already failed (its heartbeat looked dead) is left as it is.
    """
    attrs = {**_PENDING.pop(trial, {}), **_record.failure_attrs(exc)}
    try:
        tell(study, trial, attrs, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
        pass  # already finished elsewhere (failed as dead and re-queued): its config runs again there
    return "failed", None


def abandon_trial(study: optuna.Study, trial: optuna.Trial, exc: BaseException) -> None:
    """The trial stops without a result: fail it outside the budget and re-queue its config.

    ``exc`` is why: an interrupt (Ctrl-C, SIGTERM), or an error the executor cannot pin on this trial (a
    fused cohort's step that ran out of memory or raised while it trained several members).
    """
    _PENDING[trial] = {**_PENDING.get(trial, {}), _record.REQUEUED: True}
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        exc = KeyboardInterrupt(f"interrupted ({type(exc).__name__}); the config was re-queued")
    fail_trial(study, trial, exc)
    requeue(study, storage_of(study).get_trial(trial_id_of(trial)), None)
