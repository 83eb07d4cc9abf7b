"""What every backend shares: the per-epoch reporter protocol and the outcome of one trial."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunebridge.schema import Scalar

__all__ = ["Objective", "Reporter", "TrialOutcome", "objective_values"]


class Reporter(Protocol):
    """Receives a trial's validation metrics once per epoch (epochs count from 1)."""

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        """Record ``metrics`` for ``epoch``; return True when the trial should stop now (pruned).

        ``checkpoint(path)``, when given, writes a resumable checkpoint into the folder ``path``;
        a backend that pauses and resumes trials (Ray's ASHA/PBT) calls it.
        """
        ...


@dataclass
class TrialOutcome:
    """How one trial ended.

    Attributes:
        metrics: Final validation metrics (every logged one) plus ``n_params`` when known.
        best: The metrics of the epoch where the monitored metric was best.
        epochs: The epoch the trial stopped at (1-based).
        best_epoch: The epoch of ``best``.
        pruned: Stopped by the pruner/scheduler.
        early_stopped: Stopped by within-trial early stopping.
    """

    metrics: dict[str, float]
    best: dict[str, float]
    epochs: int
    best_epoch: int
    pruned: bool = False
    early_stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Objective = Callable[[dict[str, Scalar], Reporter], TrialOutcome]


def objective_values(outcome: TrialOutcome, metrics: list[str]) -> list[float]:
    """The objective values of a trial: each metric at the best epoch of the first one.

    The best epoch (not the last) is used because within-trial early stopping runs ``patience``
    epochs past the best one; the same rule holds for every backend.
    """
    out = []
    for m in metrics:
        if m in outcome.best:
            out.append(float(outcome.best[m]))
        elif m in outcome.metrics:
            out.append(float(outcome.metrics[m]))
        else:
            from tunebridge.errors import MetricNotFoundError

            raise MetricNotFoundError(m, list(outcome.metrics))
    return out
