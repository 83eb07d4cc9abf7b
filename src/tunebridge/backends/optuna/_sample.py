"""Configs drawn exactly as the Optuna backend's ``search: random`` draws them, without a trial running.

:meth:`tunebridge.schema.Space.sample` imports this module by name for ``backend="optuna"``; the Ray
backend uses it too, for every space its own domains cannot draw and for PBT's first population.
"""

from __future__ import annotations

import warnings

import optuna

from tunebridge.backends.optuna._compile import suggest
from tunebridge.schema import Scalar, Space

__all__ = ["sample_configs"]


def sample_configs(space: Space, n: int, *, seed: int | None) -> list[dict[str, Scalar]]:
    """``n`` configs in the order a fresh study with ``search: random`` and ``seed`` draws them.

    The backend's random search is ``RandomSampler(seed)`` walking the space through :func:`suggest`,
    one trial after another; this asks ``n`` trials of a throwaway in-memory study the same way. Its
    draws never depend on earlier results, so the configs equal those of a real run's trials 0..n-1.
    A resumed study or a joining worker reseeds (``_queue.open_study``) and goes on differently.

    Raises:
        ConversionError: Some parameter cannot be expressed in Optuna.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory ..." per call
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(
                storage=optuna.storages.InMemoryStorage(), sampler=optuna.samplers.RandomSampler(seed=seed)
            )
            return [suggest(study.ask(), space) for _ in range(n)]
    finally:
        optuna.logging.set_verbosity(verbosity)
