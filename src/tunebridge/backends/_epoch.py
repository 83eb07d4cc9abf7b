"""The end of a trial's epoch, decided in one place for every way of training: :class:`TrialEpochs`.

After each validation a trial (an unfused Lightning run, or a member of a fused cohort) does the same
things, in this order:

1. check the epoch's metrics (:func:`~tunebridge.backends._base.check_epoch_metrics`);
2. record them (epoch -> metrics; a second validation in the same epoch replaces the first);
3. keep this epoch's weights when it is the trial's objective epoch
   (:func:`~tunebridge.backends._base.objective_epoch`);
4. stop early by Lightning's ``EarlyStopping`` rule (:class:`EarlyStopRule`);
5. report to its backend, and stop when pruned, unless this is the budget's last epoch
   (:func:`~tunebridge.backends._base.may_prune`).

:meth:`TrialEpochs.validated` decides 1-4 and :meth:`TrialEpochs.reported` decides 5; the object
carries what the decisions need (history, best monitored value, checks without improvement, flags).
What is *done* about a decision stays with the caller: taking a snapshot, writing a checkpoint, calling
the reporter, telling a Trainer to stop. The report comes after the snapshot, so the kept weights are
those of the reported value even when the backend pauses the trial while it reports.

Standard library only (no torch): ``tests/backends/test_epoch.py`` holds the early-stopping decisions
equal to Lightning's own ``EarlyStopping`` callback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, overload

from tunebridge._rules import check_mode, is_int_at_least
from tunebridge._vocab import OBJECTIVE_RULES
from tunebridge.backends._base import TrialOutcome, check_epoch_metrics, may_prune, objective_epoch
from tunebridge.errors import MetricNotFoundError
from tunebridge.schema import EarlyStoppingSpec

__all__ = ["N_PARAMS", "EarlyStopRule", "EpochDecision", "FollowsTrialEpochs", "TrialEpochs", "count_params"]

#: The metric every trial reports with each epoch's metrics: its module's trainable parameters (an objective
#: a multi-objective pruner can compare at every rung, e.g. ``metric: [val_acc, n_params]``).
N_PARAMS = "n_params"


def count_params(module: Any) -> float:
    """A module's trainable parameters (``module.parameters()`` with ``requires_grad``)."""
    return float(sum(p.numel() for p in module.parameters() if p.requires_grad))


@dataclass(frozen=True)
class EarlyStopRule:
    """Within-trial early stopping, as Lightning's ``EarlyStopping(monitor, mode, patience, min_delta)``.

    A validation improves when ``monitor`` beats the best value so far by more than ``min_delta``
    (``current + min_delta < best`` in ``min`` mode, ``current - min_delta > best`` in ``max``); the
    trial stops after ``patience`` validations in a row without improvement, or at once when the
    monitored value is NaN or infinite (Lightning's ``check_finite``). A validation that does not log
    ``monitor`` is skipped (Lightning's ``strict=False``).

    Attributes:
        monitor: The metric watched.
        mode: ``"min"`` or ``"max"``.
        patience: Validations without improvement before the trial stops (at least 1).
        min_delta: The smallest change that counts as an improvement (at least 0).
    """

    monitor: str
    mode: str
    patience: int = 3
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        check_mode(self.mode, path="EarlyStopRule")
        if not is_int_at_least(self.patience, 1):
            raise ValueError(f"EarlyStopRule: `patience >= 1` must hold, but got patience={self.patience!r}.")
        if not (math.isfinite(self.min_delta) and self.min_delta >= 0):
            raise ValueError(f"EarlyStopRule: `min_delta >= 0` must hold, but got min_delta={self.min_delta!r}.")

    @overload
    @classmethod
    def of(cls, spec: EarlyStoppingSpec, *, metric: str, mode: str) -> EarlyStopRule: ...

    @overload
    @classmethod
    def of(cls, spec: None, *, metric: str, mode: str) -> None: ...

    @overload
    @classmethod
    def of(cls, spec: EarlyStoppingSpec | None, *, metric: str, mode: str) -> EarlyStopRule | None: ...

    @classmethod
    def of(cls, spec: EarlyStoppingSpec | None, *, metric: str, mode: str) -> EarlyStopRule | None:
        """The rule of a run's ``early_stopping`` spec (``monitor`` and ``mode`` default to the run's own).

        Raises:
            SchemaError: ``monitor`` is not the run's metric and has no ``mode`` (:meth:`EarlyStoppingSpec.check_run`).
        """
        if spec is None:
            return None
        spec.check_run(metric, mode)
        return cls(spec.monitor or metric, spec.mode or mode, spec.patience, spec.min_delta)

    @property
    def worst(self) -> float:
        """The best value before any validation: every finite value improves on it."""
        return math.inf if self.mode == "min" else -math.inf

    def improves(self, current: float, best: float) -> bool:
        """Whether ``current`` improves on ``best`` by more than ``min_delta``."""
        if self.mode == "min":
            return current + self.min_delta < best
        return current - self.min_delta > best


