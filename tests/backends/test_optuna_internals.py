"""Every Optuna internal tunebridge still uses, exercised on the installed Optuna (checked against 5.1.0).

Optuna has no public API for these (``src/tunebridge/backends/optuna/_internals.py`` says why, one accessor
each). A test here fails with ``optuna <version> changed <internal> (used by tunebridge.<where> for <why>):
<what to check>``. The scan at the end keeps the list honest: a private Optuna name used in
``src/tunebridge`` without a test here fails it, and so does a test here for an internal no longer used.
Ray Tune's internals have a section of their own (the scan is Optuna's only).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import re
import threading
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

import tunebridge
from tunebridge import _record
from tunebridge.backends.optuna import claim, make_storage, one_read_per_pass
from tunebridge.backends.optuna._attrs import (
    _backend,
    _rdb_attrs,
    enqueue,
    enqueue_many,
    tell,
    waiting_ids,
    write_attrs,
)
from tunebridge.backends.optuna._internals import (
    CHECKED_AGAINST,
    cached_backend,
    forget_cached_trials,
    new_to_cache,
    rdb_session,
    set_storage,
    storage_of,
    study_id_of,
    tell_without_copy,
    trial_id_of,
)
from tunebridge.backends.optuna._ordered import ORDER_AWARE, _IndexView, with_order
from tunebridge.schema import Choice, Float, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Internal (a private name, or a private module's member by its dotted path) -> the tests that exercise it.
COVERED: dict[str, list[str]] = defaultdict(list)


def changed(internal: str, user: str, why: str, check: str) -> str:
    return (
        f"optuna {optuna.__version__} changed {internal} (used by tunebridge.{user} for {why}): {check} "
        f"(last checked against optuna {CHECKED_AGAINST})"
    )


def covers(
    *names: str, internal: str, user: str, why: str, check: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a test as one that exercises the internal ``names`` (the scan at the end checks the list);
    whatever makes it fail (an assertion, an AttributeError, a TypeError) is reported with :func:`changed`."""
    where = changed(internal, user, why, check)

    def register(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def explained(*args: Any, **kwargs: Any) -> None:
            try:
                test(*args, **kwargs)
            except (AssertionError, pytest.fail.Exception) as exc:
                pytest.fail(f"{where}\n{exc}", pytrace=True)
            except Exception as exc:
                pytest.fail(f"{where}\n{type(exc).__name__}: {exc}", pytrace=True)

        for name in names:
            COVERED[name].append(test.__name__)
        return explained

    return register


class _Studies:
    """Fresh studies on real storages; deleted, and their connections closed, after the test."""

    def __init__(self) -> None:
        self.storages: list[Any] = []
        self.created: list[tuple[str, Any]] = []

    def storage(self, url: str) -> Any:
        storage = make_storage(url)
        self.storages.append(storage)
        return storage

    def create(self, url: str) -> optuna.Study:
        storage = self.storage(url)
        name = f"tb-internals-{uuid.uuid4().hex[:10]}"
        study = optuna.create_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))
        self.created.append((name, storage))
        return study

    def load(self, study: optuna.Study, url: str) -> optuna.Study:
        """The same study through another storage object, as another process opens it."""
        return optuna.load_study(study_name=study.study_name, storage=self.storage(url))

    def close(self) -> None:
        for name, storage in self.created:
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=name, storage=storage)
        for storage in self.storages:
            if isinstance(storage, RDBStorage):
                storage.engine.dispose()


