"""A study as a work queue shared by any number of workers.

The trial budget is a queue of waiting trials: the process that *creates* the study (an atomic act
in every storage) enqueues one waiting trial per budgeted trial (a grid: one per grid config).
Workers only ever claim waiting trials, and claiming is atomic in Optuna's storages (a state change
WAITING -> RUNNING that only one process can win), so the budget is exact across workers and every
grid point runs once. A worker that dies stops its heartbeat; another worker then fails its trial
and re-queues the same config (up to ``max_retry`` times). A worker that finds the dead worker's
process missing on its own host does so at once, without waiting out the heartbeat timeout.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import warnings
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge._search import check_object, object_kind
from tunebridge._vocab import BACKENDS
from tunebridge.backends._options import StudyOptions
from tunebridge.backends._resume import discard_point, has_point
from tunebridge.backends.optuna._attrs import claim_order, enqueue, enqueue_many, waiting_ids, write_attrs
from tunebridge.backends.optuna._compile import check_convertible, encode
from tunebridge.backends.optuna._factories import make_storage, study_pruner, study_sampler
from tunebridge.backends.optuna._internals import (
    forget_cached_trials,
    new_to_cache,
    storage_of,
    study_id_of,
    trial_id_of,
)
from tunebridge.backends.optuna._liveness import HEARTBEAT_ATTR, Heartbeat, gone_here, waiting_for
from tunebridge.errors import SpecMismatchError
from tunebridge.schema import Space

__all__ = [
    "Heartbeat",
    "claim",
    "count_finished",
    "ensure_budget",
    "fail_stale",
    "open_study",
    "requeue",
    "waiting_for",
]

# Set (as a study system attribute) once the creator has filled the queue.
READY_ATTR = "queue_ready"


def open_study(opts: StudyOptions, *, n_trials: int | None = None, wait: float = 60.0) -> optuna.Study:
    """Create or load the study ``opts.study`` in ``opts.storage``; resume = same name + same storage.

    With ``n_trials``, the creator also fills the queue (the grid, or ``n_trials`` open slots); the
    other workers wait (up to ``wait`` seconds) until it has.

    Raises:
        ConversionError: The space or options cannot be expressed in Optuna (before any trial runs).
        SpecMismatchError: The stored study was started from a different spec (unless ``opts.force``).
    """
    _preflight(opts, queue=n_trials is not None)
    study, created = _create_or_load(opts)
    if created:
        _write_record(study, opts)
        if n_trials is not None:
            _fill(study, opts, n_trials)
        storage_of(study).set_study_system_attr(study_id_of(study), READY_ATTR, True)
        return study
    _reseed(study, opts)
    _wait_until_ready(study, opts, n_trials, wait)
    _check_spec_hash(study, opts)
    return study


def _preflight(opts: StudyOptions, *, queue: bool) -> None:
    """Refuse what Optuna cannot run before a study exists.

    A study with a queue runs on the Optuna backend; one without is the Ray backend's record (its
    trials are sampled by Ray), or any study opened with the backend ``study_options`` recorded.
    """
    check_convertible(opts.space)
    if opts.search == "grid":
        opts.space.grid()  # a grid that cannot be built fails here
    backend = "optuna" if queue else opts.attrs.get("backend")
    if backend in BACKENDS:
        check_object("search", opts.sampler, backend)
        check_object("pruner", opts.scheduler, backend)


def _sampler(opts: StudyOptions, seed: int | None) -> optuna.samplers.BaseSampler:
    if opts.sampler is not None and object_kind(opts.sampler) == "ray-searcher":
        # The Ray backend's record of a run its own searcher samples: this sampler never draws.
        return optuna.samplers.RandomSampler(seed=seed)
    return study_sampler(opts, seed=seed)


def _pruner(opts: StudyOptions) -> optuna.pruners.BasePruner:
    if opts.scheduler is not None and object_kind(opts.scheduler) == "ray-scheduler":
        return optuna.pruners.NopPruner()  # Ray's scheduler stops the trials; the record never prunes
    return study_pruner(opts)


def _create_or_load(opts: StudyOptions) -> tuple[optuna.Study, bool]:
    """The study and whether this process created it (creation is atomic in every storage)."""
    sampler = _sampler(opts, opts.seed)
    pruner = _pruner(opts)
    storage = make_storage(opts.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            study_name=opts.study,
            directions=opts.directions,
            load_if_exists=False,
        )
        return study, True
    except DuplicatedStudyError:
        return optuna.load_study(study_name=opts.study, storage=storage, sampler=sampler, pruner=pruner), False


def _write_record(study: optuna.Study, opts: StudyOptions) -> None:
    """What the study was started from: spec hash, space, objectives, search, seed, versions, backend."""
    record = {
        "spec_hash": opts.spec_hash,
        "space": opts.space.to_dict(),
        "metrics": opts.metrics,
        "modes": opts.modes,
        "search": opts.search,
        "search_options": opts.search_options,
        "seed": opts.seed,
        _record.BUDGET: opts.max_epochs,
        _record.PRUNER: opts.pruning.policy if opts.scheduler is None else type(opts.scheduler).__name__,
        **opts.attrs,
    }
    for key, value in record.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():  # "experimental" in Optuna; optuna-dashboard and plots name the objectives with it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(opts.metrics))


def _reseed(study: optuna.Study, opts: StudyOptions) -> None:
    """A joining or resuming process must not replay the creator's stream of configs.

    It is seeded from the run's seed, the trials so far and this process (a fresh study keeps the seed exactly).
    A user's own sampler carries its own seed, which tunebridge cannot mix: it gets Optuna's
    ``reseed_rng()`` (a fresh random state, as Optuna gives each of its parallel jobs), so a resumed
    or joined study searched by a user's sampler does not repeat its draws, and is not reproducible.
    """
    if opts.sampler is not None:
        study.sampler.reseed_rng()
        return
    mixed = None if opts.seed is None else _mix_seed(opts.seed, len(study.get_trials(deepcopy=False)))
    study.sampler = _sampler(opts, mixed)


def _wait_until_ready(study: optuna.Study, opts: StudyOptions, n_trials: int | None, wait: float) -> None:
    """Wait while the creator writes the record and the queue; take over when it died before filling it."""
    deadline = time.monotonic() + wait
    while not _ready(study) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _ready(study) and n_trials is not None:
        _fill(study, opts, n_trials)
        storage_of(study).set_study_system_attr(study_id_of(study), READY_ATTR, True)


def _ready(study: optuna.Study) -> bool:
    return bool(storage_of(study).get_study_system_attrs(study_id_of(study)).get(READY_ATTR))


def _check_spec_hash(study: optuna.Study, opts: StudyOptions) -> None:
    stored = study.user_attrs.get("spec_hash")
    if opts.spec_hash is not None and stored is not None and stored != opts.spec_hash and not opts.force:
        raise SpecMismatchError(
            f"study {study.study_name!r} in this storage was started from a different spec "
            f"(stored hash {str(stored)[:12]}, this spec {opts.spec_hash[:12]}): resuming would mix two experiments. "
            "Use another --study name, or pass --force to resume anyway."
        )


def _mix_seed(seed: int, n_trials: int) -> int:
    digest = hashlib.sha256(f"{seed}:{n_trials}:{os.getpid()}:{socket.gethostname()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _fill(study: optuna.Study, opts: StudyOptions, n_trials: int) -> None:
    if opts.search == "grid":
        study.set_user_attr("grid_size", len(opts.space.grid()))
    # Configs to evaluate first (enqueue / warm_start) take the first places of the budget.
    first = {_record.SLOT: True, _record.ENQUEUED: True}
    enqueue_many(study, [(encode(opts.space, config), first) for config in opts.enqueue[: max(0, n_trials)]])
    ensure_budget(study, n_trials, space=opts.space)


def _budgeted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials that hold a place in the budget: all but failed ones whose config was re-queued or cancelled."""
    return [t for t in trials if not (t.state == TrialState.FAIL and _record.outside_budget(t))]


