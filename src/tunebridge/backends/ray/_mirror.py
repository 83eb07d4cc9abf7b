"""Finished Ray trials written into the run's Optuna study, one at a time and exactly once.

The Optuna study is what ``tunebridge show``, reports and optuna-dashboard read, whatever the
backend. A driver-side ``ray.tune.Callback`` records every trial as soon as it ends (so a run killed
midway keeps its finished trials); after a run every trial Ray knows of is synced again, and trials
already in the study (by ``ray_trial_id``) are skipped, so a resume never duplicates one. A trial is
added with its whole record in one write; the bookkeeping (Ray trial id, node, retries) as system
attributes (see ``tunebridge._record``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.backends._base import StudyEvents, TrialOutcome
from tunebridge.backends._checkpoints import discard_checkpoint
from tunebridge.backends._options import StudyLimits
from tunebridge.backends.optuna import StudyOptions, keep_best_checkpoints, params_and_distributions
from tunebridge.backends.ray._convert import ray_config_to_config
from tunebridge.backends.ray._schedulers import TIME_ATTR

__all__ = ["MIRRORS", "Mirror", "MirrorCallback", "error_of", "failure_of", "finished"]

_OUTCOME_FIELDS = tuple(f.name for f in dataclasses.fields(TrialOutcome))
# Live mirrors by experiment path. The callback itself holds only the path: Ray pickles callbacks
# with the experiment, and a restored experiment's callback must find the study of the new run.
MIRRORS: dict[str, Mirror] = {}


def error_of(trial: Any) -> BaseException | str:
    """The exception a Ray trial failed with (its original cause when it could be pickled), or its text."""
    error: Any = None
    path = getattr(trial, "pickled_error_file", None)
    try:
        if path and os.path.exists(path):
            from ray import cloudpickle

            with open(path, "rb") as f:
                error = cloudpickle.load(f)
        if error is None:
            error = trial.get_pickled_error() or trial.get_error()
    except Exception as exc:  # an unpicklable error: fall back to its text
        error = f"{type(exc).__name__} while reading the trial's error: {exc}"
    if error is None:
        return "the Ray trial failed without an error record"
    return error  # type: ignore[no-any-return]


def failure_of(error: BaseException | str) -> dict[str, Any]:
    """The failure attributes of a Ray trial, like the Optuna backend's: the user's exception, not Ray's wrapper."""
    if isinstance(error, str):
        reason = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        return _record.failure_attrs(reason, traceback=error)
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):  # Ray's wrapper: its text holds the remote traceback
        return _record.failure_attrs(cause, traceback=str(error))
    return _record.failure_attrs(error)


