"""A trial's end-of-epoch decisions (backends/_epoch.py), and its early stopping held equal to Lightning's."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.callbacks import EarlyStopping

from tunebridge.backends import _epoch
from tunebridge.backends._epoch import EarlyStopRule, TrialEpochs
from tunebridge.errors import MetricNotFoundError, NonFiniteMetricError
from tunebridge.schema import EarlyStoppingSpec

# Values drawn from a small grid tie often; any float (NaN and infinities included) covers the rest.
_GRID = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
_VALUE = st.one_of(
    st.sampled_from(_GRID),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),  # the monitored metric is not logged this validation
)


@settings(max_examples=300, deadline=None)
@given(
    curve=st.lists(_VALUE, min_size=1, max_size=12),
    mode=st.sampled_from(["min", "max"]),
    patience=st.integers(1, 5),
    min_delta=st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0.0, 3.0)),
)
def test_early_stopping_stops_where_lightnings_does(
    curve: list[float | None], mode: str, patience: int, min_delta: float
) -> None:
    lightning = EarlyStopping(
        monitor="watched", mode=mode, patience=patience, min_delta=min_delta, strict=False, check_finite=True
    )
    rule = EarlyStopRule("watched", mode, patience, min_delta)
    trial = TrialEpochs("val_f1", "max", early_stopping=rule)
    ours = theirs = None
    for epoch, value in enumerate(curve, start=1):
        metrics = {"val_f1": 0.5} if value is None else {"val_f1": 0.5, "watched": value}
        decision = trial.validated(epoch, metrics)
        # Lightning skips a validation without the monitored metric (strict=False) before it evaluates.
        stop = (
            False
            if value is None
            else lightning._evaluate_stopping_criteria(torch.tensor(value, dtype=torch.float64))[0]
        )
        assert (trial.wait, trial.best) == (lightning.wait_count, float(lightning.best_score)), epoch
        if decision.early_stop and ours is None:
            ours = epoch
        if stop and theirs is None:
            theirs = epoch
        if ours is not None or theirs is not None:
            break  # the trainer stops at the first one
    assert ours == theirs
    assert trial.early_stopped is (ours is not None)


@pytest.mark.parametrize(
    ("curve", "mode", "patience", "min_delta", "stop_at", "why"),
    [
        ([1.0, 0.9, 0.9, 0.9], "min", 2, 0.0, 4, "did not improve in 2"),  # a tie is no improvement
        ([1.0, 0.96, 0.97, 0.91], "min", 2, 0.05, 3, "did not improve in 2"),  # nor is less than min_delta
        ([0.1, 0.2, 0.3, 0.4], "max", 1, 0.0, None, None),
        ([0.5, math.nan], "max", 5, 0.0, 2, "not finite"),
        ([0.5, -math.inf], "min", 5, 0.0, 2, "not finite"),
    ],
)
def test_early_stopping_table(
    curve: list[float], mode: str, patience: int, min_delta: float, stop_at: int | None, why: str | None
) -> None:
    trial = TrialEpochs("val_f1", "max", early_stopping=EarlyStopRule("watched", mode, patience, min_delta))
    stops = [trial.validated(e, {"val_f1": 0.5, "watched": v}) for e, v in enumerate(curve, start=1)]
    first = next((d for d in stops if d.early_stop), None)
    assert (first.epoch if first else None) == stop_at
    if why is not None:
        assert first is not None and first.reason is not None and why in first.reason
    assert trial.early_stopped is (stop_at is not None)


@pytest.mark.parametrize(
    ("curve", "mode", "rule", "kept"),
    [
        ([0.5, 0.3, 0.3, 0.4], "min", "best_epoch", [True, True, False, False]),  # the first of equal bests
        ([0.5, 0.3, 0.3, 0.4], "max", "best_epoch", [True, False, False, False]),
        ([0.5, 0.3, 0.9], "max", "best_epoch", [True, False, True]),
        ([0.5, 0.3, 0.9], "min", "last_epoch", [True, True, True]),  # every epoch is the last one when it ends
    ],
)
def test_the_objective_epochs_weights_are_kept(curve: list[float], mode: str, rule: str, kept: list[bool]) -> None:
    trial = TrialEpochs("val_loss", mode, rule=rule)
    assert [trial.validated(e, {"val_loss": v}).keep for e, v in enumerate(curve, start=1)] == kept


@pytest.mark.parametrize(
    ("earlier", "value", "keep"),
    [
        ({1: {"val_loss": 0.1}}, 0.5, False),  # an epoch before the resume was better
        ({1: {"val_loss": 0.9}}, 0.5, True),
        ({1: {"val_loss": 0.9}, 2: {"val_loss": 0.1}}, 0.5, True),  # this trial's own epoch 2 replaces it
        ({}, 0.5, True),
    ],
)
def test_epochs_before_a_resume_count_for_the_kept_epoch(
    earlier: dict[int, dict[str, float]], value: float, keep: bool
) -> None:
    trial = TrialEpochs("val_loss", "min")
    assert trial.validated(2, {"val_loss": value}, earlier=earlier).keep is keep
    assert trial.history == {2: {"val_loss": value}}  # the earlier epochs are not this run's history


def test_a_second_validation_in_an_epoch_replaces_the_first() -> None:
    trial = TrialEpochs("val_loss", "min")
    trial.validated(1, {"val_loss": 0.5})
    trial.validated(1, {"val_loss": 0.7, "val_acc": 0.2})
    assert trial.history == {1: {"val_loss": 0.7, "val_acc": 0.2}}


@pytest.mark.parametrize(
    ("epoch", "budget", "asked", "pruned"),
    [
        (1, 3, True, True),
        (2, 3, False, False),
        (3, 3, True, False),  # the budget's last epoch is never pruned
        (4, 3, True, False),
        (9, None, True, True),
    ],
)
def test_pruned_when_asked_before_the_budgets_last_epoch(
    epoch: int, budget: int | None, asked: bool, pruned: bool
) -> None:
    trial = TrialEpochs("val_loss", "min", budget=budget)
    trial.validated(epoch, {"val_loss": 0.5})
    assert trial.reported(epoch, asked) is pruned
    assert trial.pruned is pruned


@pytest.mark.parametrize(
    ("metrics", "error", "match"),
    [
        ({"val_acc": 0.5}, MetricNotFoundError, r"metric 'val_f1' was not logged.*val_acc"),
        ({"val_f1": math.nan}, NonFiniteMetricError, r"metric 'val_f1' is nan at epoch 2"),
        ({"val_f1": 0.5, "train_loss": math.inf}, NonFiniteMetricError, r"metric 'train_loss' is inf at epoch 2"),
    ],
)
def test_an_epochs_metrics_are_checked_before_they_are_recorded(
    metrics: dict[str, float], error: type[Exception], match: str
) -> None:
    trial = TrialEpochs("val_f1", "max")
    with pytest.raises(error, match=match):
        trial.validated(2, metrics)
    assert trial.history == {}


def test_a_non_finite_metric_that_is_not_checked_is_recorded() -> None:
    trial = TrialEpochs("val_f1", "max")
    assert trial.validated(1, {"val_f1": 0.5, "lr": math.inf}).keep
    assert trial.history == {1: {"val_f1": 0.5, "lr": math.inf}}


@pytest.mark.parametrize(
    ("early_stop", "asked", "pruned", "early_stopped"),
    [(False, False, False, False), (True, False, False, True), (True, True, True, False), (False, True, True, False)],
)
def test_the_outcome(early_stop: bool, asked: bool, pruned: bool, early_stopped: bool) -> None:
    rule = EarlyStopRule("val_loss", "min", patience=1) if early_stop else None
    trial = TrialEpochs("val_loss", "min", budget=5, early_stopping=rule)
    for epoch, value in enumerate([0.5, 0.3, 0.4], start=1):
        trial.validated(epoch, {"val_loss": value, "val_acc": epoch / 10})
    trial.reported(3, asked)
    outcome = trial.outcome({"n_params": 7.0})
    assert (outcome.epochs, outcome.best_epoch) == (3, 2)
    assert outcome.metrics == {"val_loss": 0.4, "val_acc": 0.3, "n_params": 7.0}
    assert outcome.best == {"val_loss": 0.3, "val_acc": 0.2, "n_params": 7.0}
    assert (outcome.pruned, outcome.early_stopped) == (pruned, early_stopped)


def test_no_outcome_without_an_epoch() -> None:
    with pytest.raises(MetricNotFoundError, match=r"metric 'val_loss' was not logged"):
        TrialEpochs("val_loss", "min").outcome()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, None),
        (EarlyStoppingSpec(), EarlyStopRule("val_acc", "max", 6, 0.0)),  # the run's metric and mode
        (
            EarlyStoppingSpec(monitor="val_loss", mode="min", patience=1, min_delta=0.5),
            EarlyStopRule("val_loss", "min", 1, 0.5),
        ),
    ],
)
def test_a_specs_rule(spec: EarlyStoppingSpec | None, expected: EarlyStopRule | None) -> None:
    assert EarlyStopRule.of(spec, metric="val_acc", mode="max") == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "lowest"}, r"`mode` must be 'min' or 'max', but got 'lowest'"),
        ({"patience": 0}, r"`patience >= 1` must hold, but got patience=0"),
        ({"min_delta": -0.1}, r"`min_delta >= 0` must hold, but got min_delta=-0.1"),
        ({"min_delta": math.nan}, r"`min_delta >= 0` must hold, but got min_delta=nan"),
    ],
)
def test_a_rule_is_checked_when_made(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"monitor": "val_loss", "mode": "min", **kwargs}
    with pytest.raises(ValueError, match=match):
        EarlyStopRule(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "rule", "match"),
    [
        ("maximize", "best_epoch", r"TrialEpochs: `mode` must be 'min' or 'max', but got 'maximize'"),
        ("min", "best", r"TrialEpochs: `rule` must be 'best_epoch' or 'last_epoch', but got 'best'"),
    ],
)
def test_trial_epochs_are_checked_when_made(mode: str, rule: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrialEpochs("val_loss", mode, rule=rule)


def test_the_modules_example_runs() -> None:
    assert doctest.testmod(_epoch).failed == 0
