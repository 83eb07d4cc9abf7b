"""Running trials with ask/tell: failures isolated, budget shared by all workers.

One trial goes through three steps that any loop can reuse, one trial at a time
(:func:`run_trials`) or many at once: :func:`start_trial` (sample the config),
then :func:`settle_trial` (the objective returned), :func:`fail_trial` (it raised) or
:func:`abandon_trial` (the process is interrupted: the config goes back in the queue).

A trial's record (its config, outcome or failure, and bookkeeping) is written once, when the trial
ends, together with its final state: one storage operation (see ``_attrs.py``), where writing each
attribute when it is known cost a dozen.
"""

from __future__ import annotations

import sys
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge._progress import StudyProgress
from tunebridge.backends._base import Objective, TrialOutcome, best_of, finite_objective_values, may_prune
from tunebridge.backends._options import StudyLimits, StudyOptions, WorkerOptions
from tunebridge.backends.optuna._attrs import tell
from tunebridge.backends.optuna._checkpoints import discard_checkpoint, keep_best_checkpoints
from tunebridge.backends.optuna._compile import decode, suggest
from tunebridge.backends.optuna._deadline import deadline
from tunebridge.backends.optuna._limits import limit_reached
from tunebridge.backends.optuna._liveness import HEARTBEAT_ATTR, Heartbeat, waiting_for
from tunebridge.backends.optuna._queue import claim, count_finished, ensure_budget, fail_stale, requeue
from tunebridge.schema import Scalar, Space

__all__ = [
    "OptunaReporter",
    "abandon_trial",
    "fail_trial",
    "run_trials",
    "settle_trial",
    "start_trial",
    "study_progress",
    "trial_config",
]

# What a started trial will record when it ends (its config; a failed settle's outcome), by trial.
_PENDING: weakref.WeakKeyDictionary[optuna.Trial, dict[str, Any]] = weakref.WeakKeyDictionary()


def trial_config(space: Space, trial: optuna.trial.FrozenTrial) -> dict[str, Scalar]:
    """The config a finished trial ran with (values, not Optuna indices)."""
    config = _record.config_of(trial.user_attrs)
    return config if config is not None else decode(space, trial.params, trial.distributions)


class OptunaReporter:
    """Reports the monitored metric once per epoch to an Optuna trial and asks its pruner."""

    def __init__(self, trial: optuna.Trial, metric: str, n_objectives: int, budget: int | None = None) -> None:
        self.trial = trial
        self.label = f"trial_{trial.number}"  # names the trial's files (kept weights, logs)
        self.metric = metric
        self.n_objectives = n_objectives
        self.budget = budget
        self.last_epoch = 0
        # Told every epoch and value (the progress display names the running trial with it).
        self.watch: Callable[[int, float | None], None] | None = None

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        if self.watch is not None:
            value = metrics.get(self.metric)
            self.watch(epoch, float(value) if value is not None else None)
        if self.n_objectives > 1 or epoch <= self.last_epoch:
            # Optuna cannot report multi-objective values, and one value per step: a second
            # validation within the same epoch (val_check_interval < 1) is not reported again.
            return False
        self.last_epoch = epoch
        self.trial.report(float(metrics[self.metric]), step=epoch)
        return may_prune(epoch, self.budget) and bool(self.trial.should_prune())


def study_progress(study: optuna.Study, opts: StudyOptions, n_trials: int, *, enabled: bool) -> StudyProgress:
    """The study's progress bar, starting from the trials it already holds (a resume) and their best value."""
    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    trials = study.get_trials(deepcopy=False)
    done = count_finished(trials)
    counts = {  # the whole study's, as the run's summary counts them (re-queued trials are not failures)
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL and not _record.outside_budget(t) for t in trials),
    }
    bar = StudyProgress(
        n_trials, mode=mode, enabled=enabled, done=min(done, n_trials), counts=counts, metric=opts.metrics[0]
    )
    if mode is not None:
        bar.best = best_of((t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))), mode)
    return bar


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
    """The process is interrupted mid-trial: fail the trial outside the budget and re-queue its config."""
    _PENDING[trial] = {**_PENDING.get(trial, {}), _record.REQUEUED: True}
    fail_trial(study, trial, KeyboardInterrupt(f"interrupted ({type(exc).__name__}); the config was re-queued"))
    requeue(study, study._storage.get_trial(trial._trial_id), None)


