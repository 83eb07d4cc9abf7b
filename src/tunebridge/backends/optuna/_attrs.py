"""A trial's record in one storage operation, not one per attribute.

Optuna's storages write one attribute per call: one transaction on a database, one locked and
fsynced append on a journal file. A trial's record (config, final metrics, epochs, bookkeeping) would
cost a dozen writes, more than the trial itself on a fast objective. Here the journal and database
storages (the ones several workers share) write all of them in one operation, and with the trial's
last state change when there is one (:func:`tell`); other storages fall back to Optuna's own calls,
one per key. The attributes are split into user and system attributes by :func:`tunebridge._record.split_attrs`.

The single operation uses Optuna's storage internals (what its own calls do, minus the commit or append
per key; checked against optuna 5.1.0, each tested in ``tests/backends/test_optuna_internals.py``); where they
are missing (another Optuna version, another storage), the public calls are used.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from tunebridge import _record
from tunebridge.backends.optuna._internals import (
    cached_backend,
    rdb_session,
    storage_of,
    study_id_of,
    tell_without_copy,
    trial_id_of,
)

__all__ = ["claim_order", "enqueue", "enqueue_many", "tell", "waiting_ids", "write_attrs"]


def write_attrs(
    storage: Any, trial_id: int, attrs: Mapping[str, Any], *, system: Mapping[str, Any] | None = None
) -> None:
    """Write a trial's record attributes (and raw ``system`` attributes) in one storage operation.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: The trial has finished (nothing is written).
    """
    user, sys_attrs = _record.split_attrs(attrs)
    sys_attrs.update(system or {})
    if not user and not sys_attrs:
        return
    backend, kind = _backend(storage)
    if kind == "journal":
        _journal_append(backend, trial_id, user, sys_attrs, None)
    elif kind == "rdb":
        with rdb_session(backend, True) as session:
            _rdb_attrs(backend, session, trial_id, user, sys_attrs)
    else:
        for key, value in user.items():
            storage.set_trial_user_attr(trial_id, key, value)
        for key, value in sys_attrs.items():
            storage.set_trial_system_attr(trial_id, key, value)


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    attrs: Mapping[str, Any],
    values: float | Sequence[float] | None = None,
    state: TrialState | None = None,
) -> None:
    """``study.tell(trial, values, state)`` that writes the record ``attrs`` in the same storage operation.

    Optuna's own tell decides the state and values (a pruned trial's last intermediate value, the
    sampler's ``after_trial``); its final state change is joined by the attributes: all are written, or,
    when the trial has already finished elsewhere, none.
    """
    with _joined(storage_of(study), trial_id_of(trial), attrs):
        tell_without_copy(study, trial, values, state)


def enqueue(study: optuna.Study, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    """``study.enqueue_trial(params)`` with the record ``attrs`` (bookkeeping as system attributes)."""
    user, system = _record.split_attrs(attrs)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING, system_attrs={"fixed_params": dict(params), **system}, user_attrs=user
        )
    )


def enqueue_many(study: optuna.Study, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
    """:func:`enqueue` for each ``(params, attrs)``; on a journal file, all of them in one append."""
    backend, kind = _backend(storage_of(study))
    from optuna.storages.journal._base import BaseJournalSnapshot

    if kind != "journal" or isinstance(backend._backend, BaseJournalSnapshot) or len(items) < 2:
        for params, attrs in items:  # (a snapshot-taking journal counts its creations one by one)
            enqueue(study, params, attrs)
        return
    from optuna.storages.journal._storage import JournalOperation

    logs = []
    for params, attrs in items:
        user, system = _record.split_attrs(attrs)
        logs.append(
            {  # what JournalStorage.create_new_trial writes for enqueue_trial's waiting trial
                "op_code": JournalOperation.CREATE_TRIAL,
                "worker_id": backend._replay_result.worker_id,
                "study_id": study_id_of(study),
                "state": TrialState.WAITING,
                "value": None,
                "values": None,
                "datetime_start": None,
                "distributions": {},
                "params": {},
                "user_attrs": user,
                "system_attrs": {"fixed_params": dict(params), **system},
                "intermediate_values": {},
            }
        )
    with backend._thread_lock:
        backend._backend.append_logs(logs)
        backend._sync_with_backend()


def waiting_ids(study: optuna.Study, limit: int = 8) -> list[int] | None:
    """The ids of the study's first ``limit`` waiting trials in claim order (:func:`claim_order`), on a
    database; None elsewhere.

    Optuna's claim reads every waiting trial whole (params, attributes, values) to take the first: with
    the whole budget queued, that read costs more than the trial's writes. Here only the ids are read.
    """
    backend, kind = _backend(storage_of(study))
    if kind != "rdb":
        return None
    from optuna.storages._rdb import models

    trial, attr = models.TrialModel, models.TrialSystemAttributeModel
    requeued = (attr.trial_id == trial.trial_id) & (attr.key == _record.SYSTEM_PREFIX + _record.RETRY_OF)
    with rdb_session(backend) as session:
        rows = (
            session.query(trial.trial_id)
            .outerjoin(attr, requeued)
            .filter(trial.study_id == study_id_of(study), trial.state == TrialState.WAITING)
            .order_by(attr.trial_system_attribute_id.is_(None), trial.trial_id)
            .limit(limit)
            .all()
        )
    return [int(r[0]) for r in rows]


def claim_order(waiting: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The order workers claim waiting trials in: re-queued ones (an interrupted, preempted or dead worker's
    config, which may go on from its resume point) first, then the queue's own, each oldest first.

    A re-queued config is work already paid for: left behind the rest of the budget, its resume point would
    wait (and its epochs count for nothing) until every fresh trial had been claimed.
    """
    return sorted(waiting, key=lambda t: (_record.bookkeeping(t, _record.RETRY_OF) is None, t.number))


