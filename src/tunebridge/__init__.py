"""tunebridge: one hyperparameter schema, compiled with the same meaning for Optuna and Ray Tune.

The heavy parts (optuna, torch, Lightning, Ray) are imported lazily so that ``import tunebridge``,
``tunebridge --help`` and ``tunebridge check`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunebridge import presets
from tunebridge.errors import (
    ConversionError,
    MetricNotFoundError,
    MissingDependencyError,
    SchemaError,
    SpecMismatchError,
    TunebridgeError,
)
from tunebridge.schema import Bool, Choice, EarlyStoppingSpec, Fixed, Float, Int, PruningSpec, Space
from tunebridge.schema._sample import register_sampler

if TYPE_CHECKING:
    from tunebridge.api import TuneResult, tune


def _optuna_sampler() -> Any:
    from tunebridge.backends.optuna import sample_configs

    return sample_configs


def _ray_sampler() -> Any:
    from tunebridge.backends.ray._sample import sample_configs

    return sample_configs


# Space.sample(backend=...) draws with the backend's own code; the schema names no backend itself.
register_sampler("optuna", _optuna_sampler)
register_sampler("ray", _ray_sampler)

__version__ = "0.1.0"

__all__ = [
    "Bool",
    "Choice",
    "ConversionError",
    "EarlyStoppingSpec",
    "Fixed",
    "Float",
    "Int",
    "MetricNotFoundError",
    "MissingDependencyError",
    "PruningSpec",
    "SchemaError",
    "Space",
    "SpecMismatchError",
    "TuneResult",
    "TunebridgeError",
    "__version__",
    "presets",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in ("tune", "TuneResult"):
        from tunebridge import api

        return getattr(api, name)
    raise AttributeError(f"module 'tunebridge' has no attribute {name!r}")
