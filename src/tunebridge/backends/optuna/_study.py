"""Opening a study and running trials with ask/tell: failures isolated, budget shared by all workers."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge._progress import StudyProgress
from tunebridge.backends._base import Objective, TrialOutcome, objective_values
from tunebridge.backends.optuna._compile import decode, suggest
from tunebridge.backends.optuna._queue import (
    HEARTBEAT_ATTR,
    Heartbeat,
    claim,
    count_finished,
    ensure_budget,
    fail_stale,
    requeue,
)
from tunebridge.errors import TrialTimeoutError
from tunebridge.schema import PruningSpec, Scalar, Space

__all__ = ["OptunaReporter", "StudyOptions", "run_trials", "trial_config"]

TRACEBACK_LIMIT = 8000
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
ATTR_CONFIG = "config"


@dataclass
class StudyOptions:
    """Everything needed to open (or resume) a study, in tunebridge's vocabulary."""

    space: Space
    metrics: list[str]
    modes: list[str]
    search: str = "tpe"
    seed: int | None = 0
    pruning: PruningSpec = field(default_factory=PruningSpec)
    max_epochs: int = 20
    storage: str | None = None
    study: str | None = None
    spec_hash: str | None = None
    force: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return ["minimize" if m == "min" else "maximize" for m in self.modes]


def trial_config(space: Space, trial: optuna.trial.FrozenTrial) -> dict[str, Scalar]:
    """The config a finished trial ran with (values, not Optuna indices)."""
    if ATTR_CONFIG in trial.user_attrs:
        return dict(trial.user_attrs[ATTR_CONFIG])
    return decode(space, trial.params)


class OptunaReporter:
    """Reports the monitored metric once per epoch to an Optuna trial and asks its pruner."""

    def __init__(self, trial: optuna.Trial, metric: str, n_objectives: int, budget: int | None = None) -> None:
        self.trial = trial
        self.metric = metric
        self.n_objectives = n_objectives
        self.budget = budget
        self.last_epoch = 0

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        if self.n_objectives > 1 or epoch <= self.last_epoch:
            # Optuna cannot report multi-objective values, and one value per step: a second
            # validation within the same epoch (val_check_interval < 1) is not reported again.
            return False
        self.last_epoch = epoch
        self.trial.report(float(metrics[self.metric]), step=epoch)
        if self.budget is not None and epoch >= self.budget:
            return False  # it trained the whole budget: complete, even if its last rung ranks it low
        return bool(self.trial.should_prune())


def _record_outcome(trial: optuna.Trial, outcome: TrialOutcome) -> None:
    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("best_epoch", outcome.best_epoch)
    trial.set_user_attr("early_stopped", outcome.early_stopped)
    for key, value in outcome.metrics.items():
        trial.set_user_attr(f"final_{key}", value if math.isfinite(value) else str(value))
    for key, value in outcome.extra.items():
        trial.set_user_attr(key, value)


