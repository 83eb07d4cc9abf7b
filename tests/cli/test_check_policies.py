"""``tunebridge check`` shows the pruner and early stopping with the values that will be used: only the
options a policy reads, early stopping's monitor and mode resolved to the run's metric."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._check import early_stopping_text, pruner_text
from tunebridge.schema import EarlyStoppingSpec, PruningSpec


@pytest.mark.parametrize(
    ("pruner", "expected"),
    [
        ({"policy": "none"}, "none (every trial runs to its budget or early stop)"),
        (
            {"policy": "asha", "grace_period": 3},
            "asha: grace_period 3, reduction_factor 3, budget 20 epochs (rungs at epochs 3, 9)",
        ),
        (
            {"policy": "hyperband", "grace_period": 1, "reduction_factor": 2, "max_budget": 8},
            "hyperband: grace_period 1, reduction_factor 2, budget 8 epochs (rungs at epochs 1, 2, 4)",
        ),
        ({"policy": "median", "grace_period": 2}, "median: from epoch 2 on, below the median of earlier trials"),
        ({"policy": "patience", "patience": 2, "min_delta": 0.01}, "patience: 2 epochs without an improvement of 0.01"),
    ],
)
def test_the_pruner_in_words(pruner: dict[str, object], expected: str) -> None:
    text = pruner_text(PruningSpec.from_dict(pruner), 20)
    assert text.startswith(expected)
    if pruner["policy"] != "patience":
        assert "patience" not in text and "min_delta" not in text


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, "off"),
        ({"patience": 4, "min_delta": 0.001}, "monitor val_acc (max), patience 4 validations, min_delta 0.001"),
        ({"monitor": "val_loss", "mode": "min"}, "monitor val_loss (min), patience 6 validations, min_delta 0"),
    ],
)
def test_early_stopping_in_words(spec: dict[str, object] | None, expected: str) -> None:
    assert early_stopping_text(EarlyStoppingSpec.from_dict(spec), "val_acc", "max") == expected


def test_check_of_the_bundled_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["check", "digits_mlp"])
    assert result.exit_code == 0, result.output
    assert "asha: grace_period 1, reduction_factor 3, budget 20 epochs" in result.stdout
    assert "monitor val_acc (max), patience 6 validations" in result.stdout
    assert "None" not in result.stdout and "min_delta': 0.0" not in result.stdout
