"""Backend-neutral pruning and early-stopping specs; the budget is counted in epochs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tunebridge._hints import did_you_mean
from tunebridge._rules import check_int, check_mode
from tunebridge.errors import SchemaError, show
from tunebridge.schema._codec import check_keys
from tunebridge.schema._params import _finite_float

__all__ = [
    "MULTI_OBJECTIVE_POLICIES",
    "POLICY_OPTIONS",
    "PRUNING_POLICIES",
    "TIE_BREAKS",
    "EarlyStoppingSpec",
    "PruningSpec",
]

PRUNING_POLICIES = ("none", "median", "asha", "hyperband", "patience")
Policy = Literal["none", "median", "asha", "hyperband", "patience"]
# The options each policy reads (max_budget is every trial's budget, whatever prunes it).
POLICY_OPTIONS: dict[str, tuple[str, ...]] = {
    "none": ("max_budget",),
    "median": ("grace_period", "max_budget"),
    "asha": ("grace_period", "reduction_factor", "max_budget", "tie_break"),
    "hyperband": ("grace_period", "reduction_factor", "max_budget", "tie_break"),
    "patience": ("grace_period", "patience", "min_delta", "max_budget"),
}
# The policies that prune a study with several objectives (MO-ASHA: by Pareto rank at each rung).
MULTI_OBJECTIVE_POLICIES = ("asha", "hyperband")
# How MO-ASHA orders the trials within one Pareto front (Schmucker et al., 2021): an epsilon-net (the
# paper's default) or NSGA-II's crowding distance.
TIE_BREAKS = ("epsilon_net", "crowding")


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


def _refuse_ignored(policy: str, given: Mapping[str, Any]) -> None:
    """Refuse the first option in ``given`` (name -> value) that ``policy`` does not read."""
    for name, value in given.items():
        if name != "policy" and name not in POLICY_OPTIONS[policy]:
            users = [p for p, names in POLICY_OPTIONS.items() if name in names]
            raise SchemaError(
                f"`{name}` is not read by `policy: {policy}` (it is an option of {', '.join(users)})",
                path=f"pruner.{name}",
                value=show(value),
                fix=f"Remove {name}, or choose a policy that reads it. `policy: {policy}` reads: "
                f"{', '.join(POLICY_OPTIONS[policy])}.",
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
        tie_break: For ``asha``/``hyperband`` with several objectives: ``epsilon_net`` (the default) or
            ``crowding``, the order within a Pareto front at a rung.

    An option the policy does not read is refused (:data:`POLICY_OPTIONS`): when given in a mapping at
    all, and when it differs from its default in a constructed spec.
    """

    policy: Policy = "none"
    grace_period: int = 1
    reduction_factor: int = 3
    max_budget: int | None = None
    patience: int = 3
    min_delta: float = 0.0
    tie_break: str | None = None

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
        if self.tie_break is not None and self.tie_break not in TIE_BREAKS:
            raise SchemaError(
                "`tie_break` must be one of " + ", ".join(TIE_BREAKS),
                path=f"{where}.tie_break",
                value=show(self.tie_break),
                fix=did_you_mean(self.tie_break, TIE_BREAKS) or "Use tie_break: epsilon_net (the default) or crowding.",
            )
        defaults = PruningSpec.__dataclass_fields__
        _refuse_ignored(
            self.policy, {k: getattr(self, k) for k, f in defaults.items() if getattr(self, k) != f.default}
        )

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
        policy = data.get("policy", "none")
        if isinstance(policy, str) and policy in PRUNING_POLICIES:
            _refuse_ignored(policy, data)  # given at all, even at its default value
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.tie_break is None:  # left out, so that specs written before it keep their hash
            del out["tie_break"]
        return out

    def check_objectives(self, metrics: Sequence[str]) -> None:
        """Refuse a policy that cannot prune this many objectives, or a tie-break with one objective.

        Raises:
            SchemaError: ``median`` or ``patience`` with several metrics (they compare one), or
                ``tie_break`` with one metric (there is no front to break ties in).
        """
        if len(metrics) > 1 and self.policy not in ("none", *MULTI_OBJECTIVE_POLICIES):
            raise SchemaError(
                f"`policy: {self.policy}` compares one metric and cannot prune several objectives",
                path="pruner.policy",
                value=f"{self.policy} with metric: [{', '.join(metrics)}]",
                fix="Use pruner: asha or pruner: hyperband (MO-ASHA: trials are compared by Pareto rank at each "
                "rung), or pruner: none.",
            )
        if len(metrics) == 1 and self.tie_break is not None:
            raise SchemaError(
                "`tie_break` orders the trials of a Pareto front and needs several objectives",
                path="pruner.tie_break",
                value=f"{self.tie_break} with metric: {metrics[0]}",
                fix="Leave tie_break out, or give several metrics (metric: [val_acc, n_params]).",
            )

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
    # The pruning replay (benchmarks/results/2026-12-07-cpu-replay.md): patience 3 halved what ASHA saves at a
    # 20-epoch budget (2.26x vs 3.73x fewer epochs to the same val_acc on digits); 6 is neutral at 8-12 epochs.
    patience: int = 6
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

    def check_run(self, metric: str, mode: str) -> None:
        """The rule between early stopping and the run's objective: a ``monitor`` other than the run's metric
        says its own ``mode``. The run's mode is its metric's direction, not the monitor's: ``monitor:
        val_loss`` in a run that maximizes val_acc would stop the trials whose loss falls.

        Raises:
            SchemaError: ``monitor`` differs from ``metric`` and ``mode`` is not given.
        """
        if self.monitor is not None and self.monitor != metric and self.mode is None:
            raise SchemaError(
                f"`mode` must be given when `monitor` ({self.monitor}) is not the run's metric ({metric}, {mode})",
                path="early_stopping.mode",
                value="no mode",
                fix=f"Write early_stopping: {{monitor: {self.monitor}, mode: min}} for a loss, or mode: max for a "
                "score (Lightning's EarlyStopping reads min when no mode is given).",
            )

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
