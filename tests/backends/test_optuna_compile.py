"""Compiling a space to Optuna: distributions, define-by-run sampling, encode/decode, reachability."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import optuna
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from tunebridge import presets
from tunebridge.backends.optuna import (
    check_convertible,
    decode,
    distribution,
    distributions,
    encode,
    params_and_distributions,
    suggest,
)
from tunebridge.errors import ConversionError, SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _random_study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


def _sample(space: Space, n: int, *, seed: int = 0) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` (config, trial.params) pairs drawn by define-by-run on a real study."""
    study = _random_study(seed)
    out = []
    for _ in range(n):
        trial = study.ask()
        config = suggest(trial, space)
        out.append((config, dict(trial.params)))
        study.tell(trial, 0.0)
    return out


# --- one parameter -> one distribution ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (Int(1, 4), IntDistribution(1, 4)),
        (Int(0, 10, step=2), IntDistribution(0, 10, step=2)),
        (Int(16, 256, log=True), IntDistribution(16, 256, log=True)),
        (Float(0.0, 1.0), FloatDistribution(0.0, 1.0)),
        (Float(1e-4, 1e-1, log=True), FloatDistribution(1e-4, 1e-1, log=True)),
        (Float(0.0, 1.0, step=0.25), FloatDistribution(0.0, 1.0, step=0.25)),
        (Choice(["relu", "tanh", "gelu"]), CategoricalDistribution(("relu", "tanh", "gelu"))),
        (Choice([1, "a", None, 2.5]), CategoricalDistribution((1, "a", None, 2.5))),
        # ordered choices are stored as their values; the sampler sees their index (OrderedChoices)
        (Choice([16, 32, 64, 128], ordered=True), CategoricalDistribution((16, 32, 64, 128))),
        (Choice(["s", "m", "l"], ordered=True), CategoricalDistribution(("s", "m", "l"))),
        (Bool(), CategoricalDistribution((False, True))),
    ],
    ids=[
        "int",
        "int-step",
        "int-log",
        "float",
        "float-log",
        "float-step",
        "choice",
        "choice-mixed",
        "ordered-int-values",
        "ordered-str-values",
        "bool",
    ],
)
def test_each_kind_compiles_to_its_distribution(param: Param, expected: BaseDistribution) -> None:
    dist = distribution("p", param)
    assert type(dist) is type(expected)
    assert dist == expected


@pytest.mark.parametrize(
    ("name", "param", "match"),
    [
        ("units", Int(16, 256, step=16, log=True), r"optuna cannot express 'units' with log=True and step=16"),
        ("lr", Float(0.001, 0.101, step=0.01, log=True), r"optuna cannot express 'lr' with log=True and step=0\.01"),
    ],
)
def test_log_with_step_raises_conversion_error_naming_the_param(name: str, param: Param, match: str) -> None:
    with pytest.raises(ConversionError, match=match) as info:
        distribution(name, param)
    assert info.value.param == name
    assert info.value.backend == "optuna"
    # the whole space is refused before any trial runs
    space = Space({"n_layers": Int(1, 2), name: param})
    with pytest.raises(ConversionError, match=rf"'{name}'"):
        check_convertible(space)
    with pytest.raises(ConversionError, match=rf"'{name}'"):
        suggest(_random_study().ask(), space)


def test_fixed_is_not_a_distribution() -> None:
    with pytest.raises(ConversionError, match=r"'seed' with Fixed\. Fixed values are not sampled"):
        distribution("seed", Fixed(3))


# --- the unconditional part as a dict of distributions -----------------------------------------------------


def test_distributions_hold_only_the_unconditional_part() -> None:
    space = Space(
        n_layers=Int(2, 4),
        units=Int(8, 64, log=True, per_layer="n_layers"),
        optimizer=Choice(["sgd", "momentum", "adam"]),
        momentum=Float(0.5, 0.99, when={"optimizer": "momentum"}),
        deep=Bool(),
        n_extra=Int(1, 3, when={"deep": True}),
        extra_units=Int(4, 8, per_layer="n_extra", when={"deep": True}),  # its count is conditional
        gated_units=Int(4, 8, per_layer="n_layers", when={"deep": True}),
        batch_size=Choice([16, 32], ordered=True),
        seed=Fixed(0),
    )
    dists = distributions(space)
    assert list(dists) == ["n_layers", "units/0", "units/1", "optimizer", "deep", "batch_size"]
    assert dists["units/0"] == dists["units/1"] == IntDistribution(8, 64, log=True)
    assert dists["batch_size"] == CategoricalDistribution((16, 32))
    # every sampled config agrees with the unconditional distributions
    for config, params in _sample(space, 40):
        for key, dist in dists.items():
            assert key in params
            assert dist._contains(dist.to_internal_repr(params[key]))
        assert "units/2" not in dists and config["n_layers"] >= 2