@pytest.fixture
def studies() -> Iterator[_Studies]:
    made = _Studies()
    yield made
    made.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def rdb_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A database URL: SQLite, and PostgreSQL where the internal writes dialect-specific statements."""
    return sqlite_url if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    return str(tmp_path / "study.log")


# --- the study and its trials (backends/optuna/_internals.py) ------------------------------------------------


@covers(
    "_storage",
    internal="Study._storage",
    user="backends.optuna._internals.storage_of and set_storage",
    why="the queue's, the record's and the heartbeat's storage calls, and one_read_per_pass's swap",
    check="the study's storage must be Study._storage, read by every Study method when it runs",
)
def test_study_storage_is_what_every_study_method_goes_through(sqlite_url: str, studies: _Studies) -> None:
    study = studies.create(sqlite_url)
    storage = storage_of(study)
    assert isinstance(storage, BaseStorage), f"it is {storage!r}"
    trial = study.ask()
    assert trial.storage is storage, "Trial.storage must be the study's storage"
    spy = Mock(wraps=storage)
    set_storage(study, spy)
    try:
        study.get_trials()
        assert study.user_attrs == {}
        study.tell(trial, 1.0)
    finally:
        set_storage(study, storage)
    used = {call[0] for call in spy.method_calls}
    assert {"get_all_trials", "get_study_user_attrs", "set_trial_state_values"} <= used, (
        f"through a swapped storage, Study methods called only {sorted(used)}"
    )


@covers(
    "_study_id",
    internal="Study._study_id",
    user="backends.optuna._internals.study_id_of",
    why="the storage calls of the queue, the record's batch and one_read_per_pass",
    check="it must be storage.get_study_id_from_name(study.study_name)",
)
def test_study_id_is_the_id_the_storage_knows_the_study_by(sqlite_url: str, studies: _Studies) -> None:
    first, second = studies.create(sqlite_url), studies.create(sqlite_url)
    storage = storage_of(first)
    ids = [storage.get_study_id_from_name(s.study_name) for s in (first, second)]
    assert [study_id_of(first), study_id_of(second)] == ids and ids[0] != ids[1]


@covers(
    "_trial_id",
    internal="Trial._trial_id and FrozenTrial._trial_id",
    user="backends.optuna._internals.trial_id_of",
    why="every storage call about one trial (claim, heartbeat, record, requeue)",
    check="a trial's id must be the one storage.get_trial takes",
)
def test_trial_id_is_the_id_the_storage_knows_a_trial_by(sqlite_url: str, studies: _Studies) -> None:
    study = studies.create(sqlite_url)
    other = studies.create(sqlite_url)  # ids count across the studies of a storage, numbers within one
    other.ask()
    live = [study.ask(), study.ask()]
    frozen = study.get_trials(deepcopy=False)
    storage = storage_of(study)
    for trial in (*live, *frozen):
        got = storage.get_trial(trial_id_of(trial))
        assert (got.number, got.datetime_start) == (trial.number, frozen[trial.number].datetime_start)


@covers(
    "_thread_local",
    internal="Study._thread_local.cached_all_trials",
    user="backends.optuna._queue.claim (forget_cached_trials)",
    why="a claimed trial's sampler seeing the trials finished since, as Study.ask does",
    check="it must hold the trials Study._get_trials(use_cache=True) answers from",
)
def test_the_trials_a_study_caches_for_its_sampler_can_be_dropped() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(study._get_trials(deepcopy=False, use_cache=True)) == 1
    assert study._thread_local.cached_all_trials is not None
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    assert len(study._get_trials(deepcopy=False, use_cache=True)) == 1  # the cached answer
    forget_cached_trials(study)
    assert len(study._get_trials(deepcopy=False, use_cache=True)) == 2


@covers(
    "optuna.study._tell._tell_with_warning",
    internal="optuna.study._tell._tell_with_warning",
    user="backends.optuna._attrs.tell (tell_without_copy)",
    why="Study.tell without its copy of the finished trial (one storage read per trial)",
    check="check its keyword arguments (study, trial, value_or_values, state) and what it stores",
)
def test_tell_without_copy_ends_a_trial_as_study_tell_does(sqlite_url: str, studies: _Studies) -> None:
    study = studies.create(sqlite_url)
    complete, pruned, failed = study.ask(), study.ask(), study.ask()
    pruned.report(0.7, step=1)
    tell_without_copy(study, complete, 0.5)
    tell_without_copy(study, pruned, state=TrialState.PRUNED)
    tell_without_copy(study, failed, state=TrialState.FAIL)
    got = [(t.state, t.value) for t in study.get_trials()]
    assert got == [(TrialState.COMPLETE, 0.5), (TrialState.PRUNED, 0.7), (TrialState.FAIL, None)]
    # What fail_trial and settle_trial catch when another worker finished the trial first.
    with pytest.raises((UpdateFinishedTrialError, RuntimeError, ValueError)):
        tell_without_copy(study, complete, 0.1)


# --- Optuna's cache around a database storage ---------------------------------------------------------------


@covers(
    "_CachedStorage",
    "_backend",
    internal="optuna.storages._CachedStorage and its _backend",
    user="backends.optuna._attrs._backend (cached_backend) and _joined",
    why="writing a trial's record in one transaction, joined to its final state change",
    check="a study on an RDBStorage must go through a _CachedStorage whose _backend is that RDBStorage and ends "
    "a trial with one set_trial_state_values call on it; else each attribute costs one transaction",
)
def test_a_database_study_writes_through_the_rdb_storage_in_optunas_cache(sqlite_url: str, studies: _Studies) -> None:
    study = studies.create(sqlite_url)
    rdb, cached = studies.storages[-1], storage_of(study)
    assert type(cached).__name__ == "_CachedStorage" and cached_backend(cached) is rdb, f"it is {cached!r}"
    assert _backend(cached) == (rdb, "rdb")
    # tell joins the record to the trial's last state change by replacing that method on the RDBStorage object.
    trial, calls = study.ask(), []
    original = rdb.set_trial_state_values
    rdb.set_trial_state_values = lambda *args, **kwargs: calls.append(args) or original(*args, **kwargs)
    try:
        study.tell(trial, 1.0)
    finally:
        del rdb.set_trial_state_values
    assert len(calls) == 1, f"Study.tell called the RDBStorage's set_trial_state_values {len(calls)} times"
    assert study.get_trials()[0].state == TrialState.COMPLETE


@covers(
    "_trial_id_to_study_id_and_number",
    internal="_CachedStorage._trial_id_to_study_id_and_number",
    user="backends.optuna._queue.claim (new_to_cache)",
    why="reading a trial another process queued before suggesting its params (a KeyError otherwise)",
    check="it must map the ids of the trials the cache has read",
)
def test_optunas_cache_must_read_a_trial_before_writing_its_params(sqlite_url: str, studies: _Studies) -> None:
    worker = studies.create(sqlite_url)
    creator = studies.load(worker, sqlite_url)  # another process
    worker.get_trials()  # the worker has read the study ...
    creator.enqueue_trial({"x": 0.5})  # ... before another process queued this trial
    trial_id = trial_id_of(creator.get_trials()[-1])
    assert new_to_cache(storage_of(worker), trial_id)
    trial = claim(worker)
    assert trial is not None and trial_id_of(trial) == trial_id
    assert not new_to_cache(storage_of(worker), trial_id), "claim() read the trial"
    assert trial.suggest_float("x", 0, 1) == 0.5


# --- a database storage's internals (backends/optuna/_attrs.py, _reads.py) -----------------------------------


@covers(
    "optuna.storages._rdb.storage._create_scoped_session",
    internal="optuna.storages._rdb.storage._create_scoped_session",
    user="backends.optuna._internals.rdb_session",
    why="writing a trial's record and its final state in one transaction",
    check="the session must be RDBStorage.scoped_session's (one per thread), the one RDBStorage's own calls use",
)
def test_a_record_and_the_state_change_share_one_transaction(rdb_url: str, studies: _Studies) -> None:
    study = studies.create(rdb_url)
    backend = cached_backend(storage_of(study))
    reader = studies.storage(rdb_url)  # another connection
    kept, lost = study.ask(), study.ask()
    with rdb_session(backend) as session:
        assert session is backend.scoped_session()
        _rdb_attrs(backend, session, trial_id_of(kept), {"loss": 1.0}, {"tb_worker": "w"})
        assert backend.set_trial_state_values(trial_id_of(kept), TrialState.COMPLETE, [1.0])
        seen = reader.get_trial(trial_id_of(kept))  # committed with the state change, before the block ends
        assert (seen.state, seen.user_attrs, seen.system_attrs) == (
            TrialState.COMPLETE,
            {"loss": 1.0},
            {"tb_worker": "w"},
        )
    with pytest.raises(KeyError):  # a failing state change takes the record with it
        with rdb_session(backend) as session:
            _rdb_attrs(backend, session, trial_id_of(lost), {"loss": 2.0}, {})
            backend.set_trial_state_values(10**9, TrialState.COMPLETE, [2.0])
    assert reader.get_trial(trial_id_of(lost)).user_attrs == {}, "a rolled-back record was written"


@covers(
    "optuna.storages._rdb.models",
    internal="optuna.storages._rdb.models (TrialModel, TrialUserAttributeModel, TrialSystemAttributeModel)",
    user="backends.optuna._attrs.waiting_ids and _rdb_attrs",
    why="claiming by id and writing a record in one upsert per kind of attribute",
    check="check the columns trial_id, study_id, state, key, value_json and the unique (trial_id, key)",
)
def test_the_rdb_models_tunebridge_queries_and_upserts_into(rdb_url: str, studies: _Studies) -> None:
    study = studies.create(rdb_url)
    enqueue_many(study, [({"x": i / 10}, {_record.SLOT: True}) for i in range(3)])
    waiting = [trial_id_of(t) for t in study.get_trials(states=(TrialState.WAITING,))]
    assert waiting_ids(study, limit=2) == waiting[:2]
    storage = storage_of(study)
    write_attrs(storage, waiting[0], {"loss": 1.0, _record.WORKER: "a"})
    write_attrs(storage, waiting[0], {"loss": 2.0})  # an upsert: the second write replaces the first
    got = storage.get_trial(waiting[0])
    assert got.user_attrs == {"loss": 2.0} and got.system_attrs["tb_worker"] == "a", got


@covers(
    "_set_trial_attr_without_commit",
    internal="RDBStorage._set_trial_attr_without_commit",
    user="backends.optuna._attrs._rdb_attrs",
    why="a record in one transaction on MySQL and the other databases",
    check="check its arguments (session, model, trial_id, key, value); without it each attribute costs a transaction",
)
def test_other_databases_write_attributes_with_optunas_write_without_commit(sqlite_url: str, studies: _Studies) -> None:
    study = studies.create(sqlite_url)
    backend = cached_backend(storage_of(study))
    trial_id = trial_id_of(study.ask())
    assert _backend(storage_of(study))[1] == "rdb"
    other_database = SimpleNamespace(
        engine=SimpleNamespace(name="mysql"), _set_trial_attr_without_commit=backend._set_trial_attr_without_commit
    )
    with rdb_session(backend) as session:
        _rdb_attrs(other_database, session, trial_id, {"loss": 1.0}, {"tb_worker": "w"})
    got = storage_of(study).get_trial(trial_id)
    assert (got.user_attrs, got.system_attrs) == ({"loss": 1.0}, {"tb_worker": "w"}), got


@covers(
    "_set_trial_intermediate_value_without_commit",
    internal="RDBStorage._set_trial_intermediate_value_without_commit",
    user="backends.optuna._reads (one_read_per_pass's flush)",
    why="a fused cohort's intermediate values in one transaction per epoch",
    check="check its arguments (session, trial_id, step, value) and that a finished trial refuses it; without it "
    "each value costs a transaction",
)
def test_a_pass_writes_its_intermediate_values_in_one_transaction(
    sqlite_url: str, studies: _Studies, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = studies.create(sqlite_url)
    backend = cached_backend(storage_of(study))
    name = "_set_trial_intermediate_value_without_commit"
    assert hasattr(backend, name)
    writes: list[tuple[Any, ...]] = []
    original = getattr(backend, name)
    monkeypatch.setattr(backend, name, lambda *args: writes.append(args) or original(*args))
    a, b = study.ask(), study.ask()
    with one_read_per_pass(study, [a, b]):
        a.report(0.5, step=1)
        b.report(0.6, step=1)
    assert len(writes) == 2, f"the pass wrote {len(writes)} values through it"
    assert [t.intermediate_values for t in study.get_trials()] == [{1: 0.5}, {1: 0.6}]
    study.tell(a, 1.0)
    with pytest.raises(UpdateFinishedTrialError):  # what the flush falls back on, one value at a time
        with rdb_session(backend, True) as session:
            original(session, trial_id_of(a), 2, 0.1)


# --- a journal storage's internals (backends/optuna/_attrs.py) -----------------------------------------------

_JOURNAL_USERS = "backends.optuna._attrs (enqueue_many, _journal_append)"


@covers(
    "_thread_lock",
    internal="JournalStorage._thread_lock",
    user=_JOURNAL_USERS,
    why="appending a record in one write no other thread of the process interleaves",
    check="Optuna's own writes must hold this lock",
)
def test_the_journal_lock_is_the_one_optunas_own_writes_take(journal_url: str, studies: _Studies) -> None:
    study = studies.create(journal_url)
    storage, trial_id = storage_of(study), trial_id_of(study.ask())
    done = threading.Event()

    def write() -> None:
        storage.set_trial_user_attr(trial_id, "k", 1)
        done.set()

    with storage._thread_lock:
        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        waited = not done.wait(0.2)
    thread.join(5)
    assert waited and done.is_set(), "set_trial_user_attr did not wait for the lock"


@covers(
    "_backend",
    internal="JournalStorage._backend",
    user=_JOURNAL_USERS,
    why="a trial's record and final state as one append",
    check="it must be the BaseJournalBackend given to JournalStorage",
)
def test_the_journal_backend_is_the_log_tunebridge_appends_to(journal_url: str, studies: _Studies) -> None:
    from optuna.storages.journal import BaseJournalBackend

    study = studies.create(journal_url)
    storage, trial_id = storage_of(study), trial_id_of(study.ask())
    assert isinstance(storage._backend, BaseJournalBackend) and _backend(storage) == (storage, "journal")
    appends: list[int] = []
    original = storage._backend.append_logs
    storage._backend.append_logs = lambda logs: appends.append(len(logs)) or original(logs)
    try:
        write_attrs(storage, trial_id, {"a": 1, "b": 2, _record.WORKER: "w"})
    finally:
        del storage._backend.append_logs
    assert appends == [3], f"three attributes took appends of {appends} logs"
    assert storage.get_trial(trial_id).user_attrs == {"a": 1, "b": 2}


@covers(
    "_replay_result",
    "_trials",
    internal="JournalStorage._replay_result (worker_id, _trials)",
    user=_JOURNAL_USERS,
    why="writing logs as this worker and refusing a record for a finished trial",
    check="worker_id must be what Optuna writes in this thread's logs, _trials the FrozenTrials by id",
)
def test_the_journal_replay_names_this_worker_and_holds_the_trials(journal_url: str, studies: _Studies) -> None:
    study = studies.create(journal_url)
    trial = study.ask()
    storage = storage_of(study)
    replay = storage._replay_result
    last = list(storage._backend.read_logs(0))[-1]
    assert isinstance(replay.worker_id, str) and last["worker_id"] == replay.worker_id, last
    frozen = replay._trials.get(trial_id_of(trial))
    assert isinstance(frozen, FrozenTrial) and (frozen.number, frozen.state) == (0, TrialState.RUNNING), frozen


@covers(
    "_sync_with_backend",
    internal="JournalStorage._sync_with_backend",
    user="backends.optuna._attrs._journal_append",
    why="seeing a trial finished elsewhere, and reading past this worker's refused logs",
    check="it must apply the logs appended since, raise for a refused log of this worker, then go on past it",
)
def test_syncing_reads_other_processes_logs_and_reads_past_a_refused_one(journal_url: str, studies: _Studies) -> None:
    from optuna.storages.journal._storage import JournalOperation

    study = studies.create(journal_url)
    other = studies.load(study, journal_url)  # another process
    trial = study.ask()
    storage, trial_id = storage_of(study), trial_id_of(trial)
    other.tell(trial.number, 1.0)
    with storage._thread_lock:
        assert storage._replay_result._trials[trial_id].state == TrialState.RUNNING  # not read yet
        storage._sync_with_backend()
        assert storage._replay_result._trials[trial_id].state == TrialState.COMPLETE
        log = {"trial_id": trial_id, "user_attr": {"late": 1}}
        storage._backend.append_logs(
            [{"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "worker_id": storage._replay_result.worker_id, **log}]
        )
        with pytest.raises(UpdateFinishedTrialError):
            storage._sync_with_backend()
        storage._sync_with_backend()  # past it
    with pytest.raises(UpdateFinishedTrialError):  # tunebridge's append refuses it too
        write_attrs(storage, trial_id, {"late": 2})
    assert storage.get_trial(trial_id).user_attrs == {}


@covers(
    "optuna.storages.journal._storage.JournalOperation",
    internal="the journal's log format (JournalOperation and the fields of CREATE_TRIAL, SET_TRIAL_USER_ATTR, "
    "SET_TRIAL_SYSTEM_ATTR, SET_TRIAL_STATE_VALUES)",
    user=_JOURNAL_USERS,
    why="queueing a budget and writing a record as one append",
    check="tunebridge's logs must replay as Optuna's own calls do",
)
def test_the_logs_tunebridge_writes_replay_as_optunas_own_calls(tmp_path: Path, studies: _Studies) -> None:
    ours, theirs = studies.create(str(tmp_path / "ours.log")), studies.create(str(tmp_path / "theirs.log"))
    items = [({"x": 0.1}, {_record.SLOT: True}), ({"x": 0.2}, {_record.SLOT: True, "note": "n"})]
    enqueue_many(ours, items)  # one append of CREATE_TRIAL logs
    for params, attrs in items:
        enqueue(theirs, params, attrs)  # Optuna's add_trial
    for study in (ours, theirs):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        if study is ours:
            tell(study, trial, {"loss": x, _record.WORKER: "w"}, values=x)  # one append with the state change
        else:
            trial.set_user_attr("loss", x)
            trial.storage.set_trial_system_attr(trial_id_of(trial), "tb_worker", "w")
            study.tell(trial, x)

    def fields(t: FrozenTrial) -> tuple[Any, ...]:
        done = t.datetime_complete is not None
        return t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs, t.datetime_start is not None, done

    got, expected = [fields(t) for t in ours.get_trials()], [fields(t) for t in theirs.get_trials()]
    assert got == expected, f"tunebridge's logs replay as {got}, Optuna's own calls as {expected}"


_SNAPSHOT = {
    "internal": "optuna.storages.journal._base.BaseJournalSnapshot",
    "user": "backends.optuna._attrs.enqueue_many",
    "why": "queueing trials one by one on a journal that Optuna snapshots every hundred created trials",
    "check": "it must be the class JournalStorage checks before saving a snapshot, and JournalRedisBackend one",
}


@covers("optuna.storages.journal._base.BaseJournalSnapshot", **_SNAPSHOT)
def test_a_snapshot_taking_journal_is_told_apart_as_optuna_does() -> None:
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend
    from optuna.storages.journal import _storage as journal_storage
    from optuna.storages.journal._base import BaseJournalSnapshot

    assert journal_storage.BaseJournalSnapshot is BaseJournalSnapshot
    assert issubclass(JournalRedisBackend, BaseJournalSnapshot)
    assert not issubclass(JournalFileBackend, BaseJournalSnapshot)


@pytest.mark.services
@covers("optuna.storages.journal._base.BaseJournalSnapshot", **_SNAPSHOT)
def test_a_redis_journal_queues_its_trials_one_by_one(redis_url: str, studies: _Studies) -> None:
    study = studies.create(redis_url)
    storage = storage_of(study)
    appends: list[int] = []
    original = storage._backend.append_logs
    storage._backend.append_logs = lambda logs: appends.append(len(logs)) or original(logs)
    try:
        enqueue_many(study, [({"x": i / 10}, {_record.SLOT: True}) for i in range(3)])
    finally:
        del storage._backend.append_logs
    assert appends == [1, 1, 1], f"appends of {appends} logs"
    assert [t.system_attrs["fixed_params"] for t in study.get_trials()] == [{"x": 0.0}, {"x": 0.1}, {"x": 0.2}]


# --- the samplers' reads (backends/optuna/_ordered.py) -----------------------------------------------------------

# What the order-aware samplers take from the study, other than trials, through OrderedChoices' view of it.
NOT_TRIALS = {"_storage", "_study_id", "_is_multi_objective", "direction", "directions", "study_name"}


def _order_aware(cls: type) -> optuna.samplers.BaseSampler:
    options: dict[str, dict[str, Any]] = {
        "TPESampler": {"n_startup_trials": 1},
        "GPSampler": {"n_startup_trials": 1},
        "NSGAIISampler": {"population_size": 2},
        "NSGAIIISampler": {"population_size": 2},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(seed=0, **options.get(cls.__name__, {}))


class _Calls:
    """An object's attributes, each one logged by name when read."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        self._inner, self._log = inner, log

    def __getattr__(self, name: str) -> Any:
        self._log.append(name)
        return getattr(self._inner, name)


