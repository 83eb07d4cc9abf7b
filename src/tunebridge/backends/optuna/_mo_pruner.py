"""MO-ASHA on the Optuna backend: a pruner over the study's several values at each rung.

Optuna's ``Trial.report`` and ``Trial.should_prune`` refuse a study with several objectives
(optuna#3450). So :class:`MoAshaPruner` keeps its own rungs: when a trial reaches a rung epoch of its
bracket, the trial's reporter hands it the epoch's metrics (:func:`report_several`); it writes the
trial's objective values there as a system attribute (``tb_mo_rung_<bracket>_<epoch>``, like the
``completed_rung_<k>`` of Optuna's ``SuccessiveHalvingPruner``) and decides by the one rule
(:class:`~tunebridge.backends._mo_asha.MoAsha`) over the values every other trial of the study wrote at
that rung. The rung records live in the study, so workers sharing it see each other's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tunebridge import _record
from tunebridge.backends._mo_asha import MoAsha, check_metrics
from tunebridge.backends.optuna._internals import trial_id_of
from tunebridge.errors import MetricNotFoundError

__all__ = ["MoAshaPruner", "report_several"]


def _stored(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)  # JSON storages refuse NaN and infinities


class MoAshaPruner(optuna.pruners.BasePruner):
    """MO-ASHA (or Hyperband of MO-ASHA brackets) over a study's several objectives.

    Args:
        rule: The decision (modes, rungs, brackets, tie-break), shared with the Ray backend.
        metrics: The objectives' metric names, in the study's order.

    Example:
        >>> from tunebridge.backends._mo_asha import MoAsha
        >>> pruner = MoAshaPruner(MoAsha(("max", "min"), grace_period=1, reduction_factor=3, budget=9),
        ...                       ["val_acc", "n_params"])
        >>> pruner.rule.rungs()
        (1, 3)
    """

    def __init__(self, rule: MoAsha, metrics: Sequence[str]) -> None:
        self.rule = rule
        self.metrics = check_metrics(type(self).__name__, metrics, rule.modes)

    def key(self, bracket: int, epoch: int) -> str:
        """The system attribute holding a trial's values at a rung."""
        return f"{_record.SYSTEM_PREFIX}{_record.MO_RUNG_PREFIX}{bracket}_{epoch}"

    def values(self, epoch: int, metrics: Mapping[str, float]) -> list[float]:
        """The objective values of one epoch's metrics.

        Raises:
            MetricNotFoundError: An objective is not in this epoch's metrics (every objective is compared at each
                rung, so each must be logged every epoch; tunebridge adds ``n_params`` to every epoch's).
        """
        missing = [m for m in self.metrics if m not in metrics]
        if missing:
            raise MetricNotFoundError(missing[0], list(metrics))
        return [float(metrics[m]) for m in self.metrics]

    def record(self, trial: optuna.Trial, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record a trial's values when ``epoch`` is a rung of its bracket; whether it stops there."""
        values = self.values(epoch, metrics)
        bracket = self.rule.bracket_of(trial.number)
        if epoch not in self.rule.rungs(bracket):
            return False
        trial.storage.set_trial_system_attr(trial_id_of(trial), self.key(bracket, epoch), [_stored(v) for v in values])
        return self.prune(trial.study, trial.storage.get_trial(trial_id_of(trial)))

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` stops at the last rung it recorded, against every other trial's record there."""
        bracket = self.rule.bracket_of(trial.number)
        reached = [e for e in self.rule.rungs(bracket) if self.key(bracket, e) in trial.system_attrs]
        if not reached:
            return False
        key = self.key(bracket, reached[-1])
        others = [
            [float(v) for v in t.system_attrs[key]]
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and key in t.system_attrs
        ]
        return self.rule.stops([float(v) for v in trial.system_attrs[key]], others)


def report_several(trial: optuna.Trial, epoch: int, metrics: Mapping[str, float]) -> bool:
    """A multi-objective trial's epoch, told to its study's pruner: whether the trial is pruned.

    Only :class:`MoAshaPruner` prunes several objectives (tunebridge refuses any other pruner for them).
    """
    pruner: Any = trial.study.pruner
    return isinstance(pruner, MoAshaPruner) and pruner.record(trial, epoch, metrics)