def test_distributions_skip_copies_whose_count_is_conditional() -> None:
    space = Space(deep=Bool(), n_extra=Int(1, 3, when={"deep": True}), extra=Int(4, 8, per_layer="n_extra"))
    assert list(distributions(space)) == ["deep"]


def test_per_layer_on_a_conditional_count_samples_or_is_refused() -> None:
    try:
        space = Space(deep=Bool(), n_extra=Int(1, 3, when={"deep": True}), extra=Int(4, 8, per_layer="n_extra"))
    except SchemaError:  # refusing it at construction would be fine too
        return
    configs = [c for c, _ in _sample(space, 20)]
    for config in configs:
        space.validate(config)
        assert any(k.startswith("extra/") for k in config) == config["deep"]
    assert {c["deep"] for c in configs} == {False, True}


def test_distributions_with_count_min_zero_has_no_layer_copies() -> None:
    space = Space(n_layers=Int(0, 3), units=Int(8, 16, per_layer="n_layers"))
    assert list(distributions(space)) == ["n_layers"]


# --- define-by-run on a real study --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space",
    [presets.mlp_full(), presets.cnn_full()],
    ids=["mlp_full", "cnn_full"],
)
@pytest.mark.parametrize(
    "sampler",
    [
        optuna.samplers.RandomSampler(seed=1),
        optuna.samplers.TPESampler(seed=1, multivariate=True, group=True, n_startup_trials=5),
    ],
    ids=["random", "tpe-group"],
)
def test_suggested_configs_pass_validate(space: Space, sampler: optuna.samplers.BaseSampler) -> None:
    study = optuna.create_study(sampler=sampler)
    seen_layers = set()
    for i in range(25):
        trial = study.ask()
        config = suggest(trial, space)
        space.validate(config)  # raises on any missing, inactive or out-of-range value
        count = "n_layers" if "n_layers" in space else "n_blocks"
        seen_layers.add(config[count])
        per_layer = "units" if count == "n_layers" else "filters"
        assert sorted(k for k in config if k.startswith(per_layer + "/")) == [
            f"{per_layer}/{j}" for j in range(config[count])
        ]
        # inactive parameters are absent, never stale
        assert ("momentum" in config) == (config["optimizer"] in ("momentum", "rmsprop"))
        assert ("lr_gamma" in config) == (config["lr_schedule"] == "exponential")
        assert ("weight_decay" in config) == config["weight_decay_on"]
        study.tell(trial, float(i % 7))
    assert len(seen_layers) > 1


def test_config_and_params_hold_values_for_ordered_choices() -> None:
    space = Space(batch_size=Choice([16, 32, 64, 128], ordered=True), size=Choice(["s", "m", "l"], ordered=True))
    for config, params in _sample(space, 20):
        assert config["batch_size"] in (16, 32, 64, 128)
        assert params["batch_size"] == config["batch_size"]
        assert params["size"] == config["size"]


# --- encode / decode ----------------------------------------------------------------------------------------

ROUND_TRIP_SPACE = Space(
    n_layers=Int(1, 3),
    units=Choice([16, 32, 64], ordered=True, per_layer="n_layers"),
    optimizer=Choice(["sgd", "momentum"]),
    momentum=Float(0.5, 0.9, step=0.2, when={"optimizer": "momentum"}),
    bn=Bool(),
    width=Int(2, 8, step=3),
    seed=Fixed(7),
)


@pytest.mark.parametrize("source", ["grid", "sampled"])
def test_encode_decode_round_trip(source: str) -> None:
    space = ROUND_TRIP_SPACE
    if source == "grid":
        configs = space.grid()
        assert len(configs) > 50
    else:
        configs = [c for c, _ in _sample(space, 60)]
    for config in configs:
        params = encode(space, config)
        assert "seed" not in params  # fixed values are not Optuna params
        for i in range(config["n_layers"]):
            assert params[f"units/{i}"] == config[f"units/{i}"]
        back = decode(space, params)
        assert back == config
        assert [type(v) for v in back.values()] == [type(v) for v in config.values()]