def _backend(storage: Any) -> tuple[Any, str]:
    """The storage that writes (a cached RDB storage's own), and ``journal``, ``rdb`` or ``other``."""
    from optuna.storages import JournalStorage, RDBStorage

    cached = cached_backend(storage)  # Optuna's cache around an RDBStorage writes through it
    backend = storage if cached is None else cached
    if isinstance(backend, JournalStorage) and all(
        hasattr(backend, a) for a in ("_thread_lock", "_backend", "_replay_result", "_sync_with_backend")
    ):
        return backend, "journal"
    if isinstance(backend, RDBStorage) and all(
        hasattr(backend, a) for a in ("scoped_session", "_set_trial_attr_without_commit")
    ):
        return backend, "rdb"
    return storage, "other"


@contextlib.contextmanager
def _joined(storage: Any, trial_id: int, attrs: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, the trial's next state change also writes ``attrs`` (one operation)."""
    user, system = _record.split_attrs(attrs)
    backend, kind = _backend(storage)
    if kind == "other" or not (user or system):
        write_attrs(storage, trial_id, attrs)
        yield
        return
    original = backend.set_trial_state_values

    def joined(tid: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        if tid != trial_id:
            return bool(original(tid, state, values))
        vars(backend).pop("set_trial_state_values", None)  # once
        if kind == "journal":
            return _journal_append(backend, trial_id, user, system, (state, values))
        # The scoped session is this thread's one: the state change commits the attributes with it.
        with rdb_session(backend) as session:
            _rdb_attrs(backend, session, trial_id, user, system)
            return bool(original(tid, state, values))

    # Only this storage object, only this trial and only once; the heartbeat thread never changes states.
    backend.set_trial_state_values = joined
    try:
        yield
    finally:
        vars(backend).pop("set_trial_state_values", None)


def _rdb_attrs(backend: Any, session: Any, trial_id: int, user: Mapping[str, Any], system: Mapping[str, Any]) -> None:
    """The attributes in the session: on PostgreSQL and SQLite one multi-row upsert per kind, else one per key."""
    from optuna.storages._rdb import models

    dialect = backend.engine.name
    if dialect not in ("postgresql", "sqlite"):
        for model, attrs in ((models.TrialUserAttributeModel, user), (models.TrialSystemAttributeModel, system)):
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(session, model, trial_id, key, value)
        return
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
    backend.check_trial_is_updatable(trial_id, trial.state)
    for model, attrs in ((models.TrialUserAttributeModel, user), (models.TrialSystemAttributeModel, system)):
        if attrs:  # the statement Optuna runs for one key, for all of them
            rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
            stmt = insert(model).values(rows)
            stmt = stmt.on_conflict_do_update(
                index_elements=[model.trial_id, model.key], set_={"value_json": stmt.excluded.value_json}
            )
            session.execute(stmt)


def _journal_append(
    backend: Any,
    trial_id: int,
    user: Mapping[str, Any],
    system: Mapping[str, Any],
    state: tuple[TrialState, Sequence[float] | None] | None,
) -> bool:
    """The attributes (and a final state change) as one append to the journal: one lock, one fsync."""
    from optuna.storages.journal._storage import JournalOperation

    worker = backend._replay_result.worker_id
    logs: list[dict[str, Any]] = [
        {"op_code": op, "worker_id": worker, "trial_id": trial_id, field: {k: v}}
        for op, field, attrs in (
            (JournalOperation.SET_TRIAL_USER_ATTR, "user_attr", user),
            (JournalOperation.SET_TRIAL_SYSTEM_ATTR, "system_attr", system),
        )
        for k, v in attrs.items()
    ]
    if state is not None:
        now = datetime.datetime.now(tz=datetime.timezone.utc).isoformat(timespec="microseconds")
        logs.append(
            {
                "op_code": JournalOperation.SET_TRIAL_STATE_VALUES,
                "worker_id": worker,
                "trial_id": trial_id,
                "state": state[0],
                "values": state[1],
                "datetime_complete": now,
            }
        )
    with backend._thread_lock:
        backend._sync_with_backend()
        current = backend._replay_result._trials.get(trial_id)
        if current is None:
            raise KeyError(f"no trial with id {trial_id}")
        if current.state.is_finished():
            raise UpdateFinishedTrialError(f"trial #{current.number} has already finished and cannot be updated")
        backend._backend.append_logs(logs)
        # Another process may finish the trial between the check and the append: each of these logs is then
        # refused (raising for this worker's logs) and read past, so no later call meets their errors.
        error: Exception | None = None
        while True:
            try:
                backend._sync_with_backend()
                break
            except (KeyError, UpdateFinishedTrialError) as exc:
                error = error or exc
        if error is not None:
            raise error
    return True
