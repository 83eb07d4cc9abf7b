"""`tunebridge check` names the parameters a model-based search draws at random (no silent fallback)."""

from __future__ import annotations

from tunebridge.backends.optuna._factories import independent_params
from tunebridge.schema import Bool, Choice, Float, Int, Space

SPACE = Space(
    n_layers=Int(1, 3),
    units=Int(8, 64, per_layer="n_layers"),
    lr=Float(1e-4, 1e-1, log=True),
    batch_size=Choice([32, 64, 128], ordered=True),
    optimizer=Choice(["sgd", "momentum"]),
    momentum=Float(0.5, 0.99, when={"optimizer": ["momentum"]}),
    batch_norm=Bool(),
)


def test_cmaes_draws_unordered_choices_booleans_and_conditional_parameters_at_random() -> None:
    assert independent_params("cmaes", SPACE) == ["units/1..units/2", "optimizer", "momentum", "batch_norm"]


def test_gp_draws_only_the_conditional_parameters_at_random() -> None:
    assert independent_params("gp", SPACE) == ["units/1..units/2", "momentum"]


def test_tpe_and_random_model_or_draw_everything_alike() -> None:
    assert independent_params("tpe", SPACE) == [] and independent_params("random", SPACE) == []