def count_finished(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards the budget: complete, pruned, and failed ones that were not re-queued."""
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(t.state in finished for t in _budgeted(trials))


def ensure_budget(study: optuna.Study, n_trials: int, *, space: Space | None = None) -> int:
    """Make the queue hold exactly ``n_trials`` budgeted trials; returns the change in queued trials.

    A larger budget (a resume with ``--trials`` raised) enqueues open slots, or for a grid the next
    grid points not queued yet (a grid is never larger than itself); a smaller one cancels surplus
    waiting trials (they end as FAIL with ``cancelled``, outside the budget). Call it from one
    process (``tunebridge run``), not from every worker.
    """
    budgeted = _budgeted(study.get_trials(deepcopy=False))
    missing = n_trials - len(budgeted)
    if study.user_attrs.get("search") == "grid":
        space = space or Space.from_dict(study.user_attrs["space"])
        queued = {_record.bookkeeping(t, _record.GRID_INDEX) for t in budgeted}
        fresh = [(i, cfg) for i, cfg in enumerate(space.grid()) if i not in queued][: max(0, missing)]
        enqueue_many(study, [(encode(space, cfg), {_record.GRID_INDEX: i}) for i, cfg in fresh])
        missing = len(fresh) if missing > 0 else missing
    else:
        enqueue_many(study, [({}, {_record.SLOT: True})] * max(0, missing))
    surplus = [
        t for t in budgeted if t.state == TrialState.WAITING and _record.bookkeeping(t, _record.RETRY_OF) is None
    ]
    for t in surplus[::-1][: max(0, -missing)]:
        try:
            storage, trial_id = storage_of(study), trial_id_of(t)
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                write_attrs(storage, trial_id, {_record.CANCELLED: True})
                storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # a worker claimed it first
    return missing


def claim(study: optuna.Study) -> optuna.Trial | None:
    """Atomically take one waiting trial, or None when the queue is empty.

    Uses the same private step as ``Study.ask`` minus its fallback of creating a fresh trial, which
    would let concurrent workers overshoot the budget.
    """
    forget_cached_trials(study)
    trial_id = _claim_id(study)
    if trial_id is None:
        return None
    storage = storage_of(study)
    if new_to_cache(storage, trial_id):
        # Optuna's cached database storage writes a trial's params only for trials it has read: a trial
        # another process enqueued after this one last read the study is new to it (KeyError on suggest).
        storage.get_all_trials(study_id_of(study), deepcopy=False, states=(TrialState.RUNNING,))
    return optuna.Trial(study, trial_id)


def _claim_id(study: optuna.Study) -> int | None:
    """Optuna's step (``Study._pop_waiting_trial_id``: the first waiting trial turned RUNNING, which one process
    wins), in :func:`claim_order`: re-queued trials first. On a database only the ids of the first waiting
    trials are read (see ``waiting_ids``)."""
    storage = storage_of(study)
    while True:
        ids = waiting_ids(study)
        if ids is None:  # journal, Redis, in memory: the waiting trials, as Optuna's step reads them
            waiting = storage.get_all_trials(study_id_of(study), deepcopy=False, states=(TrialState.WAITING,))
            ids = [trial_id_of(t) for t in claim_order(waiting)]
            again = False
        else:
            again = bool(ids)  # more may wait behind the first few that others took
        if not ids:
            return None
        for trial_id in ids:  # the same atomic WAITING -> RUNNING change as Optuna's
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # cancelled meanwhile
        if not again:
            return None


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int | None) -> bool:
    """Put a failed trial's config back in the queue (same params), unless it was retried too often."""
    retries = int(_record.bookkeeping(trial, _record.RETRIES, 0))
    if max_retry is not None and retries >= max_retry:
        return False
    keep: dict[str, Any] = {
        k: v for k in (_record.GRID_INDEX, _record.SLOT) if (v := _record.bookkeeping(trial, k)) is not None
    }
    # Its latest resume point goes with it: the trial that re-runs the config goes on from there. A trial
    # names its folder from its start: one that died before its first point has none to give.
    point = _record.bookkeeping(trial, _record.RESUME_POINT)
    if point and has_point(str(point)):
        keep[_record.RESUME_POINT] = point
    enqueue(study, dict(trial.params), {**keep, _record.RETRY_OF: trial.number, _record.RETRIES: retries + 1})
    return True


