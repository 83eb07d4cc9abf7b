"""Lightning glue: run one trial of a user's LightningModule under any backend.

Works with modules from ``lightning.pytorch`` and from ``pytorch_lightning``: each trial runs under a
Trainer of the module's own package. Built-in models and datasets live in
:mod:`tunebridge.lightning.models` and :mod:`tunebridge.lightning.data`.
"""

from __future__ import annotations

from tunebridge.lightning._builders import builtin_builder, import_builder
from tunebridge.lightning._runner import (
    Builder,
    LightningObjective,
    NonFiniteMetricError,
    TrialSettings,
    fit_trial,
    quiet_lightning,
)

__all__ = [
    "Builder",
    "LightningObjective",
    "NonFiniteMetricError",
    "TrialSettings",
    "builtin_builder",
    "fit_trial",
    "import_builder",
    "quiet_lightning",
]
