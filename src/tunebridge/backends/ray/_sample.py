"""Configs drawn exactly as the Ray backend's random search draws them, without starting Ray.

:meth:`tunebridge.schema.Space.sample` imports this module by name for ``backend="ray"``. It follows
:func:`tunebridge.backends.ray.plan_run` for ``search: random``:

- a flat, unconditional space whose every parameter has a Ray domain with Optuna's distribution
  (:func:`native_param_space`: no ``step``, no log-scaled int) is drawn by
  ``BasicVariantGenerator(random_state=seed)``. That searcher wraps the seed once in Ray's
  ``_BackwardsCompatibleNumpyRng`` (``numpy.random.default_rng(seed)``; the global ``numpy.random``
  for None) and, for each of ``num_samples`` trials, takes the first variant of
  ``generate_variants(experiment_spec, random_state=rng)``, which samples every domain of
  ``spec["config"]`` in the ``param_space``'s order from that one shared generator. The same two
  calls on ``{"config": param_space}`` give the configs of trials 0..n-1 of a real Tune run;
  ``tests/schema/test_sample.py`` checks them against one.
- every other space goes through ``OptunaSearch`` with ``RandomSampler(seed)`` and tunebridge's
  define-by-run, which draws what the Optuna backend draws (:func:`tunebridge.backends.optuna.sample_configs`).

PBT's first population is always Optuna's (``plan_run`` lists it), and a continuation reseeds with
``seed + trials so far``; neither is what this previews.
"""

from __future__ import annotations

from typing import Any

from tunebridge.backends.optuna import check_convertible
from tunebridge.backends.optuna import sample_configs as optuna_sample_configs
from tunebridge.backends.ray._convert import native_param_space, ray_config_to_config
from tunebridge.schema import Scalar, Space

__all__ = ["sample_configs"]


def sample_configs(space: Space, n: int, *, seed: int | None) -> list[dict[str, Scalar]]:
    """``n`` configs in the order a fresh Ray run with ``search: random`` and ``seed`` draws them.

    Raises:
        ConversionError: Some parameter cannot be expressed (checked first, as ``plan_run`` does).
    """
    check_convertible(space)  # plan_run's first check: the study mirror stores Optuna distributions
    native = native_param_space(space)
    if native is None:
        return optuna_sample_configs(space, n, seed=seed)
    from ray.tune.search.sample import _BackwardsCompatibleNumpyRng
    from ray.tune.search.variant_generator import generate_variants

    # BasicVariantGenerator.__init__ does exactly this with its random_state, once per searcher.
    rng = _BackwardsCompatibleNumpyRng(seed)
    configs: list[dict[str, Scalar]] = []
    for _ in range(n):
        # _TrialIterator.__next__: one generate_variants per sample; without grid_search, one variant.
        spec: dict[str, Any] = next(generate_variants({"config": native}, random_state=rng))[1]
        configs.append(ray_config_to_config(spec["config"]))
    return configs