def fail_stale(
    study: optuna.Study, heartbeat_timeout: float, max_retry: int | None, *, orphaned_before: datetime | None = None
) -> int:
    """Fail running trials whose worker is dead and re-queue their configs; returns how many.

    Dead means: a worker process of this host (same PID namespace) that no longer exists, at once;
    a heartbeat older than ``heartbeat_timeout`` s (a worker on another host, whose process cannot be
    looked up); or (with ``orphaned_before``) no heartbeat at all and a start before that time — a
    trial left RUNNING by a process that died before this one started and that sent no heartbeats.
    """
    now = time.time()
    storage = storage_of(study)
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT_ATTR)
        gone = gone_here(t)
        if gone is not None:
            reason = gone
        elif beat is None:
            started = t.datetime_start
            if orphaned_before is None or started is None or started >= orphaned_before:
                continue
            reason = "it was left running by a process that is gone (no heartbeat, started before this run)"
        elif now - float(beat) > heartbeat_timeout:
            reason = f"its worker stopped sending heartbeats for over {heartbeat_timeout:g} s"
        else:
            continue
        retries = int(_record.bookkeeping(t, _record.RETRIES, 0))
        will_requeue = max_retry is None or retries < max_retry
        trial_id = trial_id_of(t)
        try:
            # Attributes first (a finished trial refuses them), then the state change only one worker wins.
            write_attrs(storage, trial_id, {_record.FAIL_REASON: reason, _record.REQUEUED: will_requeue})
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue
        if will_requeue:
            requeue(study, storage.get_trial(trial_id), max_retry)
        else:  # retried too often: nobody goes on from its resume point
            discard_point(_record.bookkeeping(t, _record.RESUME_POINT))
        n += 1
    return n
