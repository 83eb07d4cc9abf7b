"""One trial under Lightning: both Lightning packages, strict metrics, NaN, early stopping, pruning, quiet runs.

Real training only: the built-in classes on the bundled tabular data, and a tiny probe module defined
here, all a few epochs long.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from functools import cache, partial
from types import ModuleType
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn
from torch.nn import functional as F

from tunebridge.api import run_study, tune
from tunebridge.backends.optuna import StudyOptions
from tunebridge.errors import MetricNotFoundError
from tunebridge.lightning import LightningObjective, NonFiniteMetricError, TrialSettings, fit_trial
from tunebridge.lightning.builtin import build_builtin, make_classes
from tunebridge.schema import Choice, EarlyStoppingSpec, Float, Int, Space

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]
MLP_CONFIG: dict[str, Any] = {"n_layers": 1, "units/0": 16, "lr": 0.01, "optimizer": "adam", "batch_size": 64}
SMALL_SPACE = Space(
    n_layers=Int(1, 2),
    units=Choice([8, 16], ordered=True, per_layer="n_layers"),
    lr=Float(1e-5, 1e-1, log=True),
    optimizer=Choice(["sgd", "adam"]),
)


def settings(metric: str = "val_loss", mode: str = "min", max_epochs: int = 2, **kw: Any) -> TrialSettings:
    return TrialSettings(metric=metric, mode=mode, max_epochs=max_epochs, accelerator="cpu", seed=0, **kw)


def builtin(namespace: str, data: str = "wine", max_epochs: int = 2) -> Any:
    return partial(build_builtin, "mlp", data, max_epochs=max_epochs, seed=0, namespace=namespace)


@cache
def probe_class(namespace: str) -> type:
    """A tiny LightningModule on ``namespace`` whose validation can be steered (NaN, nothing logged, plateau)."""
    pl: ModuleType = importlib.import_module(namespace)

    class Probe(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, *, lr: float = 0.05, nan_from_epoch: int | None = None, log: str = "val") -> None:
            super().__init__()
            self.net = nn.Linear(30, 2)
            self.lr, self.nan_from_epoch, self.log_mode = lr, nan_from_epoch, log

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
            x, y = batch
            logits = self.net(x)
            loss = F.cross_entropy(logits, y)
            if self.nan_from_epoch is not None and self.current_epoch + 1 >= self.nan_from_epoch:
                loss = loss * math.nan
            if self.log_mode == "val":
                self.log("val_loss", loss)
                self.log("val_acc", (logits.argmax(1) == y).float().mean())
            elif self.log_mode == "other":
                self.log("val_score", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return Probe


def probe_build(namespace: str, **probe: Any) -> Any:
    def build(config: Mapping[str, Any]) -> tuple[Any, Any]:
        data = make_classes(namespace).BreastCancerDataModule(batch_size=128, seed=0)
        return probe_class(namespace)(**probe), data

    return build


def study_opts(space: Space = SMALL_SPACE, **kw: Any) -> StudyOptions:
    base: dict[str, Any] = {"metrics": ["val_loss"], "modes": ["min"], "search": "random", "seed": 0}
    base.update(kw)
    return StudyOptions(space=space, **base)


# --- both Lightning packages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_fit_trial_runs_under_the_modules_own_package(namespace: str) -> None:
    build = builtin(namespace)
    module, dm = build(MLP_CONFIG)
    own, other = (importlib.import_module(n) for n in (namespace, NAMESPACES[1 - NAMESPACES.index(namespace)]))
    assert isinstance(module, own.LightningModule) and isinstance(dm, own.LightningDataModule)
    assert not isinstance(module, other.LightningModule) and not isinstance(dm, other.LightningDataModule)
    seen: list[tuple[int, dict[str, float]]] = []

    class Recorder:
        def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Any = None) -> bool:
            seen.append((epoch, dict(metrics)))
            return False

    outcome = fit_trial(build, MLP_CONFIG, Recorder(), settings(max_epochs=3))
    assert [e for e, _ in seen] == [1, 2, 3]
    assert outcome.epochs == 3 and not outcome.pruned and not outcome.early_stopped
    assert {"val_loss", "val_acc", "n_params"} <= set(outcome.metrics)
    assert outcome.metrics["n_params"] == 13 * 16 + 16 + 16 * 3 + 3
    assert outcome.best["val_loss"] == min(m["val_loss"] for _, m in seen)
    assert outcome.best_epoch == 1 + min(range(3), key=lambda i: seen[i][1]["val_loss"])


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_tune_with_a_module_of_either_package(namespace: str) -> None:
    result = tune(
        builtin(namespace, max_epochs=2),
        SMALL_SPACE,
        metric="val_acc",
        mode="max",
        trials=2,
        max_epochs=2,
        search="random",
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    assert list(result.trials["state"]) == ["COMPLETE", "COMPLETE"]
    assert 0.0 <= result.best_value <= 1.0


@pytest.mark.parametrize(("module_ns", "data_ns"), [NAMESPACES, NAMESPACES[::-1]])
def test_mismatched_module_and_datamodule_give_a_clear_type_error(module_ns: str, data_ns: str) -> None:
    def build(config: Mapping[str, Any]) -> tuple[Any, Any]:
        module = make_classes(module_ns).MLPClassifier(config, n_features=13, n_classes=3, max_epochs=2)
        return module, make_classes(data_ns).WineDataModule(batch_size=32)

    match = (
        rf"the datamodule WineDataModule is not a {module_ns}\.LightningDataModule, but the module "
        rf"MLPClassifier is a {module_ns} module: lightning\.pytorch and pytorch_lightning are separate class "
        r"trees, so build both from the same package"
    )
    with pytest.raises(TypeError, match=match):
        fit_trial(build, MLP_CONFIG, None, settings())
    # inside a study the trial fails with that reason and the study goes on
    study = run_study(study_opts(), LightningObjective(build, settings()), n_trials=1)
    assert study.trials[0].state == TrialState.FAIL
    assert study.trials[0].user_attrs["fail_reason"].startswith("TypeError: the datamodule WineDataModule is not a")


def test_a_plain_torch_module_is_refused() -> None:
    def build(config: Mapping[str, Any]) -> tuple[Any, Any]:
        return nn.Linear(2, 2), None

    with pytest.raises(TypeError, match=r"Linear is not a LightningModule: derive it from lightning\.pytorch"):
        fit_trial(build, MLP_CONFIG, None, settings())


# --- strict metrics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log", "metric", "listed"),
    [
        ("val", "val_f1", "val_acc, val_loss"),
        ("other", "val_loss", "val_score"),
        ("none", "val_loss", "none"),  # validation logs nothing (train_loss is not aggregated yet)
    ],
)
def test_metric_not_logged_lists_the_logged_metrics(log: str, metric: str, listed: str) -> None:
    build = probe_build("lightning.pytorch", log=log)
    match = rf"metric '{metric}' was not logged during validation; the metrics that are logged: {listed}\. "
    with pytest.raises(MetricNotFoundError, match=match):
        fit_trial(build, {}, None, settings(metric=metric))
    study = run_study(study_opts(metrics=[metric]), LightningObjective(build, settings(metric=metric)), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith(f"MetricNotFoundError: metric '{metric}' was not logged")
    assert listed in trial.user_attrs["fail_reason"]
    assert "MetricNotFoundError" in trial.user_attrs["traceback"]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("nan_from_epoch", [1, 2])
def test_nan_loss_fails_the_trial_with_a_non_finite_reason(namespace: str, nan_from_epoch: int) -> None:
    build = probe_build(namespace, nan_from_epoch=nan_from_epoch)
    with pytest.raises(NonFiniteMetricError, match=rf"metric 'val_loss' is nan at epoch {nan_from_epoch}"):
        fit_trial(build, {}, None, settings(max_epochs=3, early_stopping=EarlyStoppingSpec(patience=2)))
    objective = LightningObjective(build, settings(max_epochs=3))
    study = run_study(study_opts(), objective, n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    for t in study.trials:
        assert (
            t.user_attrs["fail_reason"] == f"NonFiniteMetricError: metric 'val_loss' is nan at epoch {nan_from_epoch}"
        )


def test_a_healthy_trial_after_a_failed_one_completes() -> None:
    calls = {"n": 0}
    good, bad = probe_build("lightning.pytorch"), probe_build("lightning.pytorch", nan_from_epoch=1)

    def build(config: Mapping[str, Any]) -> tuple[Any, Any]:
        calls["n"] += 1
        return (bad if calls["n"] == 2 else good)(config)

    study = run_study(study_opts(), LightningObjective(build, settings()), n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


# --- early stopping and attributes ------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_early_stopping_stops_a_plateau_before_max_epochs(namespace: str) -> None:
    build = probe_build(namespace, lr=0.0)  # nothing learns: val_loss is flat from epoch 1
    es = EarlyStoppingSpec(patience=2)
    outcome = fit_trial(build, {}, None, settings(max_epochs=10, early_stopping=es))
    assert outcome.early_stopped is True
    assert outcome.epochs == 3  # epoch 1 sets the best, epochs 2 and 3 do not improve it
    assert outcome.best_epoch == 1
    study = run_study(study_opts(), LightningObjective(build, settings(max_epochs=10, early_stopping=es)), n_trials=1)
    attrs = study.trials[0].user_attrs
    assert (attrs["epochs"], attrs["early_stopped"], attrs["best_epoch"]) == (3, True, 1)


def test_no_early_stop_when_still_improving() -> None:
    outcome = fit_trial(
        probe_build("lightning.pytorch", lr=0.1),
        {},
        None,
        settings(max_epochs=4, early_stopping=EarlyStoppingSpec(patience=2)),
    )
    assert (outcome.epochs, outcome.early_stopped) == (4, False)


def test_config_epochs_lowers_the_budget() -> None:
    outcome = fit_trial(builtin("lightning.pytorch"), {**MLP_CONFIG, "epochs": 2}, None, settings(max_epochs=5))
    assert outcome.epochs == 2


def test_objective_pickles_for_worker_processes() -> None:
    import pickle

    from tunebridge.lightning import builtin_builder

    objective = LightningObjective(builtin_builder("mlp", "wine", max_epochs=1, seed=0), settings(max_epochs=1))
    clone = pickle.loads(pickle.dumps(objective))
    assert clone.settings == objective.settings
    assert clone(dict(MLP_CONFIG), None).metrics == objective(dict(MLP_CONFIG), None).metrics


def test_several_validations_per_epoch_report_once_per_epoch() -> None:
    kw = {"trainer_kwargs": {"val_check_interval": 0.5}}
    study = run_study(
        study_opts(), LightningObjective(probe_build("lightning.pytorch"), settings(max_epochs=2, **kw)), n_trials=1
    )
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert sorted(trial.intermediate_values) == [1, 2]
    assert trial.user_attrs["epochs"] == 2


def test_same_config_trains_the_same_model_twice() -> None:
    objective = LightningObjective(builtin("lightning.pytorch"), settings(max_epochs=2))
    first, second = objective(dict(MLP_CONFIG), None), objective(dict(MLP_CONFIG), None)
    assert first.metrics == second.metrics


def test_every_trial_stores_its_final_metrics() -> None:
    result = tune(
        builtin("lightning.pytorch", data="breast_cancer"),
        SMALL_SPACE,
        metric="val_acc",
        mode="max",
        trials=4,
        max_epochs=3,
        search="random",
        early_stopping={"patience": 1, "min_delta": 0.5},
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for t in trials:
        attrs = t.user_attrs
        for key in ("final_val_loss", "final_val_acc", "final_n_params", "epochs", "best_epoch", "early_stopped"):
            assert key in attrs, key
        assert attrs["final_n_params"] > 0 and 0 <= attrs["final_val_acc"] <= 1
        assert t.value == max(t.intermediate_values.values())  # val_acc at the best epoch, mode max
        assert attrs["epochs"] == len(t.intermediate_values)
    # min_delta 0.5 on accuracy can never be met: every trial stops after patience + 1 epochs
    assert all(t.user_attrs["early_stopped"] and t.user_attrs["epochs"] == 2 for t in trials)
    assert {"val_loss", "val_acc", "n_params"} <= set(result.trials.columns)


# --- pruning in a real small study ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pruner", "trials"),
    [({"policy": "asha", "grace_period": 1, "reduction_factor": 2}, 6), ({"policy": "median", "grace_period": 1}, 9)],
    ids=["asha", "median"],
)
def test_pruning_prunes_some_trials_of_a_real_study(pruner: dict[str, Any], trials: int) -> None:
    result = tune(
        builtin("lightning.pytorch", max_epochs=4),
        SMALL_SPACE,
        metric="val_loss",
        mode="min",
        trials=trials,
        max_epochs=4,
        search="random",
        pruner=pruner,
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    states = [t.state for t in result.study.trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert TrialState.FAIL not in states
    pruned = [t for t in result.study.trials if t.state == TrialState.PRUNED]
    assert any(t.user_attrs["epochs"] < 4 for t in pruned)  # stopped before the budget
    for t in pruned:
        assert "final_val_loss" in t.user_attrs and "final_n_params" in t.user_attrs
        assert t.user_attrs["epochs"] == max(t.intermediate_values)
    assert result.record["counts"]["pruned"] == states.count(TrialState.PRUNED)


# --- quiet trials ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_no_lightning_banners_during_tune(namespace: str, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    tune(
        builtin(namespace),
        SMALL_SPACE,
        metric="val_loss",
        mode="min",
        trials=2,
        max_epochs=2,
        search="random",
        run={"progress": False},
    )
    out, err = capfd.readouterr()
    text = out + err
    for banner in (
        "GPU available",
        "TPU available",
        "Tip",
        "LOCAL_RANK",
        "| Name",
        "Epoch 0",
        "it/s",
        "seed set to",
        "Seed set to",
        "max_epochs=",
    ):
        assert banner not in text, f"{banner!r} was printed:\n{text}"