def _fail(study: optuna.Study, trial: optuna.Trial, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    trial.set_user_attr("fail_reason", reason[:2000])
    trial.set_user_attr("traceback", "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:])
    study.tell(trial, state=TrialState.FAIL)


def run_trials(
    study: optuna.Study,
    opts: StudyOptions,
    objective: Objective,
    *,
    n_trials: int,
    progress: bool = True,
    stop: threading.Event | None = None,
    trial_timeout: float | None = None,
    heartbeat: float | None = None,
    grace_period: float | None = None,
    max_retry: int | None = 3,
    poll: float = 0.5,
    top_up: bool = True,
) -> None:
    """Claim and run waiting trials until ``n_trials`` have finished in the whole study.

    Every worker of a study runs this loop. A trial whose objective raises is marked FAIL with its
    reason and traceback as attributes, and the loop goes on. Ctrl-C (or SIGTERM turned into
    KeyboardInterrupt) marks the running trial FAIL, re-queues its config, and re-raises.

    Args:
        top_up: Enqueue open slots up to ``n_trials`` first (a resume with a larger budget). Workers
            that join a study started elsewhere pass False and follow the queue they find.
        heartbeat: Seconds between heartbeats of the running trial; None disables the dead-worker check.
        grace_period: Seconds without a heartbeat before a trial counts as dead (default 3 intervals).
        max_retry: How often one config is re-queued after its worker died.
    """
    if top_up:
        ensure_budget(study, n_trials)
    began = datetime.now()
    # Without our own heartbeat, others' heartbeats still count: 30 s is 3 default intervals.
    grace = grace_period if grace_period is not None else 3 * (heartbeat or 10.0)
    metric = opts.metrics[0]
    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    done = count_finished(study.get_trials(deepcopy=False))
    with StudyProgress(n_trials, mode=mode, enabled=progress, done=min(done, n_trials)) as bar:
        if mode is not None:
            values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
            bar.best = (min if mode == "min" else max)(values) if values else None  # type: ignore[type-var]
        # The queue is the budget (see _queue.py), so the loop never has to count trials.
        while stop is None or not stop.is_set():
            trial = claim(study)
            if trial is None:
                # Trials left RUNNING by a dead process: stale heartbeats always; without any
                # heartbeat only for the process that owns the budget (``top_up``: `tunebridge run`),
                # and only trials that were running before it started.
                if fail_stale(study, grace, max_retry, orphaned_before=began if top_up else None):
                    continue
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not any(HEARTBEAT_ATTR in t.system_attrs for t in running):
                    return  # nothing waiting and nothing alive to wait for: the queue is done
                time.sleep(poll)  # others hold the remaining trials; one may die and be re-queued
                continue
            state, value = _run_one(study, trial, opts, objective, metric, heartbeat, trial_timeout, max_retry)
            bar.update(state, value)


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeoutError` in the main thread once ``seconds`` have passed.

    A timer signal interrupts Python code (a training loop, a hung data loader in Python) wherever
    it is; Lightning tears the trainer down and re-raises, so the trial is failed cleanly.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TrialTimeoutError(f"the trial ran past trial_timeout={seconds:g} s and was stopped")

    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_delay and outer_delay <= seconds:
        yield  # an outer alarm (e.g. a test timeout) fires first anyway: leave it alone
        return
    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:  # re-arm the caller's alarm with what is left of it
            left = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


def _run_one(
    study: optuna.Study,
    trial: optuna.Trial,
    opts: StudyOptions,
    objective: Objective,
    metric: str,
    heartbeat: float | None,
    trial_timeout: float | None,
    max_retry: int | None,
) -> tuple[str, float | None]:
    # One try from the moment the trial is claimed: an interrupt anywhere re-queues its config.
    try:
        with Heartbeat(study, trial, heartbeat):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    config = suggest(trial, opts.space)
            except Exception as exc:  # e.g. an enqueued config that no longer fits the space
                _fail(study, trial, exc)
                return "failed", None
            trial.set_user_attr(ATTR_CONFIG, json.loads(json.dumps(config)))
            if heartbeat:  # several workers may share the study: record which one ran the trial
                trial.set_user_attr("worker", WORKER_ID)
            reporter = OptunaReporter(trial, metric, len(opts.metrics), opts.pruning.budget(opts.max_epochs))
            with _deadline(trial_timeout):
                outcome = objective(config, reporter)
            _record_outcome(trial, outcome)
            if outcome.pruned:
                study.tell(trial, state=TrialState.PRUNED)
                return "pruned", None
            values = objective_values(outcome, opts.metrics)
            bad = [m for m, v in zip(opts.metrics, values) if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"metric {bad[0]!r} is {values[opts.metrics.index(bad[0])]}")
            study.tell(trial, values if len(values) > 1 else values[0])
            return "complete", values[0]
    except (KeyboardInterrupt, SystemExit) as exc:
        trial.set_user_attr("requeued", True)
        _fail(study, trial, KeyboardInterrupt(f"interrupted ({type(exc).__name__}); the config was re-queued"))
        requeue(study, study._storage.get_trial(trial._trial_id), None)
        raise
    except Exception as exc:
        _fail(study, trial, exc)
        return "failed", None