@pytest.mark.parametrize("cls", ORDER_AWARE, ids=lambda cls: cls.__name__)
@covers(
    "_get_trials",
    internal="how the order-aware samplers read the study",
    user="backends.optuna._ordered._IndexView",
    why="showing the sampler each ordered choice as its index",
    check="they must read trials only through Study._get_trials(deepcopy, states, use_cache), which the view "
    "translates; a new read of the study must be translated too",
)
def test_order_aware_samplers_read_trials_only_through_study_get_trials(
    cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[bool] = []
    names: list[str] = []
    storage_calls: list[str] = []
    get_trials, getattr_ = _IndexView._get_trials, _IndexView.__getattr__

    def counted(self: _IndexView, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        reads.append(True)
        return get_trials(self, *args, **kwargs)

    def logged(self: _IndexView, name: str) -> Any:
        names.append(name)
        value = getattr_(self, name)
        return _Calls(value, storage_calls) if name == "_storage" else value

    monkeypatch.setattr(_IndexView, "_get_trials", counted)
    monkeypatch.setattr(_IndexView, "__getattr__", logged)
    space = Space(x=Float(0.0, 1.0), y=Float(0.0, 1.0), width=Choice([32, 64, 128], ordered=True))
    study = optuna.create_study(sampler=with_order(_order_aware(cls), space))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for _ in range(4):
            trial = study.ask()
            x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
            study.tell(trial, x + y + trial.suggest_categorical("width", (32, 64, 128)) / 128)
    assert list(inspect.signature(optuna.Study._get_trials).parameters) == ["self", "deepcopy", "states", "use_cache"]
    assert reads, f"{cls.__name__} read no trials through Study._get_trials"
    assert set(names) <= NOT_TRIALS, f"{cls.__name__} now also reads Study.{sorted(set(names) - NOT_TRIALS)}"
    trial_reads = sorted({n for n in storage_calls if n.startswith(("get_all_trials", "get_trial", "get_best_trial"))})
    assert not trial_reads, f"{cls.__name__} reads trials from Study._storage directly: {trial_reads}"


# --- Ray Tune's internals (backends/ray/) -----------------------------------------------------------------------


def _ray_changed(internal: str, user: str, why: str) -> str:
    import ray

    return f"ray {ray.__version__} changed {internal} (used by tunebridge.{user} for {why})"


def test_ray_backwards_compatible_numpy_rng() -> None:
    sample = pytest.importorskip("ray.tune.search.sample")
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    rng = getattr(sample, "_BackwardsCompatibleNumpyRng", None)
    where = _ray_changed(
        "ray.tune.search.sample._BackwardsCompatibleNumpyRng",
        "backends.ray._sample.sample_configs",
        "drawing configs as a seeded Ray run does (tests/schema/test_sample.py compares them with one)",
    )
    assert rng is not None, where

    def draws(seed: int) -> list[float]:
        state = rng(seed)
        return [next(generate_variants({"x": tune.uniform(0, 1)}, random_state=state))[1]["x"] for _ in range(3)]

    assert draws(3) == draws(3) != draws(4), where


def test_ray_schedulers_keep_their_mode_in_mode() -> None:
    schedulers = pytest.importorskip("ray.tune.schedulers")
    for cls in (schedulers.ASHAScheduler, schedulers.HyperBandScheduler, schedulers.MedianStoppingRule):
        assert (cls(mode="max")._mode, cls()._mode) == ("max", None), _ray_changed(
            f"{cls.__name__}._mode",
            "backends.ray._schedulers",
            "refusing a scheduler built with its own mode (the study gives it one)",
        )


def test_ray_result_grid_keeps_its_experiment_analysis() -> None:
    tune = pytest.importorskip("ray.tune")
    analysis = SimpleNamespace(trials=[])
    grid = tune.ResultGrid(analysis)  # type: ignore[arg-type]
    assert getattr(grid, "_experiment_analysis", None) is analysis, _ray_changed(
        "ResultGrid._experiment_analysis",
        "backends.ray._run.run_ray",
        "the trials of a run whose experiment folder is not reachable from here",
    )


# --- the list is complete: every private Optuna name in src/tunebridge has a test here --------------------------

SRC = Path(tunebridge.__file__).parent
# tunebridge's own members that happen to share a private name with Optuna: (module under src/tunebridge, name).
OWN = {("schema/_space.py", "_params")}  # Space._params, not FrozenTrial._params
_DEFINED = re.compile(r"(?:\bdef |\bclass |\bself\.|^)(_[A-Za-z]\w*)", re.MULTILINE)


@cache
def _optuna_private_names() -> frozenset[str]:
    """Private names that Optuna defines: functions, classes, attributes, modules."""
    root = Path(optuna.__file__).parent
    names: set[str] = set()
    for path in root.rglob("*.py"):
        names.update(n for n in _DEFINED.findall(path.read_text()) if not n.startswith("__"))
        names.update(p.removesuffix(".py") for p in path.relative_to(root).parts if p.startswith("_") and "__" not in p)
    return frozenset(names)


@cache
def _optuna_private_methods() -> frozenset[str]:
    """Private members of the Optuna classes tunebridge wraps or imitates (a method overriding one is a use)."""
    classes = (optuna.Study, optuna.Trial, FrozenTrial, BaseStorage, RDBStorage, optuna.storages.JournalStorage)
    classes += (optuna.samplers.BaseSampler, optuna.pruners.BasePruner)
    return frozenset(n for c in classes for n in dir(c) if n.startswith("_") and not n.startswith("__"))


def _uses(node: ast.AST) -> list[str]:
    names = _optuna_private_names()
    if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0].startswith("optuna"):
        private_module = any(part.startswith("_") for part in (node.module or "").split("."))
        return [f"{node.module}.{a.name}" for a in node.names if private_module or a.name.startswith("_")]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("optuna") and "._" in a.name]
    if isinstance(node, ast.Attribute) and node.attr in names:
        on_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        return [] if on_self else [node.attr]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
        return [node.value]  # getattr(storage, "_backend"), type(s).__name__ == "_CachedStorage"
    if isinstance(node, ast.ClassDef):
        methods = _optuna_private_methods()
        return [f.name for f in node.body if isinstance(f, ast.FunctionDef) and f.name in methods]
    return []


