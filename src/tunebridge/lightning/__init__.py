"""Lightning glue: run one trial of a user's LightningModule under any backend.

Works with modules from ``lightning.pytorch`` and from ``pytorch_lightning``: each trial runs under a
Trainer of the module's own package. Built-in models and datasets live in
:mod:`tunebridge.lightning.models` and :mod:`tunebridge.lightning.data`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunebridge.lightning._builders import builtin_builder, import_builder
from tunebridge.lightning._cli_config import cli_builder
from tunebridge.lightning._ddp import follower_trial
from tunebridge.lightning._hydra_config import hydra_builder
from tunebridge.lightning._print_metrics import metrics_printer
from tunebridge.lightning._runner import (
    Builder,
    LightningObjective,
    NonFiniteMetricError,
    TrialSettings,
    fit_trial,
    quiet_lightning,
)
from tunebridge.lightning._seed import seed_trial, trial_seed
from tunebridge.lightning._trainer import callback_factories, check_trainer_options

if TYPE_CHECKING:  # pragma: no cover - imported on first use below (they import torch)
    from tunebridge.lightning._networks import ACTIVATION_LAYERS
    from tunebridge.lightning._training import TrainingConfig

# Names whose modules import torch: loaded on first use, so that importing this package stays light.
_LAZY = {"ACTIVATION_LAYERS": "tunebridge.lightning._networks", "TrainingConfig": "tunebridge.lightning._training"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tunebridge.lightning' has no attribute {name!r}")


__all__ = [
    "ACTIVATION_LAYERS",
    "Builder",
    "LightningObjective",
    "NonFiniteMetricError",
    "TrainingConfig",
    "TrialSettings",
    "builtin_builder",
    "callback_factories",
    "check_trainer_options",
    "cli_builder",
    "fit_trial",
    "follower_trial",
    "hydra_builder",
    "import_builder",
    "metrics_printer",
    "quiet_lightning",
    "seed_trial",
    "trial_seed",
]