def run_trials(
    study: optuna.Study,
    opts: StudyOptions,
    objective: Objective,
    *,
    n_trials: int,
    progress: bool = True,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
) -> None:
    """Claim and run waiting trials until ``n_trials`` have finished in the whole study.

    Every worker of a study runs this loop. A trial whose objective raises is marked FAIL with its
    reason and traceback as attributes, and the loop goes on. Ctrl-C (or SIGTERM turned into
    KeyboardInterrupt) marks the running trial FAIL, re-queues its config, and re-raises.

    Args:
        worker: How this process runs its trials (heartbeats, timeouts, joining); see :class:`WorkerOptions`.
        limits: Stop before the budget: wall time, a target value, no improvement (checked before
            each trial is claimed, so every worker of the study stops).
        keep_checkpoints: Keep the weights of this many best trials (the objective writes them; the
            others' are deleted after each trial).
    """
    worker = worker or WorkerOptions()
    if not worker.join:
        ensure_budget(study, n_trials)  # a resume with a larger budget tops the queue up
    began, started = datetime.now(), time.monotonic()
    if study.user_attrs.get("stopped_by") and not worker.join:
        study.set_user_attr("stopped_by", None)  # a reason belongs to the run it stopped
    said: dict[str, float] = {}  # what this worker last said it waits for, and when
    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    with study_progress(study, opts, n_trials, enabled=progress) as bar:
        # The queue is the budget (see _queue.py), so the loop never has to count trials.
        while not worker.stopped:
            reason = limit_reached(study, limits, started=started, mode=mode)
            if reason is not None:
                bar.note(f"stopped before the budget: {reason}")
                study.set_user_attr("stopped_by", reason)
                return
            trial = claim(study)
            if trial is None:
                if _queue_done(study, worker, began, said):
                    return
                continue
            state, value, kept = _run_one(study, trial, opts, objective, worker, bar)
            # Only a complete trial that kept weights can change which are the best (pruned and failed
            # trials keep none): the bookkeeping reads the whole study, so it runs only then.
            if keep_checkpoints > 0 and state == "complete" and kept:
                keep_best_checkpoints(study, keep_checkpoints)
            bar.update(state, value, number=trial.number)


def _queue_done(study: optuna.Study, worker: WorkerOptions, began: datetime, said: dict[str, float]) -> bool:
    """Nothing to claim: fail dead workers' trials (their configs come back), else wait or finish.

    While it waits, it says for what (the trial, its worker, its last heartbeat) on stderr, when that
    changes and at most every 10 s, so a worker never waits in silence.
    """
    # Trials left RUNNING by a dead process: stale heartbeats always; without any heartbeat only
    # for the process that owns the budget (`tunebridge run`), and only trials that were running
    # before it started.
    if fail_stale(study, worker.dead_after, worker.max_retry, orphaned_before=None if worker.join else began):
        return False
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not any(HEARTBEAT_ATTR in t.system_attrs for t in running):
        return True  # nothing waiting and nothing alive to wait for: the queue is done
    text = waiting_for(study, worker.dead_after)
    key = (text or "").split(",", 1)[0]  # the trial and its worker, not the seconds that tick
    now = time.monotonic()
    if text is not None and (key not in said or now - said[key] >= 10.0):
        said.clear()
        said[key] = now
        print(f"tunebridge: waiting for {text}", file=sys.stderr, flush=True)
    time.sleep(worker.poll)  # others hold the remaining trials; one may die and be re-queued
    return False


def _run_one(
    study: optuna.Study,
    trial: optuna.Trial,
    opts: StudyOptions,
    objective: Objective,
    worker: WorkerOptions,
    bar: StudyProgress | None = None,
) -> tuple[str, float | None, bool]:
    """``(state, value, kept)``: how the trial ended, and whether it kept weights."""
    # One try from the moment the trial is claimed: an interrupt anywhere re-queues its config.
    try:
        with Heartbeat(study, trial, worker.heartbeat):
            config = start_trial(study, trial, opts, worker)
            if config is None:
                return "failed", None, False
            reporter = OptunaReporter(trial, opts.metrics[0], len(opts.metrics), opts.pruning.budget(opts.max_epochs))
            if bar is not None:
                bar.running(trial.number, 0, opts.max_epochs)
                reporter.watch = lambda epoch, value: bar.running(trial.number, epoch, opts.max_epochs, value)
            with deadline(worker.trial_timeout):
                outcome = objective(config, reporter)
            return (*settle_trial(study, trial, outcome, opts), _record.CHECKPOINT in outcome.extra)
    except (KeyboardInterrupt, SystemExit) as exc:
        abandon_trial(study, trial, exc)
        raise
    except Exception as exc:
        return (*fail_trial(study, trial, exc), False)
