"""The backend-neutral pruning spec as Ray Tune schedulers; PBT over the non-structural parameters.

Epochs are the time unit everywhere (``time_attr="epoch"``, the 1-based Lightning epoch each result
carries), so grace periods and budgets mean the same as with the Optuna backend, and a trial
resumed from a checkpoint keeps counting where it left off.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from typing import Any

from tunebridge.backends.ray._convert import BACKEND, CONFIG_KEY
from tunebridge.errors import ConversionError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, PruningSpec, Scalar, Space

__all__ = [
    "PBT_CANDIDATES",
    "STRUCTURAL_NAMES",
    "TIME_ATTR",
    "PatienceScheduler",
    "SpaceExplorer",
    "make_scheduler",
    "pbt_interval",
    "pbt_mutations",
    "plateaued",
    "structural_reason",
    "user_copy",
    "user_scheduler",
]

TIME_ATTR = "epoch"
# Hyperparameters PBT mutates by default when the space has them (they change training, not the model).
PBT_CANDIDATES = ("lr", "momentum", "weight_decay", "dropout", "l1", "lr_gamma", "lr_min_factor")
# Names that change a model's architecture (or the run's budget): a checkpoint cannot be loaded into them.
STRUCTURAL_NAMES = frozenset(
    {
        "n_layers",
        "units",
        "filters",
        "n_blocks",
        "kernel_size",
        "activation",
        "optimizer",
        "pooling",
        "batch_norm",
        "hidden",
        "hidden_size",
        "layers",
        "channels",
        "width",
        "depth",
        "lr_schedule",
        "epochs",
    }
)


def plateaued(values: Sequence[float], *, patience: int, min_delta: float, mode: str) -> bool:
    """Whether the last ``patience + 1`` values failed to beat the best earlier one by ``min_delta``.

    The rule of Optuna's ``PatientPruner``, so ``policy: patience`` prunes the same trials under both backends.
    """
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) <= patience + 1:
        return False
    before, after = finite[: -patience - 1], finite[-patience - 1 :]
    if mode == "min":
        return min(before) - min_delta < min(after)
    return max(before) + min_delta > max(after)


def _patience_base() -> type:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler


class PatienceScheduler(_patience_base()):  # type: ignore[misc]
    """Stops a trial after ``patience`` epochs without an improvement of at least ``min_delta``."""

    def __init__(self, *, patience: int, min_delta: float, mode: str, grace_period: int = 1) -> None:
        super().__init__()
        self._patience, self._min_delta, self._mode_name, self._grace = patience, min_delta, mode, grace_period
        self._values: dict[str, list[float]] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode_name = mode
        return True

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if self._metric not in result or TIME_ATTR not in result or result.get("tb_done"):
            return str(self.CONTINUE)
        values = self._values.setdefault(trial.trial_id, [])
        values.append(float(result[self._metric]))
        if int(result[TIME_ATTR]) < self._grace:
            return str(self.CONTINUE)
        stop = plateaued(values, patience=self._patience, min_delta=self._min_delta, mode=self._mode_name)
        return str(self.STOP if stop else self.CONTINUE)


def pbt_interval(budget: int, requested: int | None) -> int:
    """Epochs between PBT perturbations: as requested, else a quarter of the budget."""
    return int(requested) if requested else max(1, budget // 4)


def make_scheduler(
    spec: PruningSpec,
    *,
    max_epochs: int,
    n_objectives: int,
    mode: str,
    space: Space,
    scheduler: str | None = None,
    pbt_mutate: Sequence[str] | None = None,
    pbt_every: int | None = None,
    pbt_synch: bool = False,
    seed: int | None = None,
    metrics: Sequence[str] = (),
    modes: Sequence[str] = (),
) -> Any:
    """Ray's scheduler for the pruning spec (or ``scheduler="pbt"``); None means FIFO.

    With several objectives, ``asha`` and ``hyperband`` are MO-ASHA (``MoAshaScheduler``, the rule of
    ``backends/_mo_asha.py``, the Optuna backend's too), which needs the objectives' ``metrics`` and ``modes``.

    Raises:
        ConversionError: PBT with several objectives, a PBT spec that would mutate the architecture, or
            ``hyperband`` with a grace period (Ray's HyperBand has none).
        SchemaError: A policy that cannot prune several objectives (``median``, ``patience``), or a
            tie-break with one objective.
    """
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule

    policy = scheduler or spec.policy
    n_objectives = max(n_objectives, len(metrics))
    if policy == "pbt" and n_objectives > 1:
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option="scheduler=pbt with several objectives",
            fix="PBT exploits the best trials by one metric: use pruner: asha or hyperband (MO-ASHA) instead.",
        )
    spec.check_objectives(list(metrics) if metrics else [f"objective {i + 1}" for i in range(n_objectives)])
    budget = spec.budget(max_epochs)
    if policy == "none":
        return None
    if n_objectives > 1:  # asha or hyperband: check_objectives refused the others
        from tunebridge.backends._mo_asha import MoAsha
        from tunebridge.backends.ray._mo_scheduler import MoAshaScheduler

        return MoAshaScheduler(MoAsha.of(spec, modes=modes, max_epochs=max_epochs), metrics)
    if policy == "asha":
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            max_t=budget,
            grace_period=spec.grace_period,
            reduction_factor=spec.reduction_factor,
            brackets=1,
        )
    if policy == "hyperband":
        if spec.grace_period != 1:  # the Optuna backend's first rung would be at grace_period, Ray's elsewhere
            raise ConversionError(
                backend=BACKEND,
                param="pruner.grace_period",
                option=f"grace_period={spec.grace_period} with policy hyperband",
                fix="Ray's HyperBandScheduler has no grace period (its brackets follow from max_t and "
                "reduction_factor alone), so the spec would prune differently here: drop grace_period, use "
                "policy: asha (the same rungs on both backends), or run it on the optuna backend.",
            )
        return HyperBandScheduler(time_attr=TIME_ATTR, max_t=budget, reduction_factor=spec.reduction_factor)
    if policy == "median":
        # min_samples_required mirrors the Optuna backend's MedianPruner(n_startup_trials=5).
        return MedianStoppingRule(time_attr=TIME_ATTR, grace_period=spec.grace_period, min_samples_required=5)
    if policy == "patience":
        return PatienceScheduler(
            patience=spec.patience, min_delta=spec.min_delta, mode=mode, grace_period=spec.grace_period
        )
    if policy == "pbt":
        from ray.tune.schedulers import PopulationBasedTraining

        names = pbt_mutations(space, pbt_mutate)
        explorer = SpaceExplorer(space, names, seed=seed)
        return PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=pbt_interval(budget, pbt_every),
            custom_explore_fn=explorer,
            quantile_fraction=0.25,
            resample_probability=explorer.resample_probability,
            synch=pbt_synch,
        )
    raise ConversionError(
        backend=BACKEND,
        param="pruner",
        option=f"policy={policy!r}",
        fix="Use none, median, asha, hyperband, patience, or scheduler='pbt' in the Ray options.",
    )


def user_copy(obj: Any) -> Any:
    """A fresh copy of a user's searcher or scheduler for one experiment.

    Ray mutates both (metric, mode, rungs, trials seen); a copy lets the pre-flight plan, a resumed
    and a continued experiment each start from the object as the user built it.
    """
    try:
        return copy.deepcopy(obj)
    except Exception:
        pass
    from tunebridge.backends.ray._sampler import fresh_copy  # here: trial processes import this module

    try:  # an object holding a lock (optuna 5.1's NSGAIISampler) is copied with new locks
        return fresh_copy(obj)
    except Exception:  # an object that cannot be copied (it holds a connection): use it as is
        return obj


def user_scheduler(obj: Any, *, n_objectives: int, ray_scheduler: str | None) -> tuple[Any, str]:
    """A user's own Ray ``TrialScheduler`` for one experiment, and its policy name for the plan.

    The policy is ``hyperband`` for Ray's HyperBand (it needs every trial created up front and a
    checkpoint every epoch), else ``custom`` (checkpoints every epoch: it may pause any trial).

    Raises:
        ConversionError: Several objectives, ``ray: {scheduler: pbt}`` as well, a user's PBT, or a
            scheduler built with its own metric or mode.
    """
    from ray.tune.schedulers import HyperBandScheduler, PopulationBasedTraining

    from tunebridge.backends.ray._mo_scheduler import MoAshaScheduler

    name = f"a {type(obj).__name__} object"
    if n_objectives > 1 and not isinstance(obj, MoAshaScheduler):
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option=f"{name} with several objectives",
            fix="Ray's schedulers compare one metric: pass pruner={'policy': 'asha'} or {'policy': 'hyperband'} "
            "(MO-ASHA, by Pareto rank at each rung), or drop the scheduler.",
        )
    if ray_scheduler is not None:
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option=f"{name} and ray: {{scheduler: {ray_scheduler}}}",
            fix="Pass one scheduler: drop `scheduler` from the Ray options or the object from pruner=.",
        )
    if isinstance(obj, PopulationBasedTraining):
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option=name,
            fix="tunebridge's PBT mutates inside the space and re-applies configs from checkpoints: use "
            "ray={'scheduler': 'pbt', 'pbt_interval': ..., 'pbt_mutate': [...]}.",
        )
    if getattr(obj, "metric", None) is not None or getattr(obj, "_mode", None) is not None:
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option=f"{name} built with its own metric or mode",
            fix="Leave metric and mode out of the scheduler: tunebridge gives it the study's metric and mode.",
        )
    return user_copy(obj), "hyperband" if isinstance(obj, HyperBandScheduler) else "custom"


def structural_reason(space: Space, name: str) -> str | None:
    """Why PBT must not mutate ``name`` (None when it may)."""
    p = space[name]
    if isinstance(p, Fixed):
        return "it is fixed"
    if p.per_layer is not None:
        return f"it is repeated per layer (per_layer={p.per_layer!r}), so it shapes the network"
    dependents = sorted(
        other for other, q in space.items() if q.per_layer == name or any(parent == name for parent, _ in q.when)
    )
    if dependents:
        return f"other parameters depend on it ({', '.join(dependents)}), so it changes the structure"
    if name in STRUCTURAL_NAMES:
        return "it changes the model's architecture or the run's budget, which a checkpoint cannot carry over"
    return None


def pbt_mutations(space: Space, requested: Sequence[str] | None) -> list[str]:
    """The parameters PBT mutates: the requested ones, all checked, or the non-structural defaults.

    Raises:
        ConversionError: A requested name is unknown or structural, or nothing is left to mutate.
    """
    if requested is None:
        names = [n for n in PBT_CANDIDATES if n in space and structural_reason(space, n) is None]
        if not names:
            raise ConversionError(
                backend=BACKEND,
                param="pbt_mutate",
                option="the default mutations",
                fix=f"The space has none of {', '.join(PBT_CANDIDATES)}: pass pbt_mutate=[...] "
                "naming non-structural parameters.",
            )
        return names
    names = [requested] if isinstance(requested, str) else list(requested)
    for name in names:
        if name not in space:
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option="pbt_mutate",
                fix="It is not a parameter of the space; list existing parameters.",
            )
        reason = structural_reason(space, name)
        if reason is not None:
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option="pbt_mutate (PBT mutation)",
                fix=f"PBT cannot mutate it: {reason}. Mutate only training parameters such as "
                f"{', '.join(PBT_CANDIDATES)}.",
            )
    if not names:
        raise ConversionError(
            backend=BACKEND, param="pbt_mutate", option="an empty list", fix="Name at least one parameter to mutate."
        )
    return names


class SpaceExplorer:
    """PBT's explore step, done inside the space: perturbed values stay valid, absent ones stay absent.

    Ray's own explore multiplies by 0.8/1.2 without bounds and fails on a conditional parameter
    that is absent from the config; this one resamples with ``resample_probability``, otherwise
    perturbs (floats and ints by a factor, choices to a neighbour), then clips and snaps the value
    to the parameter's range and step.
    """

    resample_probability = 0.25
    factors = (0.8, 1.2)

    def __init__(self, space: Space, names: Sequence[str], *, seed: int | None = None) -> None:
        self.space, self.names = space, list(names)
        self._rng = random.Random(seed)

    def __call__(self, ray_config: dict[str, Any]) -> dict[str, Any]:
        config = dict(ray_config[CONFIG_KEY])
        for name in self.names:
            if name in config:
                config[name] = self.mutate(name, config[name])
        return {**ray_config, CONFIG_KEY: config}

    def mutate(self, name: str, value: Scalar) -> Scalar:
        p = self.space[name]
        rng = self._rng
        if isinstance(p, (Choice, Bool)):
            values = list(p.enumerate())
            if rng.random() < self.resample_probability or not p.contains(value):
                return values[rng.randrange(len(values))]
            index = next(i for i, v in enumerate(values) if v == value and type(v) is type(value))
            return values[min(max(index + rng.choice((-1, 1)), 0), len(values) - 1)]
        assert isinstance(p, (Int, Float))
        if rng.random() < self.resample_probability:
            if p.log:
                x = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
            else:
                x = rng.uniform(p.low, p.high)
        else:
            x = float(value) * rng.choice(self.factors)  # type: ignore[arg-type]
        x = min(max(x, p.low), p.high)
        if isinstance(p, Int):
            return p.low + round((x - p.low) / p.step) * p.step
        if p.step is not None:
            return p.snap(x)  # the schema's one rule for values on a step grid (exact decimals)
        return x
