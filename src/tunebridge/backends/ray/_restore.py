"""PBT under Lightning: a mutated config must survive Lightning's restore of the optimizer state."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tunebridge._compat import has_module
from tunebridge.schema import Scalar

__all__ = ["apply_config", "config_callback"]

_CONFIG_CALLBACK: list[type] = []


def config_callback(config: Mapping[str, Scalar]) -> Any:
    """A Lightning callback (for either package) that re-applies optimizer hyperparameters after a restore.

    Lightning restores the optimizer's ``param_groups`` (and the LR scheduler's ``base_lrs``) from the
    checkpoint, which would silently undo PBT's mutation of ``lr``, ``momentum`` or ``weight_decay``.
    """
    if not _CONFIG_CALLBACK:
        bases = tuple(
            importlib.import_module(ns).Callback
            for ns in ("lightning.pytorch", "pytorch_lightning")
            if has_module(ns.split(".")[0])
        )

        def on_train_start(self: Any, trainer: Any, pl_module: Any) -> None:
            apply_config(trainer, self.config)

        def init(self: Any, config: Mapping[str, Scalar]) -> None:
            self.config = dict(config)

        _CONFIG_CALLBACK.append(
            type("ApplyConfigOnRestore", bases, {"__init__": init, "on_train_start": on_train_start})
        )
    return _CONFIG_CALLBACK[0](config)


def apply_config(trainer: Any, config: Mapping[str, Scalar]) -> None:
    """Set ``lr``/``momentum``/``weight_decay`` of every optimizer from ``config``, keeping the schedule's progress."""
    lr = config.get("lr")
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            if isinstance(lr, (int, float)):
                initial = group.get("initial_lr")
                group["lr"] = group["lr"] * lr / initial if initial else lr
                if initial:
                    group["initial_lr"] = lr
            for key in ("momentum", "weight_decay"):
                if key in config and key in group:
                    group[key] = config[key]
    if isinstance(lr, (int, float)):
        for scheduler_config in getattr(trainer, "lr_scheduler_configs", []):
            scheduler = scheduler_config.scheduler
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [lr for _ in scheduler.base_lrs]
