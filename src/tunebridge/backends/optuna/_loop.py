"""The one trial loop: claim, start, run, settle / fail / abandon, keep checkpoints, limits and stop, progress.

Every worker of a study runs :func:`run_loop`, whatever trains its trials: an :class:`Executor` plugs in.
:class:`SingleExecutor` runs one objective call per trial (a Lightning trial, a DDP trial whose ranks
follow it); a fused executor (``tunebridge.fused``) trains many claimed trials at once and hands each one
back when it ends. The loop owns every rule around a trial, written once for all of them:

- a trial that raises fails alone, with its reason and traceback, and the study goes on;
- Ctrl-C (or SIGTERM turned into ``KeyboardInterrupt``) re-queues every claimed trial's config and re-raises;
- ``timeout:``/``stop:`` are checked before each claim (every worker stops), ``--drain`` likewise;
- the kept checkpoints are reconciled only after a complete trial that kept weights;
- while other workers hold the remaining trials, it says on stderr what it waits for.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.backends._base import (
    Objective,
    Progress,
    Resume,
    StudyEvents,
    TrialOutcome,
    declared_rule,
    over_whole_history,
    silent,
)
from tunebridge.backends._options import StudyLimits, StudyOptions, WorkerOptions
from tunebridge.backends._preempt import preemptible
from tunebridge.backends._resume import ResumePlan
from tunebridge.backends.optuna._checkpoints import keep_best_checkpoints
from tunebridge.backends.optuna._deadline import deadline
from tunebridge.backends.optuna._internals import storage_of, trial_id_of
from tunebridge.backends.optuna._limits import limit_reached
from tunebridge.backends.optuna._liveness import HEARTBEAT_ATTR, Heartbeat, waiting_for
from tunebridge.backends.optuna._queue import claim, ensure_budget, fail_stale
from tunebridge.backends.optuna._resuming import check_shared_folder, end_resume, resume_from
from tunebridge.backends.optuna._study import (
    OptunaReporter,
    abandon_trial,
    fail_trial,
    settle_trial,
    start_trial,
)
from tunebridge.schema import Scalar

__all__ = ["Executor", "Finished", "SingleExecutor", "Slot", "run_loop", "run_trials"]


@dataclass(eq=False)
class Slot:
    """A claimed and started trial, handed to an executor: its config and the reporter it reports to."""

    trial: optuna.Trial
    config: dict[str, Scalar]
    reporter: OptunaReporter
    heartbeat: Heartbeat
    attrs: dict[str, Any] = field(default_factory=dict)  # the executor's own notes (e.g. ``fused``)
    resume: Resume | None = None  # where it goes on from (its predecessor's resume point), else epoch 0


@dataclass(eq=False)
class Finished:
    """How an executor's trial ended: an outcome, an error (the trial fails), or ``requeue`` (abandoned).

    ``requeue`` puts the config back in the queue outside the budget, as an interrupt does (a fused
    cohort that ran out of device memory stops some of its members this way).
    """

    slot: Slot
    outcome: TrialOutcome | None = None
    error: BaseException | None = None
    requeue: BaseException | None = None


class Executor(Protocol):
    """What trains the loop's trials.

    The loop calls :meth:`start` for each trial it claimed (at most :meth:`free` of them before each
    :meth:`step`), then :meth:`step` until :attr:`active` is 0; each step returns the trials that ended.
    An error raised by :meth:`start` fails that trial alone; one raised by :meth:`step` fails every
    trial the executor holds (an executor that can tell which trial raised returns a :class:`Finished`
    with its error instead).
    """

    @property
    def active(self) -> int: ...

    def free(self) -> int: ...

    def start(self, slot: Slot) -> None: ...

    def step(self) -> list[Finished]: ...

    def held(self) -> list[Slot]: ...


class SingleExecutor:
    """One trial at a time: ``objective(config, reporter)`` under the worker's ``trial_timeout``."""

    def __init__(self, objective: Objective, worker: WorkerOptions) -> None:
        self.objective = objective
        self.worker = worker
        self._slot: Slot | None = None

    @property
    def active(self) -> int:
        return int(self._slot is not None)

    def free(self) -> int:
        return 1 - self.active

    def start(self, slot: Slot) -> None:
        self._slot = slot

    def held(self) -> list[Slot]:
        return [self._slot] if self._slot is not None else []

    def step(self) -> list[Finished]:
        slot, self._slot = self._slot, None
        assert slot is not None  # the loop steps only an executor with an active trial
        try:
            with deadline(self.worker.trial_timeout):
                if slot.resume is not None:
                    outcome = self.objective(slot.config, slot.reporter, resume=slot.resume)
                else:
                    outcome = self.objective(slot.config, slot.reporter)
        except (KeyboardInterrupt, SystemExit):
            self._slot = slot  # still held: the loop abandons it
            raise
        except Exception as exc:
            return [Finished(slot, error=exc)]
        return [Finished(slot, outcome=outcome)]