class Mirror:
    """Writes Ray trials into ``study`` and advances the progress bar."""

    def __init__(
        self, study: optuna.Study, opts: StudyOptions, bar: StudyEvents | None = None, *, keep_checkpoints: int = 1
    ) -> None:
        self.study, self.opts, self.bar = study, opts, bar
        self.keep_checkpoints = keep_checkpoints
        self.limits: StudyLimits | None = None  # checked by the run's stopper after every result
        self.started = time.monotonic()
        self.stopped = False  # set when the limits ended the run
        self.curves: dict[str, dict[int, float]] = {}
        self.retries: dict[str, int] = {}  # Ray's retries of a failed trial (FailureConfig), by trial id
        self.known = {_record.bookkeeping(t, _record.RAY_TRIAL_ID) for t in study.get_trials(deepcopy=False)} - {None}
        self.experiment = ""

    def on_result(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Keep the monitored metric of every epoch (the study's intermediate values)."""
        curve = self.curves.setdefault(trial_id, {})
        if "tb_curve" in result:
            curve.update({int(k): float(v) for k, v in json.loads(result["tb_curve"]).items()})
        metric = self.opts.metrics[0]
        if not result.get("tb_done") and metric in result and TIME_ATTR in result:
            curve[int(result[TIME_ATTR])] = float(result[metric])

    def record(
        self,
        trial_id: str,
        ray_config: Mapping[str, Any],
        last_result: Mapping[str, Any] | None,
        error: BaseException | str | None,
    ) -> bool:
        """Add one finished Ray trial to the study (False when it is already there)."""
        if trial_id in self.known:
            return False
        result = dict(last_result or {})
        config = ray_config_to_config(ray_config)
        attrs: dict[str, Any] = {
            **_record.config_attrs(config),
            _record.RAY_TRIAL_ID: trial_id,
            _record.RAY_EXPERIMENT: self.experiment,
        }
        if isinstance(result.get(_record.RAY_NODE), str):
            attrs[_record.RAY_NODE] = result[_record.RAY_NODE]
        if self.retries.get(trial_id):
            attrs[_record.RAY_RETRIES] = self.retries.pop(trial_id)
        curve = dict(self.curves.pop(trial_id, {}))
        values: list[float] | None = None
        outcome = json.loads(result["tb_outcome"]) if result.get("tb_done") and "tb_outcome" in result else None
        if error is not None:
            state = TrialState.FAIL
            attrs.update(failure_of(error))
        elif outcome is not None:
            curve.update({int(k): float(v) for k, v in outcome["curve"].items()})
            attrs.update(_record.outcome_attrs(TrialOutcome(**{k: outcome[k] for k in _OUTCOME_FIELDS})))
            state = TrialState.PRUNED if outcome["pruned"] else TrialState.COMPLETE
            values = None if outcome["pruned"] else [float(v) for v in outcome["values"]]
        else:  # stopped by the scheduler before the objective returned
            state = TrialState.PRUNED
            discard_checkpoint(result.get("tb_kept"))
            if TIME_ATTR in result:
                attrs[_record.EPOCHS] = int(result[TIME_ATTR])
            for key, value in result.items():
                if key in self.opts.metrics and isinstance(value, (int, float)):
                    attrs[f"{_record.FINAL_PREFIX}{key}"] = float(value)
        n_obj = len(self.opts.metrics)
        if state == TrialState.PRUNED and n_obj == 1 and curve:
            values = [curve[max(curve)]]  # what Optuna's tell() stores for a pruned trial
        params, dists = self._params(config)
        user_attrs, system_attrs = _record.split_attrs(attrs)  # the bookkeeping out of the user's attributes
        trial = optuna.trial.create_trial(
            state=state,
            values=values,
            params=params,
            distributions=dists,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values=dict(sorted(curve.items())) if n_obj == 1 else None,
        )
        elapsed = result.get("time_total_s")
        if isinstance(elapsed, (int, float)) and trial.datetime_complete is not None:
            trial.datetime_start = trial.datetime_complete - datetime.timedelta(seconds=float(elapsed))
        self.study.add_trial(trial)
        self.known.add(trial_id)
        if self.keep_checkpoints > 0:
            keep_best_checkpoints(self.study, self.keep_checkpoints)
        if self.bar is not None:
            label = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "failed")
            self.bar.update(label, values[0] if values and state == TrialState.COMPLETE else None)
        return True

    def _params(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            return params_and_distributions(self.opts.space, config)
        except (KeyError, ValueError, TypeError):
            return {}, {}  # a config outside the space (its trial failed on validation): keep it as an attr only

    def sync(self, trials: Iterable[Any]) -> int:
        """Record every finished trial Ray knows of that the study lacks; returns how many were added."""
        added = 0
        for trial in trials:
            if trial.trial_id in self.known:
                continue
            if trial.status == "ERROR":
                added += self.record(trial.trial_id, trial.config, trial.last_result, error_of(trial))
            elif finished(trial):
                for_result = trial.last_result or {}
                self.on_result(trial.trial_id, for_result)
                added += self.record(trial.trial_id, trial.config, for_result, None)
        return added


def finished(trial: Any) -> bool:
    """Whether a Ray trial is over for tunebridge: its objective returned, or Ray stopped it after a result."""
    result = trial.last_result or {}
    return bool(result.get("tb_done")) or (trial.status == "TERMINATED" and result.get(TIME_ATTR) is not None)


def _callback_base() -> type:
    from ray.tune import Callback

    return Callback


class MirrorCallback(_callback_base()):  # type: ignore[misc]
    """Ray callback that records each trial in the live :class:`Mirror` of its experiment."""

    def __init__(self, key: str) -> None:
        self.key = key

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        mirror = MIRRORS.get(self.key)
        if mirror is not None:
            mirror.on_result(trial.trial_id, result)
            if result.get("tb_done"):
                # The objective has returned: the trial is finished whatever Ray does with it next
                # (HyperBand may still PAUSE it until its bracket is processed).
                mirror.record(trial.trial_id, trial.config, result, None)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        mirror = MIRRORS.get(self.key)
        if mirror is not None and (trial.last_result or {}).get(TIME_ATTR) is not None:
            mirror.record(trial.trial_id, trial.config, trial.last_result, None)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Ray retries a failed trial (its node was lost, say): counted, recorded once it finishes."""
        mirror = MIRRORS.get(self.key)
        if mirror is not None:
            mirror.retries[trial.trial_id] = mirror.retries.get(trial.trial_id, 0) + 1

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        mirror = MIRRORS.get(self.key)
        if mirror is not None:
            mirror.record(trial.trial_id, trial.config, trial.last_result, error_of(trial))
