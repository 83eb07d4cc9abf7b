"""Compile a :class:`~tunebridge.schema.Space` into Optuna's define-by-run form, losslessly.

Encoding rules (the only place they live):
- ``Int`` -> ``IntDistribution``; ``Float`` -> ``FloatDistribution``; both bounds inclusive, as in Optuna.
- unordered ``Choice`` and ``Bool`` -> ``CategoricalDistribution`` over the values themselves.
- ordered ``Choice`` -> ``IntDistribution(0, n-1)`` over the index, so TPE/GP see the order;
  the config holds the value, Optuna's ``trial.params`` the index.
- ``Fixed`` -> nothing is suggested; the value is filled in by the space walk.
- per-layer copies are named ``name/0 … name/{n-1}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from tunebridge.errors import ConversionError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, Scalar, Space

__all__ = ["check_convertible", "decode", "distribution", "distributions", "encode", "suggest"]

BACKEND = "optuna"


def distribution(name: str, p: Param) -> BaseDistribution:
    """The Optuna distribution of one (non-fixed) parameter.

    Raises:
        ConversionError: The parameter cannot be expressed in Optuna.
    """
    if isinstance(p, Int):
        if p.log and p.step != 1:
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option=f"log=True and step={p.step}",
                fix="Optuna's IntDistribution takes log or step, not both: use a Choice of the "
                "values (e.g. powers of two, ordered=True) or drop one option.",
            )
        return IntDistribution(p.low, p.high, log=p.log, step=p.step)
    if isinstance(p, Float):
        if p.log and p.step is not None:
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option=f"log=True and step={p.step}",
                fix="Optuna's FloatDistribution takes log or step, not both: use a Choice of "
                "the values or drop one option.",
            )
        return FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    if isinstance(p, Choice):
        if p.ordered:
            return IntDistribution(0, len(p.values) - 1)
        return CategoricalDistribution(p.values)
    if isinstance(p, Bool):
        return CategoricalDistribution((False, True))
    raise ConversionError(backend=BACKEND, param=name, option=type(p).__name__, fix="Fixed values are not sampled.")


def check_convertible(space: Space) -> None:
    """Raise :class:`ConversionError` before any trial runs if some parameter cannot be compiled."""
    for name, p in space.items():
        if not isinstance(p, Fixed):
            distribution(name, p)


def distributions(space: Space) -> dict[str, BaseDistribution]:
    """Distributions of the unconditional part of the space (parameters present in every config).

    Per-layer copies are included for the layers every config has (indices below the count's minimum).
    """
    out: dict[str, BaseDistribution] = {}
    for name in space.order:
        p = space[name]
        if isinstance(p, Fixed) or p.when:
            continue
        if p.per_layer is None:
            out[name] = distribution(name, p)
            continue
        count = space[p.per_layer]
        values = count.enumerate() or ()
        if count.when or not values:
            continue
        for i in range(min(int(v) for v in values)):  # type: ignore[arg-type]
            out[f"{name}/{i}"] = distribution(name, p)
    return out


def _base(key: str) -> str:
    return key.split("/", 1)[0]


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Scalar]:
    """Sample one config through ``trial`` (define-by-run); the config holds values, never indices."""
    check_convertible(space)

    def draw(key: str, p: Param) -> Scalar:
        if isinstance(p, Int):
            return trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, Float):
            return trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, Choice) and p.ordered:
            return p.values[trial.suggest_int(key, 0, len(p.values) - 1)]
        if isinstance(p, Choice):
            return trial.suggest_categorical(key, p.values)
        return trial.suggest_categorical(key, (False, True))

    return space.walk(draw)


def encode(space: Space, config: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna ``params`` for a config (ordered choices become indices; fixed values are dropped)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        p = space[_base(key)]
        if isinstance(p, Fixed):
            continue
        out[key] = p.index(value) if isinstance(p, Choice) and p.ordered else value
    return out


def decode(space: Space, params: Mapping[str, Any]) -> dict[str, Scalar]:
    """The config for Optuna ``params`` (the inverse of :func:`encode`, fixed values restored)."""

    def draw(key: str, p: Param) -> Scalar:
        value = params[key]
        if isinstance(p, Choice) and p.ordered:
            return p.values[int(value)]
        if isinstance(p, Int):
            return int(value)
        return value  # type: ignore[no-any-return]

    return space.walk(draw)
