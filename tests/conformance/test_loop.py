"""The one trial loop's contract, proved on every executor: one Lightning trial at a time, and fused cohorts.

Each test runs ``tune()`` on a user's own LightningModule twice, unfused (``fuse=None``: one Trainer per
trial) and fused (``fuse=2``: cohorts of two): a trial that raises fails alone with its reason and
traceback while the others finish and none stays open; Ctrl-C re-queues every claimed trial's config;
``timeout:``/``stop:`` stop both before the budget; an interrupted trial goes on from its last epoch's
resume point with the curve it would have had (DDP: ``tests/lightning/test_ddp_resume.py``; Ray:
``tests/backends/test_ray_run.py``).
"""

from __future__ import annotations

import threading
from typing import Any

import lightning.pytorch as pl
import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import Tensor, nn
from torch.nn import functional as F

import tunebridge
from tunebridge import _record
from tunebridge.lightning.data import DigitsDataModule

EXECUTORS = [pytest.param(None, id="trial"), pytest.param(2, id="fused")]
BAD_LR = 0.0123
CONFIGS = [
    {"lr": BAD_LR},  # enqueued first: in a fused cohort it is the module the vmapped hooks run on
    {"lr": 0.05},
    {"lr": 0.02},
    {"lr": 0.01},
]


class Flaky(pl.LightningModule):
    """A user's module whose training step raises from its third call on when its lr is ``BAD_LR``."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def fused_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        self.calls += 1
        if self.hparams["lr"] == BAD_LR and self.calls >= 3:
            raise RuntimeError("a member raised in its training step")
        x, y = batch
        return F.cross_entropy(self(x), y)

    def fused_metrics(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        logits = self(x)
        return {"val_loss": F.cross_entropy(logits, y), "val_acc": (logits.argmax(1) == y).to(logits.dtype).mean()}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.fused_loss(batch)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        for name, value in self.fused_metrics(batch).items():
            self.log(name, value)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def build(config: dict[str, Any]) -> tuple[Flaky, DigitsDataModule]:
    return Flaky(**config), DigitsDataModule(batch_size=128, seed=0)


SPACE = tunebridge.Space(lr=tunebridge.Float(1e-3, 1e-1, log=True))


def _tune(fuse: int | None, tmp_path: Any, **kw: Any) -> optuna.Study:
    options: dict[str, Any] = {
        "metric": "val_loss",
        "mode": "min",
        "trials": len(CONFIGS),
        "max_epochs": 2,
        "search": "random",
        "storage": f"sqlite:///{tmp_path}/loop.db",
        "study": "loop",
        "trainer": {"accelerator": "cpu"},
        **kw,
    }
    options["run"] = {
        "progress": False,
        "checkpoints": {"dir": str(tmp_path / "ckpt")},
        "enqueue": CONFIGS,
        "fuse": fuse,
        **kw.get("run", {}),
    }
    tunebridge.tune(build, SPACE, **options)
    return optuna.load_study(study_name="loop", storage=options["storage"])


def _in_budget(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if not _record.outside_budget(t)]


@pytest.mark.parametrize("fuse", EXECUTORS)
def test_a_raising_trial_fails_alone_with_its_reason_and_the_others_finish(fuse: int | None, tmp_path: Any) -> None:
    study = _tune(fuse, tmp_path)
    trials = _in_budget(study)
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"], states
    assert not [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    (failed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.params["lr"] == pytest.approx(BAD_LR)
    assert failed.user_attrs[_record.FAIL_REASON] == "RuntimeError: a member raised in its training step"
    assert "in fused_loss" in failed.user_attrs[_record.TRACEBACK]
    assert sorted(t.params["lr"] for t in trials if t.state == TrialState.COMPLETE) == pytest.approx(
        sorted(c["lr"] for c in CONFIGS[1:])
    )


@pytest.mark.parametrize("fuse", EXECUTORS)
def test_ctrl_c_re_queues_every_claimed_trial(fuse: int | None, tmp_path: Any) -> None:
    interrupted = {"done": False}
    real = DigitsDataModule.setup

    def setup(self: DigitsDataModule, stage: str | None = None) -> None:
        # Both executors set the data up before training: the first trial's set-up is the interrupt.
        if not interrupted["done"]:
            interrupted["done"] = True
            raise KeyboardInterrupt
        real(self, stage)

    DigitsDataModule.setup = setup  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            _tune(fuse, tmp_path)
    finally:
        DigitsDataModule.setup = real  # type: ignore[method-assign]
    study = optuna.load_study(study_name="loop", storage=f"sqlite:///{tmp_path}/loop.db")
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    requeued = [t for t in study.get_trials(deepcopy=False) if _record.bookkeeping(t, _record.REQUEUED)]
    assert requeued, "the interrupted trial's config went back in the queue"
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert len(waiting) == len(CONFIGS)  # the budget is whole again: nothing was lost


@pytest.mark.parametrize("fuse", EXECUTORS)
def test_limits_and_drain_stop_before_the_budget(fuse: int | None, tmp_path: Any) -> None:
    # Any val_loss reaches the target: stop after the first complete trial.
    study = _tune(fuse, tmp_path, run={"stop": {"target": 10.0}})
    assert "stop.target" in str(study.user_attrs.get("stopped_by"))
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) >= 1

    drained = threading.Event()
    drained.set()
    again = _tune(fuse, tmp_path, run={"workers": {"stop": drained}}, study="loop")  # --drain: nothing more is claimed
    assert len(again.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) == len(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )


def test_both_executors_seed_everything_before_build(tmp_path: Any) -> None:
    """numpy and python randomness drawn while a module is built is the same fused and unfused."""
    import random

    import numpy as np

    drawn: dict[str | None, dict[float, tuple[float, float]]] = {}

    for fuse in (None, 2):
        seen = drawn.setdefault(str(fuse), {})

        def build_recording(config: dict[str, Any], seen: dict[float, tuple[float, float]] = seen) -> Any:
            seen[float(config["lr"])] = (float(np.random.rand()), random.random())
            return build(config)

        tunebridge.tune(
            build_recording,
            SPACE,
            metric="val_loss",
            trials=3,
            max_epochs=1,
            search="random",
            storage=None,
            trainer={"accelerator": "cpu"},
            run={
                "progress": False,
                "enqueue": CONFIGS[1:],
                "fuse": fuse,
                "checkpoints": {"dir": str(tmp_path / f"ckpt{fuse}")},
            },
        )
    assert drawn["None"] == drawn["2"]
    assert len(set(drawn["None"].values())) == 3  # each config its own seed


class Preempted(Flaky):
    """A user's module whose first instance with ``lr`` == ``STOP_LR`` is interrupted (Ctrl-C) in the first
    training step of its second epoch, after its first epoch's resume point."""

    armed = True

    def fused_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        self.calls += 1
        # In epoch 2 on both executors (a fused cohort first runs the hook once, to check that vmap takes it).
        if Preempted.armed and self.hparams["lr"] == STOP_LR and self.calls > STEPS_PER_EPOCH + 1:
            Preempted.armed = False
            raise KeyboardInterrupt
        x, y = batch
        return F.cross_entropy(self(x), y)


