"""One read of the study per pass: many trials report an epoch and ask the pruner, the study is read once.

A fused cohort's members end an epoch together. Reported one by one, each report reads every running
trial back from the storage (a pruner looks at the other trials), so a cohort of K members reads the
study K times per epoch. Inside :func:`one_read_per_pass`, the study's storage is a view that reads the
trials once and then answers from that snapshot, kept up to date with every write made through it
(intermediate values, the rungs a pruner records): each member's pruner sees what it would have seen
reported alone, in the same order, except for what *other processes* write during the pass.

The pass's intermediate values are written when it ends, in one transaction on a database storage
(one per value elsewhere); everything else is written at once.
This swaps ``Study._storage`` (:func:`~tunebridge.backends.optuna._internals.set_storage`) and ``Trial.storage``
for the pass (Optuna's pruners and trials reach the storage only through them): ``tests/backends/test_reads.py``
and ``tests/backends/test_optuna_internals.py`` fail with a clear message if that changes.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Container, Iterable, Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tunebridge.backends.optuna._internals import rdb_session, set_storage, storage_of, study_id_of, trial_id_of

__all__ = ["one_read_per_pass"]


class _PassView(BaseStorage):
    """A storage that delegates to ``inner`` but reads the trials of ``study_id`` once."""

    def __init__(self, inner: BaseStorage, study_id: int) -> None:
        self._inner, self._study_id = inner, study_id
        self._trials: list[FrozenTrial] | None = None
        self._by_id: dict[int, int] = {}
        self._pending: list[tuple[int, int, float]] = []  # intermediate values written when the pass ends
        self.reads = 0

    def __getattr__(self, name: str) -> Any:  # a storage's own members (``_backend``, ``scoped_session``)
        return getattr(self._inner, name)

    def _snapshot(self) -> list[FrozenTrial]:
        if self._trials is None:
            self._trials = list(self._inner.get_all_trials(self._study_id, deepcopy=False))
            self._by_id = {trial_id_of(t): i for i, t in enumerate(self._trials)}
            self.reads += 1
            for trial_id, step, value in self._pending:
                self._update(trial_id, "intermediate", step, value)
        return self._trials

    def flush(self) -> None:
        """Write the pass's intermediate values: one transaction on a database, else one call each."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        from tunebridge.backends.optuna._attrs import _backend

        backend, kind = _backend(self._inner)
        if kind == "rdb" and hasattr(backend, "_set_trial_intermediate_value_without_commit"):
            try:  # Optuna's write of one value, minus its commit (checked against optuna 5.1.0)
                with rdb_session(backend, True) as session:
                    for trial_id, step, value in pending:
                        backend._set_trial_intermediate_value_without_commit(session, trial_id, step, value)
                return
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # a trial finished elsewhere (its worker looked dead): write the others one by one
        for trial_id, step, value in pending:
            try:
                self._inner.set_trial_intermediate_value(trial_id, step, value)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # that trial's config runs again elsewhere; its curve here is void

    def _update(self, trial_id: int, change: str, key: Any, value: Any) -> None:
        if self._trials is None or trial_id not in self._by_id:
            return
        i = self._by_id[trial_id]
        trial = copy.copy(self._trials[i])  # the snapshot's objects may be the storage's own: never mutated
        if change == "intermediate":
            trial.intermediate_values = {**trial.intermediate_values, key: value}
        elif change == "system":
            trial.system_attrs = {**trial.system_attrs, key: value}
        else:
            trial.user_attrs = {**trial.user_attrs, key: value}
        self._trials[i] = trial

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if study_id != self._study_id:
            return self._inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        trials = [t for t in self._snapshot() if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trial(self, trial_id: int) -> FrozenTrial:
        self._snapshot()
        if trial_id in self._by_id and self._trials is not None:
            return self._trials[self._by_id[trial_id]]
        return self._inner.get_trial(trial_id)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._pending.append((trial_id, step, intermediate_value))
        self._update(trial_id, "intermediate", step, intermediate_value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._inner.set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, "system", key, value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._inner.set_trial_user_attr(trial_id, key, value)
        self._update(trial_id, "user", key, value)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        self.flush()
        self._trials = None  # a trial ended or started: read again
        return self._inner.set_trial_state_values(trial_id, state, values)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float, distribution: Any) -> None:
        self._trials = None
        self._inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._trials = None
        return self._inner.create_new_trial(study_id, template_trial)

    # Everything else about studies goes to the storage itself.
    def create_new_study(self, directions: Any, study_name: str | None = None) -> int:
        return self._inner.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._inner.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> Any:
        return self._inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._inner.get_study_system_attrs(study_id)

    def get_all_studies(self) -> Any:
        return self._inner.get_all_studies()


@contextlib.contextmanager
def one_read_per_pass(study: optuna.Study, trials: Iterable[optuna.Trial] = ()) -> Iterator[_PassView]:
    """Within the block, ``study`` (and ``trials`` of it) read the study's trials once (see the module).

    ``trials`` are the live trials whose reports the pass makes: their writes go through the view too.
    Nested passes use the outer one.
    """
    inner = storage_of(study)
    if isinstance(inner, _PassView):
        yield inner
        return
    view = _PassView(inner, study_id_of(study))
    swapped = [t for t in trials if getattr(t, "storage", None) is inner]
    set_storage(study, view)
    for t in swapped:
        t.storage = view
    try:
        yield view
    finally:
        try:
            view.flush()
        finally:
            set_storage(study, inner)
            for t in swapped:
                t.storage = inner
