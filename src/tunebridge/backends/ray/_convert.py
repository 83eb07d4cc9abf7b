"""A :class:`~tunebridge.schema.Space` in Ray Tune's terms, with the meaning the schema gives it.

Three ways a space reaches Ray, chosen by :func:`tunebridge.backends.ray.plan_run`:

- a flat, unconditional space searched at random compiles to Ray's own domains (:func:`ray_domain`,
  the only place where Ray's exclusive upper bounds are turned into the schema's inclusive ones)
  when each of them draws with Optuna's distribution (no ``step``, no log-scaled int);
- every other space, and every model-based algorithm, is sampled by Optuna through
  :class:`DefineByRun`, which walks the space with :func:`tunebridge.backends.optuna.suggest` and
  returns the decoded config (never through Ray's lossy ``OptunaSearch.convert_search_space``);
- a grid (and PBT's initial population) is an explicit list of whole configs under one key,
  :data:`CONFIG_KEY`, so Ray evaluates exactly the configs the schema enumerates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tunebridge.errors import ConversionError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, Scalar, Space

__all__ = [
    "BACKEND",
    "CONFIG_KEY",
    "DefineByRun",
    "config_key",
    "native_param_space",
    "plain",
    "ray_config_to_config",
    "ray_domain",
]

BACKEND = "ray"
CONFIG_KEY = "tb_config"


def ray_domain(name: str, p: Param) -> Any:
    """Ray's domain for one parameter, drawing what the Optuna backend draws.

    The same values with the same probabilities, not only the same set of values
    (``tests/backends/test_sample_distribution.py`` compares the two).

    Raises:
        ConversionError: The parameter has no Ray domain with Optuna's distribution (a ``step``
            other than 1, a log-scaled int); such spaces are sampled through Optuna's define-by-run
            instead (see :func:`native_param_space`).
    """
    from ray import tune

    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Int):
        if p.step != 1:
            # qrandint rounds to multiples of q (not low + k*step) and gives both ends half the weight.
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option=f"step={p.step}",
                fix="Ray's qrandint rounds to multiples of q with half-weight ends; "
                "tunebridge samples this space through Optuna's define-by-run instead.",
            )
        if p.log:
            # lograndint(low, high + 1) floors a log-uniform draw on [low, high + 1); Optuna rounds one
            # on [low - 0.5, high + 0.5]. Same values, other weights: Int(1, 8, log=True) draws 1 with
            # probability ln 2 / ln 9 = 0.32 on Ray and ln 3 / ln 17 = 0.39 on Optuna.
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option="log=True",
                fix="Ray's lograndint weights the values differently from Optuna's log-scaled int; "
                "tunebridge samples this space through Optuna's define-by-run instead.",
            )
        # The one off-by-one of this adapter: Ray's randint excludes its upper bound, the schema
        # includes it, hence high + 1.
        return tune.randint(p.low, p.high + 1)
    if isinstance(p, Float):
        if p.step is not None:
            raise ConversionError(
                backend=BACKEND,
                param=name,
                option=f"step={p.step}",
                fix="Ray's quniform rounds to multiples of q with half-weight ends; "
                "tunebridge samples this space through Optuna's define-by-run instead.",
            )
        # Both uniform (in log space for log=True) over [low, high], as Optuna's RandomSampler draws.
        return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    if isinstance(p, (Choice, Bool)):
        # Random search ignores order, so an ordered choice is drawn like any other: uniformly over
        # its values, as Optuna's RandomSampler draws every CategoricalDistribution.
        return tune.choice(list(p.enumerate()))
    raise ConversionError(
        backend=BACKEND, param=name, option=type(p).__name__, fix="Use Int, Float, Choice, Bool or Fixed."
    )


def native_param_space(space: Space) -> dict[str, Any] | None:
    """Ray's ``param_space`` for a flat unconditional space, or None when a domain would not draw as Optuna does."""
    if space.is_conditional():
        return None
    try:
        return {name: ray_domain(name, p) for name, p in space.items()}
    except ConversionError:
        return None


class DefineByRun:
    """The ``space`` callable given to Ray's ``OptunaSearch``: one config per Optuna trial.

    It returns the whole decoded config, fixed values included. Ordered choices are stored in the
    searcher's study as their values; a model-based sampler from ``make_sampler`` sees their index
    (``OrderedChoices``). Picklable (Ray saves the searcher with the experiment).
    """

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Scalar]:
        from tunebridge.backends.optuna import suggest

        return suggest(trial, self.space)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it stands for (the schema compares types exactly)."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        return item()
    return value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}/{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = plain(value)


def ray_config_to_config(ray_config: Mapping[str, Any]) -> dict[str, Scalar]:
    """The schema config of a Ray trial's config.

    A list-driven trial (grid, PBT) carries it whole under :data:`CONFIG_KEY`. OptunaSearch hands
    configs through Ray's ``unflatten_dict``, which turns ``units/0`` into ``{"units": {"0": ...}}``;
    flattening with ``/`` (reserved for per-layer copies, so never part of a name) undoes it.
    """
    if CONFIG_KEY in ray_config:
        return {str(k): plain(v) for k, v in dict(ray_config[CONFIG_KEY]).items()}
    out: dict[str, Any] = {}
    _flatten("", ray_config, out)
    return out


def config_key(config: Mapping[str, Any]) -> str:
    """A canonical string for a config (to compare configs across runs)."""
    return json.dumps(dict(config), sort_keys=True)


def __getattr__(name: str) -> Any:
    """``sample_configs`` (PBT's first population, drawn by Optuna) stays importable from here, on first use:
    a Ray trial process imports this module and should not pay for optuna's import."""
    if name == "sample_configs":
        from tunebridge.backends.optuna import sample_configs

        return sample_configs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