STOP_LR = 0.05
STEPS_PER_EPOCH = 12  # digits' 1437 training images in batches of 128


def build_preempted(config: dict[str, Any]) -> tuple[Preempted, DigitsDataModule]:
    return Preempted(**config), DigitsDataModule(batch_size=128, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("fuse", EXECUTORS)
def test_an_interrupted_trial_resumes_from_its_last_epoch_with_the_curve_of_an_uninterrupted_one(
    fuse: int | None, tmp_path: Any
) -> None:
    configs = [{"lr": STOP_LR}, {"lr": 0.02}]

    def tune(folder: Any) -> optuna.Study:
        folder.mkdir(exist_ok=True)
        storage = f"sqlite:///{folder}/loop.db"
        tunebridge.tune(
            # val_acc rises epoch by epoch here: with mode "min" the kept epoch is the first, before the
            # interruption, so the kept weights must cross it (carried by the resume point).
            build_preempted, SPACE, metric="val_acc", mode="min", trials=len(configs), max_epochs=3,
            search="random", seed=0, storage=storage, study="loop", trainer={"accelerator": "cpu"},
            run={"progress": False, "checkpoints": {"dir": str(folder / "ckpt"), "keep": 2}, "enqueue": configs,
                 "fuse": fuse},
        )  # fmt: skip
        return optuna.load_study(study_name="loop", storage=storage)

    Preempted.armed = False
    whole_trials = tune(tmp_path / "whole").trials
    whole = {t.params["lr"]: t.intermediate_values for t in whole_trials}
    kept = {t.params["lr"]: _weights(t) for t in whole_trials}
    values = {t.params["lr"]: (t.value, t.user_attrs[_record.BEST_EPOCH]) for t in whole_trials}
    Preempted.armed = True
    with pytest.raises(KeyboardInterrupt):
        tune(tmp_path / "cut")
    assert not Preempted.armed, "the trial was interrupted where the test meant it to be"
    study = tune(tmp_path / "cut")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["lr"] for t in complete) == sorted(c["lr"] for c in configs)  # one trial per config
    (resumed,) = [t for t in complete if t.params["lr"] == STOP_LR]
    assert _record.bookkeeping(resumed, _record.RESUMED_AT) == 1  # it went on after epoch 1, not from epoch 0
    assert resumed.user_attrs[_record.BEST_EPOCH] == 1
    for t in complete:
        assert list(t.intermediate_values) == [1, 2, 3]
        assert (t.value, t.user_attrs[_record.BEST_EPOCH]) == pytest.approx(values[t.params["lr"]], abs=1e-6)
        assert [t.intermediate_values[e] for e in (1, 2, 3)] == pytest.approx(
            [whole[t.params["lr"]][e] for e in (1, 2, 3)], abs=1e-6
        )
        for name, value in _weights(t).items():  # the kept (best epoch's) weights too, across the interruption
            torch.testing.assert_close(value, kept[t.params["lr"]][name], rtol=0, atol=1e-6)
    assert not list((tmp_path / "cut").rglob("resume.json")), "resume points left behind"


def _weights(trial: optuna.trial.FrozenTrial) -> dict[str, Tensor]:
    state = torch.load(trial.user_attrs[_record.CHECKPOINT], map_location="cpu", weights_only=False)
    return {k: v for k, v in state["state_dict"].items() if isinstance(v, Tensor)}
