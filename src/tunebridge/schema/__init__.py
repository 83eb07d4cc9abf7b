"""The hyperparameter schema: standard library only (never imports optuna, ray or torch).

A :class:`Space` of :class:`Int`, :class:`Float`, :class:`Choice`, :class:`Bool` and :class:`Fixed`
parameters, with conditions (``when=``) and per-layer repetition (``per_layer=``). Both bounds are
inclusive everywhere. Backends compile a space; they never reinterpret it.
"""

from __future__ import annotations

from tunebridge.errors import SchemaError
from tunebridge.schema._codec import load_yaml
from tunebridge.schema._params import Bool, Choice, Fixed, Float, Int, Param, Scalar, is_json_scalar, same_value
from tunebridge.schema._policies import PRUNING_POLICIES, EarlyStoppingSpec, PruningSpec
from tunebridge.schema._space import DEFAULT_MAX_GRID, Space

__all__ = [
    "DEFAULT_MAX_GRID",
    "PRUNING_POLICIES",
    "Bool",
    "Choice",
    "EarlyStoppingSpec",
    "Fixed",
    "Float",
    "Int",
    "Param",
    "PruningSpec",
    "Scalar",
    "SchemaError",
    "Space",
    "is_json_scalar",
    "load_yaml",
    "same_value",
]
