"""The trial rules every backend shares (one function each, in backends/_base.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tunebridge.backends._base import (
    CHECKPOINT_FILE,
    Resume,
    TrialOutcome,
    best_epoch,
    best_of,
    check_epoch_metrics,
    finite_objective_values,
    is_better,
    may_prune,
    objective_values,
    over_whole_history,
)
from tunebridge.errors import MetricNotFoundError, NonFiniteMetricError


@pytest.mark.parametrize(
    ("history", "mode", "expected"),
    [
        ({1: {"m": 0.5}, 2: {"m": 0.3}, 3: {"m": 0.3}}, "min", 2),  # the first of equal bests
        ({1: {"m": 0.5}, 2: {"m": 0.3}, 3: {"m": 0.9}}, "max", 3),
        ({1: {"m": math.nan}, 2: {"m": 0.7}}, "min", 2),  # NaN is never best
        ({1: {"m": math.nan}}, "min", None),
        ({}, "max", None),
        ({1: {"other": 1.0}}, "min", None),
    ],
)
def test_best_epoch(history: dict[int, dict[str, float]], mode: str, expected: int | None) -> None:
    assert best_epoch(history, "m", mode) == expected


@pytest.mark.parametrize(
    ("epoch", "budget", "allowed"), [(1, 3, True), (2, 3, True), (3, 3, False), (4, 3, False), (9, None, True)]
)
def test_the_budgets_last_epoch_is_never_pruned(epoch: int, budget: int | None, allowed: bool) -> None:
    assert may_prune(epoch, budget) is allowed


def test_check_epoch_metrics() -> None:
    check_epoch_metrics(1, {"val_acc": 0.5, "val_loss": 1.0, "lr": math.inf}, "val_acc")  # lr is not checked
    with pytest.raises(MetricNotFoundError, match=r"'val_f1'.*val_acc"):
        check_epoch_metrics(1, {"val_acc": 0.5}, "val_f1")
    with pytest.raises(NonFiniteMetricError, match=r"metric 'val_acc' is nan at epoch 2"):
        check_epoch_metrics(2, {"val_acc": math.nan}, "val_acc")
    with pytest.raises(NonFiniteMetricError, match=r"metric 'train_loss' is inf at epoch 3"):
        check_epoch_metrics(3, {"val_acc": 0.5, "train_loss": math.inf}, "val_acc")


def test_objective_values_take_the_best_epoch_and_refuse_non_finite_values() -> None:
    outcome = TrialOutcome(metrics={"a": 1.0, "b": 5.0}, best={"a": 0.5}, epochs=3, best_epoch=2)
    assert objective_values(outcome, ["a", "b"]) == [0.5, 5.0]
    assert finite_objective_values(outcome, ["a", "b"]) == [0.5, 5.0]
    with pytest.raises(MetricNotFoundError, match=r"'c'"):
        objective_values(outcome, ["c"])
    bad = TrialOutcome(metrics={"a": math.nan}, best={}, epochs=1, best_epoch=1)
    with pytest.raises(FloatingPointError, match=r"metric 'a' is nan"):
        finite_objective_values(bad, ["a"])


@pytest.mark.parametrize(
    ("values", "mode", "best"),
    [
        ([3.0, 1.0, 2.0], "min", 1.0),
        ([3.0, 1.0, None, 2.0], "max", 3.0),
        ([math.nan, 2.0], "min", 2.0),
        ([], "min", None),
    ],
)
def test_best_of(values: list[float | None], mode: str, best: float | None) -> None:
    assert best_of(values, mode) == best


def test_is_better() -> None:
    assert is_better(1.0, None, "min") and is_better(1.0, 2.0, "min") and not is_better(2.0, 1.0, "min")
    assert is_better(2.0, 1.0, "max") and not is_better(math.nan, None, "max")


def test_resume_points_at_the_checkpoint_file_when_there_is_one(tmp_path: Path) -> None:
    assert Resume(str(tmp_path)).checkpoint == str(tmp_path)  # an objective's own folder layout
    (tmp_path / CHECKPOINT_FILE).write_text("{}")
    assert Resume(str(tmp_path), reapply_config=True).checkpoint == str(tmp_path / CHECKPOINT_FILE)


def test_over_whole_history_chooses_again_over_the_epochs_before_a_resume() -> None:
    history = {1: {"acc": 0.9}, 2: {"acc": 0.7}, 3: {"acc": 0.8}, 4: {"acc": 0.6}}
    own = TrialOutcome(metrics={"acc": 0.8}, best={"acc": 0.8, "n_params": 5.0}, epochs=3, best_epoch=3)
    chosen = over_whole_history(own, history, "acc", "max", "best_epoch")
    assert (chosen.best, chosen.best_epoch) == ({"acc": 0.9, "n_params": 5.0}, 1)  # epoch 4 is after the outcome
    assert over_whole_history(own, history, "acc", "min", "best_epoch").best_epoch == 2
    assert over_whole_history(own, history, "acc", "max", "last_epoch") is own  # already the last epoch
    assert over_whole_history(chosen, history, "acc", "max", "best_epoch") is chosen  # already chosen over them
