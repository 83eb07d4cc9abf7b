"""Fused cohorts change speed, not results: each member trains as it would alone (issue 9)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from optuna.trial import TrialState

from tunebridge import tune
from tunebridge._record import bookkeeping
from tunebridge.fused import check_fusable
from tunebridge.fused._cohort import Member
from tunebridge.fused._loop import FuseStats, _place, _place_all, _seed_before_build
from tunebridge.lightning import LightningObjective, TrialSettings, builtin_builder
from tunebridge.schema import Choice, Float, Int, Space

EPOCHS = 3
BUILD = builtin_builder("mlp", "digits", max_epochs=EPOCHS, seed=0)
# Heterogeneous on purpose: every optimizer, schedule, activation, L1, weight decay, batch norm, depths, widths.
CONFIGS: list[dict[str, Any]] = [
    {"n_layers": 2, "units/0": 32, "units/1": 16, "activation": "relu", "lr": 0.01, "optimizer": "adam"},
    {
        "n_layers": 2,
        "units/0": 24,
        "units/1": 30,
        "activation": "tanh",
        "lr": 0.05,
        "optimizer": "momentum",
        "momentum": 0.9,
        "weight_decay": 1e-3,
    },
    {
        "n_layers": 3,
        "units/0": 20,
        "units/1": 30,
        "units/2": 10,
        "activation": "gelu",
        "lr": 0.003,
        "optimizer": "rmsprop",
        "momentum": 0.5,
        "l1": 1e-4,
        "lr_schedule": "cosine",
        "lr_min_factor": 0.1,
    },
    {
        "n_layers": 2,
        "units/0": 64,
        "units/1": 48,
        "activation": "leaky_relu",
        "lr": 0.002,
        "optimizer": "adamw",
        "weight_decay": 0.01,
        "batch_norm": True,
        "lr_schedule": "exponential",
        "lr_gamma": 0.9,
    },
    {"n_layers": 1, "units/0": 16, "activation": "relu", "lr": 0.1, "optimizer": "sgd"},
    {
        "n_layers": 2,
        "units/0": 40,
        "units/1": 20,
        "activation": "relu",
        "lr": 0.002,
        "optimizer": "adam",
        "batch_norm": True,
    },
]
for c in CONFIGS:
    c["batch_size"] = 64


class Recorder:
    def __init__(self) -> None:
        self.history: dict[int, dict[str, float]] = {}

    def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
        self.history[epoch] = dict(metrics)
        return False


def _settings(**kw: Any) -> TrialSettings:
    return TrialSettings(metric="val_loss", mode="min", max_epochs=EPOCHS, seed=0, accelerator="cpu", **kw)


def _fused(configs: list[dict[str, Any]], dtype: torch.dtype, capacity: int = 8) -> list[Member]:
    settings, cohorts, members = _settings(), [], []
    for config in configs:
        _seed_before_build(settings, config)
        module, datamodule = BUILD(config)
        member = Member(config, module, datamodule, None, EPOCHS, "val_loss", "min")
        _place(member, cohorts, capacity, dtype, FuseStats())
        members.append(member)
    for _ in range(EPOCHS):
        for cohort in cohorts:
            cohort.train_epoch()
    return members


def _alone(config: dict[str, Any], **settings: Any) -> dict[int, dict[str, float]]:
    recorder = Recorder()
    LightningObjective(BUILD, _settings(**settings))(config, recorder)
    return recorder.history


@pytest.fixture(scope="module")
def fused64() -> list[Member]:
    return _fused(CONFIGS, torch.float64)


@pytest.mark.parametrize("i", range(len(CONFIGS)))
def test_a_member_trains_the_curve_its_config_trains_alone_in_float64(i: int, fused64: list[Member]) -> None:
    alone = _alone(CONFIGS[i], trainer_kwargs={"precision": "64-true"})
    for epoch, metrics in alone.items():
        assert set(fused64[i].history[epoch]) == set(metrics)  # train_loss from epoch 2, as Lightning logs it
        for key in metrics:
            assert fused64[i].history[epoch][key] == pytest.approx(metrics[key], abs=1e-9), (epoch, key)


def test_in_float32_the_curves_agree_to_rounding() -> None:
    members = _fused(CONFIGS[:2], torch.float32)
    for config, member in zip(CONFIGS[:2], members):
        alone = _alone(config)
        for epoch in alone:
            assert member.history[epoch]["val_loss"] == pytest.approx(alone[epoch]["val_loss"], abs=1e-4)


def test_a_members_result_does_not_depend_on_its_companions(fused64: list[Member]) -> None:
    solo = _fused([CONFIGS[0]], torch.float64)[0]
    assert solo.history == fused64[0].history


CNN_BUILD = builtin_builder("cnn", "digits", max_epochs=EPOCHS, seed=0)
CNN_CONFIGS: list[dict[str, Any]] = [  # one architecture, different training hyperparameters
    {"n_blocks": 2, "filters": 8, "kernel_size": 3, "pooling": "max", "activation": "relu", "batch_size": 64, **t}
    for t in (
        {"lr": 0.01, "optimizer": "adam"},
        {"lr": 0.05, "optimizer": "momentum", "momentum": 0.9, "weight_decay": 1e-3},
        {"lr": 0.003, "optimizer": "adamw", "weight_decay": 0.01, "l1": 1e-5, "lr_schedule": "cosine"},
    )
]


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch_norm"])
@pytest.mark.slow
def test_a_convnet_member_trains_the_curve_its_config_trains_alone_in_float64(batch_norm: bool) -> None:
    settings, cohorts, members = _settings(), [], []
    configs = [dict(c, batch_norm=batch_norm) for c in CNN_CONFIGS]
    for config in configs:
        _seed_before_build(settings, config)
        module, datamodule = CNN_BUILD(config)
        check_fusable(module, datamodule)
        members.append(Member(config, module, datamodule, None, EPOCHS, "val_loss", "min"))
    _place_all(members, cohorts, 8, torch.float64, FuseStats())
    assert len(cohorts) == 1  # one architecture: one vmapped cohort
    for _ in range(EPOCHS):
        cohorts[0].train_epoch()
    for config, member in zip(configs, members):
        recorder = Recorder()
        LightningObjective(CNN_BUILD, _settings(trainer_kwargs={"precision": "64-true"}))(config, recorder)
        for epoch, metrics in recorder.history.items():
            for key in metrics:  # the unfused module computes accuracy in float32 (`.float().mean()`)
                # Batch norm's per-member running statistics (stacked buffers under vmap) add a few
                # float64 roundings of their own: 1.3e-9 measured after 3 epochs.
                tolerance = 1e-6 if key == "val_acc" else (1e-8 if batch_norm else 1e-9)
                assert member.history[epoch][key] == pytest.approx(metrics[key], abs=tolerance), (epoch, key)


@pytest.mark.slow
def test_a_fused_study_records_ordinary_trials_prunes_and_keeps_the_best_model(tmp_path: Any) -> None:
    space = Space(
        n_layers=Int(1, 2),
        units=Int(16, 64, log=True, per_layer="n_layers"),
        lr=Float(1e-3, 1e-1, log=True),
        optimizer=Choice(["sgd", "adam"]),
        batch_size=Choice([64]),
    )
    result = tune(
        BUILD,
        space,
        metric="val_acc",
        mode="max",
        trials=8,
        max_epochs=4,
        search="random",
        pruner={"policy": "asha", "grace_period": 1, "reduction_factor": 2},
        early_stopping={"patience": 2},
        storage=f"sqlite:///{tmp_path}/f.db",
        study="fused",
        trainer={"accelerator": "cpu"},
        run={"fuse": 4, "progress": False},
    )
    trials = result.study.trials
    assert len(trials) == 8 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert any(t.state == TrialState.PRUNED for t in trials)
    for t in trials:  # every member is an ordinary trial: its own curve, final metrics and epochs
        assert list(t.intermediate_values) == list(range(1, t.user_attrs["epochs"] + 1))
        assert {"final_val_acc", "final_val_loss", "final_n_params"} <= set(t.user_attrs)
        assert bookkeeping(t, "fused") is True
    assert 0 < result.record["fused_efficiency"] <= 1
    assert result.record["fused_capacity"] >= 1
    model = result.load_best()  # a normal checkpoint of its built-in class
    cls = type(model)
    assert cls.__name__.startswith("MLPClassifier")
    loaded = cls.load_from_checkpoint(result.best_checkpoint)
    _, datamodule = BUILD(result.best_config)
    import lightning.pytorch as pl

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    [metrics] = trainer.validate(loaded, datamodule=datamodule, verbose=False)
    assert metrics["val_acc"] == pytest.approx(result.best_value, abs=1e-6)


@pytest.mark.parametrize(
    "option",
    [
        {"trainer": {"gradient_clip_val": 1.0}},
        {"trainer": {"logger": "csv"}},
        {"run": {"workers": {"trial_timeout": 5.0}}},
    ],
)
def test_options_only_a_trainer_honours_are_refused_with_fuse(option: dict[str, Any]) -> None:
    space = Space(lr=Float(1e-3, 1e-1, log=True), batch_size=Choice([64]))
    with pytest.raises(Exception, match=r"fuse: fused cohorts do not run a Lightning Trainer"):
        tune(
            BUILD,
            space,
            metric="val_acc",
            mode="max",
            trials=1,
            max_epochs=1,
            trainer=option.get("trainer"),
            run={"fuse": 2, "progress": False, **option.get("run", {})},
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_fuse_on_a_gpu_without_cuda_is_refused_before_any_trial() -> None:
    space = Space(lr=Float(1e-3, 1e-1, log=True), batch_size=Choice([64]))
    with pytest.raises(Exception, match=r"fused cohorts on a GPU need a CUDA device"):
        tune(
            BUILD,
            space,
            metric="val_acc",
            mode="max",
            trials=1,
            max_epochs=1,
            trainer={"accelerator": "gpu"},
            run={"fuse": 2, "progress": False},
        )


@pytest.mark.slow
def test_a_fused_run_killed_and_rerun_loses_no_finished_member(tmp_path: Any) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna

    from tunebridge.backends.optuna import make_storage

    spec = tmp_path / "fused.yaml"
    spec.write_text(
        # enough work that the run is still going when 3 trials have finished (fused runs are quick)
        "study: fused-kill\nmodel: mlp\ndata: digits\nmetric: val_acc\nmode: max\nsearch: random\ntrials: 24\n"
        "max_epochs: 8\nseed: 0\nfuse: 3\nthreads: 1\n"
        "space:\n  n_layers: {type: int, low: 1, high: 2}\n  units: {type: choice, values: [32]}\n"
        "  lr: {type: float, low: 0.001, high: 0.1, log: true}\n  batch_size: {type: choice, values: [64]}\n"
    )
    storage = f"sqlite:///{tmp_path}/k.db"
    command = [sys.executable, "-m", "tunebridge", "run", str(spec), "--storage", storage, "--no-progress"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished_before: dict[int, Any] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="fused-kill", storage=make_storage(storage))
        except Exception:  # not created yet
            continue
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        if len(finished) >= 3 and running:
            finished_before = {t.number: (t.state, t.value) for t in finished}
            os.kill(proc.pid, signal.SIGKILL)  # mid-run: members of a cohort are running
            break
    proc.wait(timeout=30)
    assert finished_before, "the run ended before it could be killed mid-run"
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    study = optuna.load_study(study_name="fused-kill", storage=make_storage(storage))
    by_number = {t.number: t for t in study.trials}
    for number, (state, value) in finished_before.items():  # nothing finished is lost or changed
        assert (by_number[number].state, by_number[number].value) == (state, value)
    budgeted = [
        t
        for t in study.trials
        if t.state.is_finished() and not (bookkeeping(t, "requeued") or bookkeeping(t, "cancelled"))
    ]
    assert len(budgeted) == 24  # the budget, exactly
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_convnet_members_with_different_dropout_train_in_cohorts_of_their_own() -> None:
    """vmap runs every member through one module: a Dropout's p (not a parameter) must be shared."""
    settings, cohorts, members = _settings(), [], []
    for p in (0.0, 0.5, 0.5):
        config = {"lr": 0.01, "optimizer": "adam", "dropout": p}
        _seed_before_build(settings, config)
        module, datamodule = CNN_BUILD(config)
        members.append(Member(config, module, datamodule, None, EPOCHS, "val_loss", "min"))
    _place_all(members, cohorts, 8, torch.float64, FuseStats())
    assert sorted(len(c.members) for c in cohorts) == [1, 2]
    for cohort in cohorts:
        rates = {m.config["dropout"] for m in cohort.members}
        assert len(rates) == 1