@dataclass(frozen=True)
class EpochDecision:
    """What a trial does after one validation (before it reports).

    Attributes:
        epoch: The epoch validated (1-based).
        keep: This epoch is the trial's objective epoch: its weights are the ones to keep.
        early_stop: Within-trial early stopping ends the trial after this epoch.
        reason: Why it stops early, in words (None when it goes on).
    """

    epoch: int
    keep: bool
    early_stop: bool = False
    reason: str | None = None


class TrialEpochs:
    """One trial's end-of-epoch decisions and the state they carry.

    Args:
        metric: The run's metric (it must be logged and finite every epoch).
        mode: ``"min"`` or ``"max"``, for ``metric``.
        rule: ``"best_epoch"`` or ``"last_epoch"``: which epoch gives the trial its value (and weights).
        budget: The trial's last epoch, which is never pruned (None: no budget).
        early_stopping: Within-trial early stopping (None: none).

    Attributes:
        history: Epoch -> metrics of every epoch validated.
        best: The best monitored value so far (early stopping; NaN without it).
        wait: Validations since the last improvement (early stopping).
        early_stopped: Early stopping ended the trial.
        reason: Why, in words.
        pruned: The backend pruned the trial.

    Example:
        >>> trial = TrialEpochs("val_loss", "min", budget=3, early_stopping=EarlyStopRule("val_loss", "min", 1))
        >>> trial.validated(1, {"val_loss": 0.5}).keep
        True
        >>> decision = trial.validated(2, {"val_loss": 0.7})
        >>> (decision.keep, decision.early_stop)
        (False, True)
        >>> trial.reported(2, asked=False)  # the backend did not ask it to stop
        False
        >>> TrialEpochs("val_loss", "min", budget=3).reported(3, asked=True)  # the budget's last epoch
        False
    """

    def __init__(
        self,
        metric: str,
        mode: str,
        *,
        rule: str = "best_epoch",
        budget: int | None = None,
        early_stopping: EarlyStopRule | None = None,
    ) -> None:
        check_mode(mode, path="TrialEpochs")
        if rule not in OBJECTIVE_RULES:
            raise ValueError(
                f"TrialEpochs: `rule` must be {' or '.join(map(repr, OBJECTIVE_RULES))}, but got {rule!r}."
            )
        self.metric, self.mode, self.rule = metric, mode, rule
        self.budget = budget
        self.early_stopping = early_stopping
        self.history: dict[int, dict[str, float]] = {}
        # Metrics that hold for every epoch (``n_params``): part of each epoch's, unless the module logs its own.
        self.constants: dict[str, float] = {}
        self.earlier: dict[int, dict[str, float]] = {}  # epochs trained before a resume (its point's record)
        self.best = early_stopping.worst if early_stopping is not None else math.nan
        self.wait = 0
        self.early_stopped = False
        self.reason: str | None = None
        self.pruned = False

    def validated(
        self, epoch: int, metrics: Mapping[str, float], *, earlier: Mapping[int, Mapping[str, float]] | None = None
    ) -> EpochDecision:
        """Check and record one epoch's validation metrics; decide whether to keep its weights and stop early.

        Args:
            epoch: The epoch (1-based).
            metrics: Its validation metrics.
            earlier: Epochs trained before a resume (a resumed trial's reporter knows them): they count
                when choosing the objective epoch; this trial's own epochs win over them.

        Raises:
            MetricNotFoundError: The run's metric is not logged (lists those that are).
            NonFiniteMetricError: The run's metric or a loss is NaN or infinite.
        """
        # What the module logged is checked (an error lists those), unless the metric is one of the constants.
        check_epoch_metrics(
            epoch, metrics if self.metric not in self.constants else self.epoch_metrics(metrics), self.metric
        )
        metrics = self.epoch_metrics(metrics)
        self.history[epoch] = metrics
        if earlier:
            self.earlier = {e: dict(m) for e, m in earlier.items() if e < min(self.history)}
        keep = objective_epoch(self.seen, self.metric, self.mode, self.rule) == epoch
        stop, reason = self._early_stop(metrics)
        if stop:
            self.early_stopped, self.reason = True, reason
        return EpochDecision(epoch, keep, stop, reason)

    def epoch_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """One epoch's metrics as reported: the logged ones and :attr:`constants`."""
        return {**self.constants, **metrics}

    @property
    def seen(self) -> dict[int, dict[str, float]]:
        """Every epoch of the trial: those before a resume, then its own (which win)."""
        return {**self.earlier, **self.history} if self.earlier else self.history

    def reported(self, epoch: int, asked: bool) -> bool:
        """Whether the trial is pruned now: its backend ``asked`` to stop, and ``epoch`` is not the budget's last."""
        if asked and may_prune(epoch, self.budget):
            self.pruned = True
        return self.pruned

    def outcome(self, extra: Mapping[str, float] | None = None) -> TrialOutcome:
        """The trial's outcome: its last epoch's metrics and its objective epoch's (both with ``extra``).

        Raises:
            MetricNotFoundError: No epoch was validated.
        """
        seen = self.seen
        chosen = objective_epoch(seen, self.metric, self.mode, self.rule)
        if chosen is None or not self.history:
            raise MetricNotFoundError(self.metric, [])
        last = max(self.history)
        more = dict(extra or {})
        return TrialOutcome(
            metrics={**self.history[last], **more},
            best={**self.epoch_metrics(seen[chosen]), **more},  # an epoch before a resume has them too
            epochs=last,
            best_epoch=chosen,
            pruned=self.pruned,
            early_stopped=self.early_stopped and not self.pruned,
        )

    def _early_stop(self, metrics: Mapping[str, float]) -> tuple[bool, str | None]:
        """Lightning's ``EarlyStopping._evaluate_stopping_criteria`` on the monitored value: (stop?, why)."""
        es = self.early_stopping
        if es is None or es.monitor not in metrics:
            return False, None
        current = float(metrics[es.monitor])
        if not math.isfinite(current):
            return True, f"monitored metric {es.monitor} = {current} is not finite (best so far: {self.best})"
        if es.improves(current, self.best):
            self.best, self.wait = current, 0
            return False, None
        self.wait += 1
        if self.wait >= es.patience:
            return True, f"monitored metric {es.monitor} did not improve in {self.wait} validations (best: {self.best})"
        return False, None


class FollowsTrialEpochs:
    """A trial's holder (a Lightning report callback, a fused member) whose history and flags are its
    :class:`TrialEpochs`' (``trial_epochs``): read there, never kept twice."""

    trial_epochs: TrialEpochs

    @property
    def history(self) -> dict[int, dict[str, float]]:
        """Epoch -> validation metrics."""
        return self.trial_epochs.history

    @property
    def pruned(self) -> bool:
        return self.trial_epochs.pruned

    @property
    def early_stopped(self) -> bool:
        return self.trial_epochs.early_stopped