def run_loop(
    study: optuna.Study,
    opts: StudyOptions,
    executor: Executor,
    *,
    n_trials: int,
    progress: Progress = silent,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    on_start: Callable[[Slot], None] | None = None,
    resume: ResumePlan | None = None,
    rule: str = "best_epoch",
) -> None:
    """Claim and run waiting trials with ``executor`` until ``n_trials`` have finished in the whole study.

    Args:
        progress: Shows the study's progress (``tunebridge._progress.study_progress``); told of every
            running and finished trial through :class:`~tunebridge.backends._base.StudyEvents`.
        worker: How this process runs its trials (heartbeats, timeouts, joining); see :class:`WorkerOptions`.
        limits: Stop before the budget: wall time, a target value, no improvement (checked before
            each claim, so every worker of the study stops).
        keep_checkpoints: Keep the weights of this many best trials (the objective writes them; the
            others' are deleted after each complete trial that kept weights).
        on_start: Called with each started trial before the executor takes it.
        resume: The study's resume points (None: none): each running trial writes them, a re-queued
            trial goes on from its predecessor's (``_resuming.py``). SIGTERM is a preemption while the
            loop runs (``worker.preempt_grace``, ``backends/_preempt.py``).
        rule: ``best_epoch`` or ``last_epoch``, the rule the executor's trials train by: a trial that went on
            from a resume point has its objective epoch chosen by it over the epochs before the resume too
            (:func:`~tunebridge.backends._base.over_whole_history`, as on Ray).
    """
    worker = worker or WorkerOptions()
    if not worker.join:
        ensure_budget(study, n_trials)  # a resume with a larger budget tops the queue up
    began, started = datetime.now(), time.monotonic()
    if study.user_attrs.get(_record.STOPPED_BY) and not worker.join:
        study.set_user_attr(_record.STOPPED_BY, None)  # a reason belongs to the run it stopped
    said: dict[str, float] = {}  # what this worker last said it waits for, and when
    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    budget = opts.pruning.budget(opts.max_epochs)
    claimed: dict[int, tuple[optuna.Trial, Heartbeat]] = {}  # trial number -> trial, heartbeat: until it ends
    with preemptible(worker.preempt_grace), progress(study, opts, n_trials) as bar:
        if resume is not None and (unshared := check_shared_folder(study, resume)) is not None:
            bar.note(unshared)

        def finish(done: Finished) -> None:
            trial = done.slot.trial
            claimed.pop(trial.number, None)
            try:
                state, value, kept = _end(study, opts, done, rule)
            finally:
                done.slot.heartbeat.__exit__(None, None, None)
            if state is None:
                return  # re-queued: its resume point stays for the trial that re-runs its config
            writer = done.slot.reporter.writer
            end_resume(writer.folder if writer else None, done.slot.reporter.resumed_from)
            # Only a complete trial that kept weights can change which are the best (pruned and failed
            # trials keep none): the bookkeeping reads the whole study, so it runs only then.
            if keep_checkpoints > 0 and state == "complete" and kept:
                keep_best_checkpoints(study, keep_checkpoints)
            bar.update(state, value, number=trial.number)

        try:
            queue_empty = False
            # Dead workers' trials come back while the queue still holds others, not only once it is empty:
            # a look at the running trials between this worker's trials, at most once a heartbeat interval.
            sweep_every, next_sweep = worker.heartbeat or 10.0, started + (worker.heartbeat or 10.0)
            while True:
                if time.monotonic() >= next_sweep:
                    fail_stale(study, worker.dead_after, worker.max_retry)
                    next_sweep = time.monotonic() + sweep_every
                # The queue is the budget (see _queue.py), so the loop never has to count trials.
                reason = limit_reached(study, limits, started=started, mode=mode)
                if reason is not None and study.user_attrs.get(_record.STOPPED_BY) != reason:
                    bar.note(f"stopped before the budget: {reason}")
                    study.set_user_attr(_record.STOPPED_BY, reason)
                stopped = worker.stopped or reason is not None
                while not stopped and not queue_empty and executor.free() > 0:
                    trial = claim(study)
                    if trial is None:
                        queue_empty = True
                        break
                    slot = _start(study, trial, opts, worker, budget, bar, claimed, resume)
                    if slot is None:
                        continue
                    try:
                        if on_start is not None:
                            on_start(slot)
                        executor.start(slot)
                    except Exception as exc:
                        finish(Finished(slot, error=exc))
                if executor.active == 0:
                    if stopped or _queue_done(study, worker, began, said):
                        return
                    queue_empty = False
                    continue
                try:
                    ended = executor.step()
                except Exception as exc:  # not attributable to one trial: every trial it held fails
                    ended = [Finished(slot, error=exc) for slot in executor.held()]
                for done in ended:
                    if done.requeue is not None:
                        queue_empty = False
                    finish(done)
        except (KeyboardInterrupt, SystemExit) as exc:
            # Every claimed trial not yet ended (held by the executor, or still being started) goes back.
            for trial, beat in list(claimed.values()):
                try:
                    abandon_trial(study, trial, exc)
                except Exception:
                    pass
                finally:
                    beat.__exit__(None, None, None)
            raise


