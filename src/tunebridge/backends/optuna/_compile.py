"""Compile a :class:`~tunebridge.schema.Space` into Optuna's define-by-run form, losslessly.

Encoding rules (the only place they live):
- ``Int`` -> ``IntDistribution``; ``Float`` -> ``FloatDistribution``; both bounds inclusive, as in Optuna.
- a stepped ``Float``: Optuna computes ``low + k * step`` in binary (0.30000000000000004) and keeps
  that in ``trial.params``; the config holds :meth:`Float.snap` of it (0.3). Decoding snaps too, so
  a config and Optuna's params name the same grid point either way.
- unordered ``Choice`` and ``Bool`` -> ``CategoricalDistribution`` over the values themselves.
- ordered ``Choice`` -> ``CategoricalDistribution`` over the values too, so ``trial.params``,
  optuna-dashboard and Optuna's plots show the value (32, not its index 0). The order is kept for
  the model-based samplers by :class:`~tunebridge.backends.optuna._ordered.OrderedChoices`, which
  shows them ``IntDistribution(0, n-1)`` over the index.
- ``Fixed`` -> nothing is suggested; the value is filled in by the space walk.
- per-layer copies are named ``name/0 … name/{n-1}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tunebridge.errors import ConversionError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, Scalar, Space

__all__ = [
    "base_name",
    "check_convertible",
    "decode",
    "decode_value",
    "distribution",
    "distributions",
    "encode",
    "params_and_distributions",
    "suggest",
]

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
        return CategoricalDistribution(p.values)  # ordered or not: the order is the sampler's business
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


def base_name(key: str) -> str:
    """The parameter a config key belongs to (``units/2`` -> ``units``)."""
    return key.split("/", 1)[0]


def decode_value(p: Param, raw: Any) -> Scalar:
    """The config value for an Optuna parameter value (an ``Int`` as int, a stepped ``Float`` snapped;
    every other value, ordered choices included, is stored as itself)."""
    if isinstance(p, Int):
        return int(raw)
    if isinstance(p, Float):
        return p.snap(raw)
    return raw  # type: ignore[no-any-return]


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Scalar]:
    """Sample one config through ``trial`` (define-by-run); the config holds values, never indices."""
    check_convertible(space)

    def draw(key: str, p: Param) -> Scalar:
        if isinstance(p, Int):
            return trial.suggest_int(key, p.low, p.high, step=p.step, log=p.log)
        if isinstance(p, Float):
            return decode_value(p, trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log))
        if isinstance(p, Choice):
            return trial.suggest_categorical(key, p.values)
        return trial.suggest_categorical(key, (False, True))

    return space.walk(draw)


def encode(space: Space, config: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna ``params`` for a config: its values, fixed values dropped."""
    return {key: value for key, value in config.items() if not isinstance(space[base_name(key)], Fixed)}


def decode(space: Space, params: Mapping[str, Any]) -> dict[str, Scalar]:
    """The config for Optuna ``params`` (the inverse of :func:`encode`, fixed values restored)."""
    return space.walk(lambda key, p: decode_value(p, params[key]))


def params_and_distributions(
    space: Space, config: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """Optuna ``params`` and ``distributions`` for a finished trial's config (e.g. one Ray ran).

    Raises:
        KeyError: A key names no parameter of the space.
        ValueError: A value is outside its parameter's distribution.
    """
    params = encode(space, config)
    dists = {key: distribution(base_name(key), space[base_name(key)]) for key in params}
    for key, value in params.items():
        dists[key].to_internal_repr(value)  # a value of the wrong kind raises here, in Optuna's words
        try:  # Optuna's public check that a value lies in its distribution (what add_trial checks)
            create_trial(state=TrialState.WAITING, params={key: value}, distributions={key: dists[key]})
        except ValueError:
            raise ValueError(f"{key}={value!r} is outside {dists[key]}") from None
    return params, dists