def test_encode_matches_optuna_params_of_a_real_trial() -> None:
    for config, params in _sample(ROUND_TRIP_SPACE, 30, seed=3):
        assert encode(ROUND_TRIP_SPACE, config) == params
        assert decode(ROUND_TRIP_SPACE, params) == config


def test_enqueued_encoded_config_is_sampled_back_exactly() -> None:
    study = _random_study()
    config = {
        "n_layers": 2,
        "units/0": 64,
        "units/1": 16,
        "optimizer": "momentum",
        "momentum": 0.9,
        "bn": True,
        "width": 8,
        "seed": 7,
    }
    ROUND_TRIP_SPACE.validate(config)
    study.enqueue_trial(encode(ROUND_TRIP_SPACE, config))
    assert suggest(study.ask(), ROUND_TRIP_SPACE) == config


# --- stepped floats: the config is exact, Optuna keeps its own float (issue 8) ------------------------------

STEPPED = Space(x=Float(0.1, 0.5, step=0.1), y=Float(-1.0, 1.0, step=0.05), z=Float(0.0, 1.0, step=0.25))


def test_stepped_floats_are_exact_in_the_config_and_round_trip() -> None:
    pairs = _sample(STEPPED, 200)
    configs = [c for c, _ in pairs]
    assert sorted({repr(c["x"]) for c in configs}) == ["0.1", "0.2", "0.3", "0.4", "0.5"]
    assert all(len(repr(c["y"]).partition(".")[2]) <= 2 for c in configs)
    # Optuna records its own binary float; the config names the same grid point, written exactly.
    assert any(params["x"] == 0.30000000000000004 for _, params in pairs)
    for config, params in pairs:
        STEPPED.validate(config)
        assert decode(STEPPED, params) == config
        assert decode(STEPPED, encode(STEPPED, config)) == config
        encoded, dists = params_and_distributions(STEPPED, config)  # what the Ray mirror stores
        assert encoded == encode(STEPPED, config) and dists == distributions(STEPPED)
        assert all(abs(encoded[k] - params[k]) < 1e-12 for k in params)


def test_an_enqueued_exact_value_is_suggested_as_it_is() -> None:
    study = _random_study()
    study.enqueue_trial({"x": 0.3, "y": -0.35, "z": 0.75})
    trial = study.ask()
    assert suggest(trial, STEPPED) == {"x": 0.3, "y": -0.35, "z": 0.75} == trial.params


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    low=st.integers(-(10**4), 10**4),
    step=st.integers(1, 10**3),
    decimals=st.integers(0, 6),
    n=st.integers(1, 30),
)
def test_suggested_stepped_floats_have_no_more_decimals_than_low_and_step(
    low: int, step: int, decimals: int, n: int
) -> None:
    d_low, d_step = Decimal(low).scaleb(-decimals), Decimal(step).scaleb(-decimals)
    assume(d_step >= Decimal("1e-9") * max(abs(d_low), abs(d_low + n * d_step)))  # finer steps are refused
    param = Float(float(d_low), float(d_low + n * d_step), step=float(d_step))
    space = Space(x=param)
    exact = {float(d_low + k * d_step) for k in range(n + 1)}
    for config, params in _sample(space, 15):
        value = config["x"]
        # repr(value) has no more decimals than low and step: 0.3, never 0.30000000000000004
        assert value in exact and -Decimal(repr(value)).normalize().as_tuple().exponent <= decimals  # type: ignore[operator]
        assert decode(space, params) == config == decode(space, encode(space, config))


# --- reachability --------------------------------------------------------------------------------------------


def test_both_ends_of_int_ranges_are_reached_under_random_search() -> None:
    space = Space(
        a=Int(1, 4),
        b=Int(0, 10, step=5),
        c=Int(1, 8, log=True),
        d=Int(-3, 3),
        n=Int(1, 2),
        u=Int(2, 5, per_layer="n"),
        o=Choice([1, 2, 3], ordered=True),
    )
    seen: dict[str, set[Any]] = {}
    for config, _ in _sample(space, 300, seed=0):
        for key, value in config.items():
            seen.setdefault(key, set()).add(value)
    assert {1, 4} <= seen["a"]
    assert seen["b"] == {0, 5, 10}
    assert {1, 8} <= seen["c"]
    assert {-3, 3} <= seen["d"]
    assert {2, 5} <= seen["u/0"] and {2, 5} <= seen["u/1"]
    assert seen["o"] == {1, 2, 3}