def _start(
    study: optuna.Study,
    trial: optuna.Trial,
    opts: StudyOptions,
    worker: WorkerOptions,
    budget: int | None,
    bar: StudyEvents,
    claimed: dict[int, tuple[optuna.Trial, Heartbeat]],
    plan: ResumePlan | None = None,
) -> Slot | None:
    """Start a claimed trial (heartbeat, config); None when its config cannot be sampled (it failed)."""
    reporter = OptunaReporter(trial, opts.metrics[0], len(opts.metrics), budget)
    source, first = None, {}
    if plan is not None:
        # A re-queued trial names the point it goes on from; a fresh one names the folder of its own points,
        # with its first heartbeat (no write of its own), so that a dead worker's trial is found with them.
        source = _record.bookkeeping(storage_of(study).get_trial(trial_id_of(trial)), _record.RESUME_POINT)
        if not source:
            first = {_record.RESUME_POINT: plan.folder(reporter.label)}
    beat = Heartbeat(study, trial, worker.heartbeat, first)
    beat.__enter__()
    claimed[trial.number] = (trial, beat)
    config = start_trial(study, trial, opts, worker)
    if config is None:
        claimed.pop(trial.number, None)
        beat.__exit__(None, None, None)
        bar.update("failed", number=trial.number)
        return None
    bar.running(trial.number, 0, opts.max_epochs)
    reporter.watch = lambda epoch, value: bar.running(trial.number, epoch, opts.max_epochs, value)
    slot = Slot(trial, config, reporter, beat)
    if plan is not None:
        slot.resume = resume_from(study, trial, reporter, config, plan, source)
        reporter.writer = plan.writer(reporter.label, config)
        reporter.resumed_from = source or None  # its point is recorded on the trial until its own replaces it
    return slot


def _end(
    study: optuna.Study, opts: StudyOptions, done: Finished, rule: str = "best_epoch"
) -> tuple[str | None, float | None, bool]:
    """Record how a trial ended: ``(state, value, kept)``; state None for a re-queued trial."""
    trial = done.slot.trial
    if done.requeue is not None:
        try:
            abandon_trial(study, trial, done.requeue)
        except Exception:
            pass
        return None, None, False
    if done.error is not None or done.outcome is None:
        error = done.error if done.error is not None else RuntimeError("the executor returned no outcome")
        return (*fail_trial(study, trial, error), False)
    outcome = done.outcome
    if done.slot.resume is not None:  # its objective saw only the epochs after the resume point
        outcome = over_whole_history(outcome, done.slot.reporter.history, opts.metrics[0], opts.modes[0], rule)
    outcome.extra.update(done.slot.attrs)
    try:
        return (*settle_trial(study, trial, outcome, opts), _record.CHECKPOINT in outcome.extra)
    except Exception as exc:
        return (*fail_trial(study, trial, exc), False)


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


def run_trials(
    study: optuna.Study,
    opts: StudyOptions,
    objective: Objective,
    *,
    n_trials: int,
    progress: Progress = silent,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    resume: ResumePlan | None = None,
) -> None:
    """:func:`run_loop` with one ``objective(config, reporter)`` call per trial (:class:`SingleExecutor`)."""
    worker = worker or WorkerOptions()
    run_loop(
        study,
        opts,
        SingleExecutor(objective, worker),
        n_trials=n_trials,
        progress=progress,
        worker=worker,
        limits=limits,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
        rule=declared_rule(objective),
    )
