"""The Optuna internals that tunebridge needs and Optuna offers no public API for: one accessor each.

All of them were checked against optuna 5.1.0 (:data:`CHECKED_AGAINST`). Each one has a test in
``tests/backends/test_optuna_internals.py`` that fails with a message naming the internal, who uses it
and why when an Optuna release changes it; that file also scans ``src/tunebridge`` so that a private
use without a test fails too.

Internals used in one place only stay there: the database and journal fast paths (Optuna's RDB models
and ``*_without_commit`` writers, the journal's lock, log format and replay state) in ``_attrs.py`` and
``_reads.py``, the samplers' ``Study._get_trials`` in ``_ordered.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CHECKED_AGAINST",
    "cached_backend",
    "forget_cached_trials",
    "new_to_cache",
    "rdb_session",
    "set_storage",
    "storage_of",
    "study_id_of",
    "tell_without_copy",
    "trial_id_of",
]

CHECKED_AGAINST = "5.1.0"


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage ``study`` reads and writes through (``Study._storage``).

    Not the object given to ``create_study``: Optuna wraps an ``RDBStorage`` in its ``_CachedStorage``.
    Public: only ``Trial.storage``, for a trial. Checked against optuna 5.1.0.
    """
    return study._storage


def set_storage(study: optuna.Study, storage: BaseStorage) -> None:
    """Make ``study`` read and write through ``storage`` (every ``Study`` method reaches ``Study._storage``
    when it runs): :func:`~tunebridge.backends.optuna.one_read_per_pass`. Checked against optuna 5.1.0."""
    study._storage = storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its storage (``Study._study_id``), what every storage call takes.

    Public: ``storage.get_study_id_from_name(study.study_name)``, one more read of the storage per call.
    Checked against optuna 5.1.0.
    """
    return int(study._study_id)


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage (``Trial._trial_id``, ``FrozenTrial._trial_id``), what every storage call
    takes; the public ``number`` counts within the study. Checked against optuna 5.1.0."""
    return int(trial._trial_id)


def forget_cached_trials(study: optuna.Study) -> None:
    """Drop the trials the study caches for its sampler in this thread (``Study._thread_local.cached_all_trials``),
    as ``Study.ask`` does first: a claimed trial's sampler then reads the study afresh. Checked against optuna 5.1.0."""
    study._thread_local.cached_all_trials = None


def tell_without_copy(
    study: optuna.Study,
    trial: optuna.Trial,
    values: float | Sequence[float] | None = None,
    state: TrialState | None = None,
) -> None:
    """``study.tell(trial, values, state)`` without the deep copy of the finished trial it returns, which
    costs one more read of the storage (``optuna.study._tell._tell_with_warning``). Checked against optuna 5.1.0."""
    from optuna.study._tell import _tell_with_warning

    _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)


def cached_backend(storage: Any) -> Any | None:
    """The ``RDBStorage`` inside Optuna's ``_CachedStorage`` (its ``_backend``, which every write goes
    through), or None when ``storage`` is another kind. Checked against optuna 5.1.0."""
    if type(storage).__name__ != "_CachedStorage":
        return None
    return getattr(storage, "_backend", None)


def new_to_cache(storage: Any, trial_id: int) -> bool:
    """Whether ``storage`` has not read trial ``trial_id`` yet (``_CachedStorage._trial_id_to_study_id_and_number``;
    ``InMemoryStorage``'s map of the same name holds every trial it stores). Optuna's cache writes a trial's
    params only for trials it has read (a KeyError on suggest otherwise). Checked against optuna 5.1.0."""
    known = getattr(storage, "_trial_id_to_study_id_and_number", None)
    return known is not None and trial_id not in known


def rdb_session(backend: Any, ignore_integrity_error: bool = False) -> AbstractContextManager[Any]:
    """The session of an ``RDBStorage`` (``optuna.storages._rdb.storage._create_scoped_session`` over its
    ``scoped_session``), committed when the block ends. It is this thread's one: a storage call inside the
    block (``set_trial_state_values``) writes and commits in the same transaction. Checked against optuna 5.1.0."""
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(backend.scoped_session, ignore_integrity_error)
