"""Presets: the standard families as ready spaces that sample valid configs and can be overridden."""

from __future__ import annotations

import doctest
import random
import re

import pytest

from tunebridge import presets
from tunebridge.errors import SchemaError
from tunebridge.schema import Bool, Choice, Float, Int, Param, Scalar, Space


def _random_draw(rng: random.Random):  # type: ignore[no-untyped-def]
    def draw(key: str, p: Param) -> Scalar:
        if isinstance(p, Float):
            return rng.uniform(p.low, p.high)
        if isinstance(p, Int):
            return rng.randrange(p.low, p.high + 1, p.step)
        values = p.enumerate() or ()
        return values[rng.randrange(len(values))]

    return draw


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_samples_valid_configs_and_round_trips(name: str) -> None:
    space = presets.get(name)
    rng = random.Random(0)
    for _ in range(50):
        space.validate(space.walk(_random_draw(rng)))
    assert Space.from_yaml(space.to_yaml()) == space
    assert presets.get(name) == space  # a fresh, equal space every time


def test_mlp_structure() -> None:
    space = presets.mlp()
    assert space["n_layers"] == Int(1, 3)
    assert space["units"] == Int(16, 256, log=True, per_layer="n_layers")
    assert space["activation"] == Choice(["relu", "tanh", "gelu", "leaky_relu"])
    wider = presets.mlp(max_layers=5, min_units=8, max_units=1024)
    assert wider.max_layers("units") == 5 and wider["units"] == Int(8, 1024, log=True, per_layer="n_layers")


def test_cnn_structure() -> None:
    space = presets.cnn()
    assert space["filters"].per_layer == "n_blocks" and space.max_layers("filters") == 2
    assert space["kernel_size"] == Choice([3, 5, 7], ordered=True)
    assert space["pooling"] == Choice(["max", "avg"]) and space["batch_norm"] == Bool()


def test_training_has_momentum_only_where_it_applies_and_schedule_parameters_per_schedule() -> None:
    space = presets.training()
    assert space["lr"] == Float(1e-4, 1e-1, log=True)
    assert space["optimizer"] == Choice(["sgd", "momentum", "rmsprop", "adam", "adamw"])
    draw = _random_draw(random.Random(1))
    for _ in range(100):
        config = space.walk(draw)
        assert ("momentum" in config) == (config["optimizer"] in ("momentum", "rmsprop"))
        assert ("lr_gamma" in config) == (config["lr_schedule"] == "exponential")
        assert ("lr_min_factor" in config) == (config["lr_schedule"] == "cosine")


def test_regularization_is_off_or_log_scaled() -> None:
    space = presets.regularization()
    assert space["weight_decay"] == Float(1e-6, 1e-2, log=True, when={"weight_decay_on": True})
    assert space["l1"] == Float(1e-7, 1e-3, log=True, when={"l1_on": True})
    assert space["dropout"] == Float(0.0, 0.5)


def test_full_presets_are_the_sum_of_their_parts() -> None:
    assert presets.mlp_full() == presets.mlp() + presets.training() + presets.regularization()
    assert presets.cnn_full() == presets.cnn() + presets.training() + presets.regularization()
    assert len(presets.cnn_full()) == len(presets.cnn()) + len(presets.training()) + len(presets.regularization()) - 1


def test_override_and_extend() -> None:
    space = presets.training().replace(optimizer=Choice(["adam", "momentum"]), epochs=Int(5, 20))
    assert space["momentum"].when == (("optimizer", ("momentum",)),)
    assert space.names[-1] == "epochs"
    assert presets.training().replace(optimizer=Choice(["adam"])).names == (
        "lr",
        "batch_size",
        "optimizer",
        "lr_schedule",
        "lr_gamma",
        "lr_min_factor",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "resnet",
            "space.presets: unknown preset, but got 'resnet'. Known presets: mlp, cnn, training, regularization, mlp_full, cnn_full.",
        ),
        (
            "mlp-full",
            "space.presets: unknown preset, but got 'mlp-full'. Did you mean 'mlp_full'? Known presets: mlp, cnn, training, regularization, mlp_full, cnn_full.",
        ),
        (
            ["mlp"],
            "space.presets: unknown preset, but got ['mlp']. Known presets: mlp, cnn, training, regularization, mlp_full, cnn_full.",
        ),
    ],
)
def test_unknown_preset(name: str, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        presets.get(name)
    assert str(info.value) == message


def test_the_module_docstring_example_runs() -> None:
    result = doctest.testmod(presets, raise_on_error=True)
    assert result.attempted >= 4
