"""The flat config of a trial: validating readers, and the optimisation part of it (optimizer, schedule).

A reader returns the value of one key (or its default) and raises :class:`~tunebridge.errors.SchemaError`
naming the key, the value and what is allowed; :class:`TrainingConfig` reads the training keys at once.

Example:
    >>> TrainingConfig.from_config({"optimizer": "momentum", "lr": 0.1}).momentum
    0.9
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tunebridge._vocab import OPTIMIZERS, SCHEDULES
from tunebridge.errors import SchemaError

__all__ = ["TrainingConfig", "build_optimizer", "build_scheduler"]

# Momentum when the config leaves it out: the classic 0.9 for SGD with momentum, torch's 0 for RMSprop.
_DEFAULT_MOMENTUM = {"sgd": 0.0, "momentum": 0.9, "rmsprop": 0.0, "adam": 0.0, "adamw": 0.0}


def _listing(values: tuple[Any, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def _read_choice(config: Mapping[str, Any], key: str, default: Any, allowed: tuple[Any, ...]) -> Any:
    value = config.get(key, default)
    if isinstance(value, bool) or value not in allowed:
        raise SchemaError(
            f"must be one of {_listing(allowed)}",
            path=key,
            value=repr(value),
            fix=f"Restrict `{key}` in the search space to these values.",
        )
    return value


def _read_int(config: Mapping[str, Any], key: str, default: int, *, low: int) -> int:
    value = config.get(key, default)
    integral = isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()
    if not integral or value < low:
        raise SchemaError(
            f"must be an integer >= {low}",
            path=key,
            value=repr(value),
            fix=f"Declare `{key}` as an Int parameter with low >= {low}.",
        )
    return int(value)


def _read_float(
    config: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    value = config.get(key, default)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise SchemaError(
            f"must be a number in {interval}",
            path=key,
            value=repr(value),
            fix=f"Keep the bounds of `{key}` inside {interval}.",
        )
    return float(value)


def _read_flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, str) or value not in (True, False):  # numpy bools compare equal, strings never do
        raise SchemaError("must be a boolean", path=key, value=repr(value), fix=f"Declare `{key}` as a Bool parameter.")
    return bool(value)


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation and regularisation part of a config, validated.

    Attributes:
        lr: Learning rate.
        optimizer: One of ``sgd``, ``momentum``, ``rmsprop``, ``adam``, ``adamw``.
        momentum: Momentum for ``momentum`` and ``rmsprop`` (always 0 for ``sgd``).
        lr_schedule: One of ``none``, ``exponential``, ``cosine`` (stepped once per epoch).
        lr_gamma: Decay factor of the exponential schedule.
        lr_min_factor: Final learning rate of the cosine schedule, as a fraction of ``lr``.
        weight_decay: Passed to the optimizer (0 unless ``weight_decay`` is set and ``weight_decay_on``
            is not False).
        l1: Coefficient of the L1 penalty on weights (0 unless ``l1`` is set and ``l1_on`` is not False).
    """

    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    lr_schedule: str = "none"
    lr_gamma: float = 0.95
    lr_min_factor: float = 0.01
    weight_decay: float = 0.0
    l1: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainingConfig:
        """Read and validate the training keys of ``config`` (other keys are ignored).

        Raises:
            SchemaError: A training key holds a value outside its allowed set or range.
        """
        optimizer = _read_choice(config, "optimizer", "adam", OPTIMIZERS)
        momentum = _read_float(config, "momentum", _DEFAULT_MOMENTUM[optimizer], low=0.0, high=1.0, open_high=True)
        # An inactive conditional parameter may still sit in the config: the switch decides.
        wd_on = _read_flag(config, "weight_decay_on", True)
        l1_on = _read_flag(config, "l1_on", True)
        return cls(
            lr=_read_float(config, "lr", 1e-3, low=0.0, open_low=True),
            optimizer=optimizer,
            momentum=0.0 if optimizer == "sgd" else momentum,
            lr_schedule=_read_choice(config, "lr_schedule", "none", SCHEDULES),
            lr_gamma=_read_float(config, "lr_gamma", 0.95, low=0.0, high=1.0, open_low=True),
            lr_min_factor=_read_float(config, "lr_min_factor", 0.01, low=0.0, high=1.0),
            weight_decay=_read_float(config, "weight_decay", 0.0, low=0.0) if wd_on else 0.0,
            l1=_read_float(config, "l1", 0.0, low=0.0) if l1_on else 0.0,
        )


def build_optimizer(params: Any, training: TrainingConfig) -> torch.optim.Optimizer:
    """The torch optimizer that ``training`` describes, over ``params``."""
    lr, wd, name = training.lr, training.weight_decay, training.optimizer
    if name in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=lr, momentum=training.momentum, nesterov=False, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=training.momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":  # AdamW decouples the decay itself; 0 (not torch's 0.01) unless the config asks
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise SchemaError(f"must be one of {_listing(OPTIMIZERS)}", path="optimizer", value=repr(name))


def build_scheduler(
    optimizer: torch.optim.Optimizer, training: TrainingConfig, max_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning-rate schedule ``training`` describes, or None for ``lr_schedule="none"``."""
    if training.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=training.lr_gamma)
    if training.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max_epochs, eta_min=training.lr * training.lr_min_factor
        )
    return None
