"""A Lightning trial stopped after epoch k and resumed from its resume point trains the same curve as one
never stopped: weights, optimizer, lr scheduler, loop, early stopping and random states all come back."""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tunebridge.backends import Resume
from tunebridge.backends._resume import ResumeOptions, ResumeWriter, discard_point, read_point
from tunebridge.lightning import LightningObjective, TrialSettings, builtin_builder
from tunebridge.schema import EarlyStoppingSpec

EPOCHS = 6


class Scheduled(pl.LightningModule):
    """A user's module: its own optimizer and lr scheduler, dropout, layers made in ``__init__``."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 2, gamma=0.5)}


class Digits(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = torch.tensor(x / 16.0, dtype=torch.float32)
        y = torch.tensor(y)
        self.train, self.val = TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train, batch_size=64, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val, batch_size=256)


def _user_build(config: dict[str, Any]) -> tuple[Any, Any]:
    return Scheduled(float(config["lr"])), Digits()


BUILDS = {
    "builtin_mlp": (
        functools.partial(builtin_builder("mlp", "digits", max_epochs=EPOCHS, seed=0)),
        {"n_layers": 1, "units/0": 32, "lr": 0.05, "optimizer": "momentum", "lr_schedule": "cosine", "dropout": 0.2},
    ),
    "user_module_with_scheduler": (_user_build, {"lr": 0.05}),
}


class Reporter:
    """A backend's reporter: records every epoch, writes resume points, stops after ``stop_after``."""

    def __init__(self, writer: ResumeWriter | None = None, stop_after: int | None = None, history: Any = None) -> None:
        self.writer, self.stop_after = writer, stop_after
        self.history: dict[int, dict[str, float]] = dict(history or {})  # epochs before a resume
        self.values: dict[int, dict[str, float]] = {}

    def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
        self.values[epoch] = dict(metrics)
        if self.writer is not None and checkpoint is not None and self.writer.due(epoch):
            self.writer.write(epoch, {**self.history, **self.values}, checkpoint)
        if epoch == self.stop_after:
            raise KeyboardInterrupt  # the worker is interrupted right after this epoch's resume point
        return False


def _objective(build: Any, early_stopping: EarlyStoppingSpec | None = None) -> LightningObjective:
    settings = TrialSettings(
        metric="val_loss",
        mode="min",
        max_epochs=EPOCHS,
        seed=0,
        accelerator="cpu",
        threads=1,
        early_stopping=early_stopping,
        trainer_kwargs={"deterministic": True},
    )
    return LightningObjective(build, settings)


def _curve(values: dict[int, dict[str, float]]) -> list[tuple[float, float]]:
    return [(values[e]["val_loss"], values[e]["val_acc"]) for e in sorted(values)]


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [1, 3])
@pytest.mark.parametrize("kind", list(BUILDS))
def test_a_resumed_trial_trains_the_curve_of_one_never_stopped(kind: str, stop_after: int, tmp_path: Path) -> None:
    build, config = BUILDS[kind]
    objective = _objective(build)
    whole = Reporter()
    objective(dict(config), whole)
    assert len(whole.values) == EPOCHS

    writer = ResumeWriter(str(tmp_path), "trial_0", ResumeOptions(), meta={"spec_hash": "h"})
    stopped = Reporter(writer, stop_after=stop_after)
    with pytest.raises(KeyboardInterrupt):
        objective(dict(config), stopped)
    point, reason = read_point(writer.folder, expect={"spec_hash": "h"})
    assert reason is None and point is not None and point.epoch == stop_after

    resumed = Reporter(history=point.history)
    resumed.last_epoch = point.epoch
    objective(dict(config), resumed, resume=Resume(point.folder))
    assert sorted(resumed.values) == list(range(stop_after + 1, EPOCHS + 1))  # epochs 1..k are not trained again
    assert _curve({**point.history, **resumed.values}) == _curve(whole.values)  # exactly, with deterministic=True


@pytest.mark.slow
def test_early_stopping_state_comes_back_with_the_resume_point(tmp_path: Path) -> None:
    build, config = BUILDS["builtin_mlp"]
    objective = _objective(build, EarlyStoppingSpec(patience=1, min_delta=0.5))  # stops before the budget
    whole = Reporter()
    objective(dict(config), whole)
    writer = ResumeWriter(str(tmp_path), "trial_0", ResumeOptions())
    with pytest.raises(KeyboardInterrupt):
        objective(dict(config), Reporter(writer, stop_after=1))
    point, _ = read_point(writer.folder, expect={})
    assert point is not None
    resumed = Reporter(history=point.history)
    outcome = objective(dict(config), resumed, resume=Resume(point.folder))
    assert len(whole.values) < EPOCHS
    assert sorted(resumed.values) == [e for e in sorted(whole.values) if e > 1]  # it stops where the whole run did
    assert outcome.early_stopped


def test_a_bad_resume_point_is_refused_with_its_reason(tmp_path: Path) -> None:
    writer = ResumeWriter(str(tmp_path), "trial_3", ResumeOptions(), meta={"spec_hash": "a", "config": {"lr": 0.1}})

    def save(folder: str) -> None:
        with zipfile.ZipFile(os.path.join(folder, "checkpoint.ckpt"), "w") as z:
            z.writestr("data.pkl", b"x" * 4096)

    writer.write(2, {1: {"val_loss": 1.0}, 2: {"val_loss": 0.5}}, save)
    point, reason = read_point(writer.folder, expect={"spec_hash": "a", "config": {"lr": 0.1}})
    assert reason is None and point is not None and point.epoch == 2

    assert "another spec_hash" in str(read_point(writer.folder, expect={"spec_hash": "b"})[1])
    assert "another config" in str(read_point(writer.folder, expect={"config": {"lr": 0.2}})[1])
    assert "not on this host" in str(read_point(str(tmp_path / "trial_9"), expect={})[1])

    checkpoint = Path(point.checkpoint)
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # killed while it was written
    assert "missing or truncated" in str(read_point(writer.folder, expect={})[1])

    discard_point(writer.folder)
    assert not Path(writer.folder).exists()


def test_a_kill_while_the_next_point_is_written_leaves_the_previous_point(tmp_path: Path) -> None:
    writer = ResumeWriter(str(tmp_path), "trial_1", ResumeOptions())

    def save(folder: str) -> None:
        Path(folder, "checkpoint.ckpt").write_bytes(b"weights")

    def killed(folder: str) -> None:
        Path(folder, "checkpoint.ckpt").write_bytes(b"wei")  # half written, then the process is gone
        raise KeyboardInterrupt

    for epoch in (1, 2):
        writer.write(epoch, {e: {"val_loss": 1.0 / e} for e in range(1, epoch + 1)}, save)
    with pytest.raises(KeyboardInterrupt):
        writer.write(3, {e: {"val_loss": 1.0 / e} for e in range(1, 4)}, killed)
    point, reason = read_point(writer.folder, expect={})
    assert reason is None and point is not None and point.epoch == 2
    assert Path(point.checkpoint).read_bytes() == b"weights"
    assert sorted(p.name for p in Path(writer.folder).iterdir()) == ["a", "b", "resume.json"]  # no folder per point


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ResumeOptions()), (True, ResumeOptions()), (False, None), ({"every_minutes": 5}, ResumeOptions(1, 5))],
)
def test_resume_options_read_like_the_spec(value: Any, expected: ResumeOptions | None) -> None:
    assert ResumeOptions.of(value) == expected
