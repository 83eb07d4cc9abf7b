"""MO-ASHA on the Ray backend: a trial scheduler over several metrics of each result.

Ray's schedulers compare one metric. :class:`MoAshaScheduler` records a trial's objective values when
a result's epoch is a rung of the trial's bracket, and stops it there by the one rule
(:class:`~tunebridge.backends._mo_asha.MoAsha`, the Optuna backend's too) over the values the other
trials recorded at that rung. A trial's bracket follows from its index: the order in which Ray added
it (``on_trial_add``), as an Optuna trial's follows from its number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunebridge.backends._mo_asha import MoAsha, check_metrics
from tunebridge.backends.ray._schedulers import TIME_ATTR
from tunebridge.errors import MetricNotFoundError

__all__ = ["MoAshaScheduler"]


def _fifo() -> type:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler


class MoAshaScheduler(_fifo()):  # type: ignore[misc]
    """MO-ASHA (or Hyperband of MO-ASHA brackets) over the objectives of each Ray result.

    Args:
        rule: The decision (modes, rungs, brackets, tie-break), shared with the Optuna backend.
        metrics: The objectives' metric names, in the study's order.

    Results without the epoch, and the trial's final result (``tb_done``), are not compared.
    """

    def __init__(self, rule: MoAsha, metrics: Sequence[str]) -> None:
        super().__init__()
        self.rule = rule
        self.metrics = check_metrics(type(self).__name__, metrics, rule.modes)
        self._index: dict[str, int] = {}  # trial id -> its index (order added)
        # (bracket, epoch) -> trial id -> values recorded there
        self._rungs: dict[tuple[int, int], dict[str, list[float]]] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives and their modes are the rule's: Ray's single metric is None here

    def index_of(self, trial: Any) -> int:
        """The trial's index: the order Ray added it in (a trial this scheduler never saw added comes next)."""
        return self._index.setdefault(trial.trial_id, len(self._index))

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.index_of(trial)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if TIME_ATTR not in result or result.get("tb_done"):
            return str(self.CONTINUE)
        return str(self.STOP if self.decide(trial, int(result[TIME_ATTR]), result) else self.CONTINUE)

    def decide(self, trial: Any, epoch: int, metrics: dict[str, Any]) -> bool:
        """Record a trial's values when ``epoch`` is a rung of its bracket; whether it stops there.

        Raises:
            MetricNotFoundError: An objective is not in the result (each is compared at every rung).
        """
        missing = [m for m in self.metrics if m not in metrics]
        if missing:
            raise MetricNotFoundError(missing[0], [k for k in metrics if not k.startswith(("tb_", "ray_"))])
        bracket = self.rule.bracket_of(self.index_of(trial))
        if epoch not in self.rule.rungs(bracket):
            return False
        recorded = self._rungs.setdefault((bracket, epoch), {})
        if trial.trial_id in recorded:  # a result repeated after a restore: decided already
            return False
        values = [float(metrics[m]) for m in self.metrics]
        others = list(recorded.values())
        recorded[trial.trial_id] = values
        return self.rule.stops(values, others)
