"""Backend-neutral pruning and early-stopping specs; the budget is counted in epochs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tunebridge._hints import did_you_mean
from tunebridge._rules import check_int, check_mode
from tunebridge.errors import SchemaError, show
from tunebridge.schema._codec import check_keys
from tunebridge.schema._params import _finite_float

__all__ = ["PRUNING_POLICIES", "EarlyStoppingSpec", "PruningSpec"]

PRUNING_POLICIES = ("none", "median", "asha", "hyperband", "patience")
Policy = Literal["none", "median", "asha", "hyperband", "patience"]


def _positive_int(where: str, name: str, value: object, minimum: int) -> None:
    check_int(value, minimum, path=f"{where}.{name}", name=name, fix=f"Use e.g. {name}: {max(minimum, 1)}.")


def _min_delta(where: str, value: object) -> None:
    f = _finite_float(value)
    if f is None or f < 0:
        raise SchemaError(
            "`min_delta` must be a number >= 0",
            path=f"{where}.min_delta",
            value=show(value),
            fix="Use e.g. min_delta: 0.001, or 0 to count any improvement.",
        )


@dataclass(frozen=True)
class PruningSpec:
    """Pruning across trials, the same for every backend.

    Attributes:
        policy: ``none``, ``median``, ``asha``, ``hyperband`` or ``patience``.
        grace_period: Epochs every trial runs before it can be pruned (ASHA's ``min_resource``).
        reduction_factor: Halving rate of ``asha``/``hyperband``.
        max_budget: The most epochs a trial can run (defaults to the run's ``max_epochs``).
        patience: For ``patience``: epochs without improvement before a trial is pruned.
        min_delta: For ``patience``: the smallest change that counts as improvement.
    """

    policy: Policy = "none"
    grace_period: int = 1
    reduction_factor: int = 3
    max_budget: int | None = None
    patience: int = 3
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        where = "pruner"
        if not isinstance(self.policy, str) or self.policy not in PRUNING_POLICIES:
            hint = did_you_mean(self.policy, PRUNING_POLICIES)
            raise SchemaError(
                "`policy` must be one of " + ", ".join(PRUNING_POLICIES),
                path=f"{where}.policy",
                value=show(self.policy),
                fix=hint or "Use e.g. policy: asha.",
            )
        _positive_int(where, "grace_period", self.grace_period, 1)
        _positive_int(where, "reduction_factor", self.reduction_factor, 2)
        _positive_int(where, "patience", self.patience, 1)
        if self.max_budget is not None:
            _positive_int(where, "max_budget", self.max_budget, 1)
            if self.max_budget < self.grace_period:
                raise SchemaError(
                    "`grace_period <= max_budget` must hold",
                    path=where,
                    value=f"grace_period={self.grace_period}, max_budget={self.max_budget}",
                    fix="Lower grace_period or raise max_budget.",
                )
        _min_delta(where, self.min_delta)

    @classmethod
    def from_dict(cls, data: Any) -> PruningSpec:
        if data is None:
            return cls()
        if isinstance(data, str):
            data = {"policy": data}
        if not isinstance(data, Mapping):
            raise SchemaError(
                "`pruner` must be a policy name or a mapping",
                path="pruner",
                value=show(data),
                fix="Write e.g. pruner: {policy: asha, grace_period: 2}.",
            )
        check_keys("pruner", data, [f for f in cls.__dataclass_fields__])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def budget(self, max_epochs: int) -> int:
        """The most epochs a trial may run."""
        return self.max_budget if self.max_budget is not None else max_epochs


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """Within-trial early stopping with Lightning's vocabulary.

    Attributes:
        monitor: Metric to watch (defaults to the run's metric).
        mode: ``min`` or ``max`` (defaults to the run's mode).
        patience: Validation checks without improvement before the trial stops.
        min_delta: Smallest change that counts as improvement.
    """

    monitor: str | None = None
    mode: Literal["min", "max"] | None = None
    patience: int = 3
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        where = "early_stopping"
        if self.monitor is not None and (not isinstance(self.monitor, str) or not self.monitor):
            raise SchemaError(
                "`monitor` must be a metric name",
                path=f"{where}.monitor",
                value=show(self.monitor),
                fix="Write e.g. monitor: val_loss, or leave it out to watch the run's metric.",
            )
        if self.mode is not None:
            fix = "Write mode: min or mode: max, or leave it out to use the run's mode."
            check_mode(self.mode, path=f"{where}.mode", fix=fix)
        _positive_int(where, "patience", self.patience, 1)
        _min_delta(where, self.min_delta)

    @classmethod
    def from_dict(cls, data: Any) -> EarlyStoppingSpec | None:
        if data is None or data is False:
            return None
        if data is True:
            return cls()
        if not isinstance(data, Mapping):
            raise SchemaError(
                "`early_stopping` must be a mapping, true or false",
                path="early_stopping",
                value=show(data),
                fix="Write e.g. early_stopping: {patience: 3}.",
            )
        check_keys("early_stopping", data, [f for f in cls.__dataclass_fields__])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