def _private_uses(paths: list[Path], root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            for use in _uses(node):
                if (rel, use) not in OWN:
                    found[use].append(f"{rel}:{getattr(node, 'lineno', 0)}")
    return found


def test_the_scan_finds_each_kind_of_private_use(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from optuna.storages._rdb import models\n"
        "from optuna.study import _tell\n"
        "from optuna.storages import RDBStorage\n"
        "class View:\n"
        "    def _get_trials(self): return self._storage\n"
        "    def _mine(self): pass\n"
        "def f(study, storage):\n"
        "    return study._study_id, getattr(storage, '_backend'), storage.public\n"
    )
    found = _private_uses([module], tmp_path)
    expected = {"optuna.storages._rdb.models", "optuna.study._tell", "_get_trials", "_study_id", "_backend"}
    assert set(found) == expected, found


def test_every_private_optuna_use_in_tunebridge_has_a_test_here() -> None:
    found = _private_uses(sorted(SRC.rglob("*.py")), SRC)
    untested = {use: where for use, where in found.items() if use not in COVERED}
    assert not untested, (
        f"private Optuna internals used without a test in {Path(__file__).name}: {untested}. Prefer a public "
        "API; else add an accessor to backends/optuna/_internals.py and a test here marked @covers(<name>) "
        "that fails with changed(...) when Optuna changes it. A name of tunebridge's own that Optuna also "
        "uses goes in OWN."
    )
    stale = {use: tests for use, tests in COVERED.items() if use not in found}
    assert not stale, f"internals no longer used by src/tunebridge: remove their tests {stale}"
