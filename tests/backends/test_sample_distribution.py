"""Both backends draw every kind of parameter from the same distribution, not only the same values.

Each case draws ``N`` values per backend with ``Space.sample`` (what ``search: random`` draws; Ray's
side does not start Ray) and compares them: a chi-square test on the value counts for discrete
kinds, a two-sample Kolmogorov-Smirnov test for continuous ones. The seeds are fixed, so every
p-value is fixed too; the threshold only has to separate "same distribution" (p-values here are
0.4 and above) from a real difference (Ray's own lograndint for a log int: p ~ 1e-11).
The backends get different seeds so that a kind both sample through Optuna is still compared on
two independent draws.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import numpy as np
import pytest

pytest.importorskip("ray.tune")

from scipy import stats

from tunebridge.schema import Bool, Choice, Float, Int, Param, Scalar, Space

pytestmark = pytest.mark.ray

N = 5_000
SEEDS = {"optuna": 0, "ray": 1}
P_MIN = 1e-4

KINDS: list[tuple[str, Param]] = [
    ("int-linear", Int(1, 8)),
    ("int-negative", Int(-3, 3)),
    ("int-log", Int(1, 8, log=True)),
    ("int-log-wide", Int(2, 64, log=True)),
    ("int-step", Int(0, 20, step=5)),
    ("float-linear", Float(-2.0, 2.0)),
    ("float-log", Float(1e-5, 1e-1, log=True)),
    ("float-step", Float(0.1, 0.5, step=0.1)),
    ("choice", Choice(["a", "b", "c"])),
    ("choice-mixed-types", Choice([None, "a", 2, 2.5, True])),
    ("choice-ordered", Choice([16, 32, 64, 128], ordered=True)),
    ("bool", Bool()),
]


def _draw(param: Param, backend: str) -> list[Scalar]:
    return [c["x"] for c in Space(x=param).sample(N, seed=SEEDS[backend], backend=backend)]


def _counts(values: Sequence[Scalar]) -> collections.Counter[tuple[str, Scalar]]:
    return collections.Counter((type(v).__name__, v) for v in values)  # 2 and 2.0, 1 and True kept apart


def _p_value(param: Param, a: Sequence[Scalar], b: Sequence[Scalar]) -> float:
    if isinstance(param, Float) and param.step is None:
        return float(stats.ks_2samp(a, b).pvalue)
    ca, cb = _counts(a), _counts(b)
    keys = sorted(set(ca) | set(cb), key=repr)
    return float(stats.chi2_contingency([[ca[k] for k in keys], [cb[k] for k in keys]]).pvalue)


@pytest.mark.parametrize("param", [p for _, p in KINDS], ids=[name for name, _ in KINDS])
def test_both_backends_draw_from_the_same_distribution(param: Param) -> None:
    optuna_values, ray_values = _draw(param, "optuna"), _draw(param, "ray")
    for values in (optuna_values, ray_values):
        assert all(param.contains(v) for v in values)
    discrete = param.enumerate()
    if discrete is not None and len(discrete) <= 10:  # and both reach every value, with its type
        assert set(_counts(optuna_values)) == set(_counts(ray_values)) == set(_counts(discrete))
    assert _p_value(param, optuna_values, ray_values) > P_MIN


def test_a_log_int_draws_its_low_end_as_often_on_both_backends() -> None:
    # Optuna rounds a log-uniform draw on [low - 0.5, high + 0.5]: P(1) = ln 3 / ln 17 = 0.388 for
    # Int(1, 8, log=True). Ray's lograndint(1, 9) floored one on [1, 9): ln 2 / ln 9 = 0.315.
    param = Int(1, 8, log=True)
    expected = math.log(3) / math.log(17)
    for backend in SEEDS:
        share = _draw(param, backend).count(1) / N
        assert abs(share - expected) < 0.03, (backend, share)


def test_the_test_sees_rays_own_lograndint_as_different() -> None:
    # What ray_domain used to return for Int(1, 8, log=True): the chi-square test must refuse it.
    from ray import tune

    param = Int(1, 8, log=True)
    rays_own = tune.lograndint(1, 9).sample(size=N, random_state=np.random.default_rng(SEEDS["ray"]))
    assert _p_value(param, _draw(param, "optuna"), [int(v) for v in rays_own]) < 1e-6


def test_a_flat_space_of_native_kinds_is_still_drawn_by_ray() -> None:
    # The comparison above is not vacuous: these kinds go through Ray's own domains on the Ray side.
    from tunebridge.backends.ray import native_param_space

    native = [name for name, p in KINDS if native_param_space(Space(x=p)) is not None]
    assert native == [
        "int-linear",
        "int-negative",
        "float-linear",
        "float-log",
        "choice",
        "choice-mixed-types",
        "choice-ordered",
        "bool",
    ]
