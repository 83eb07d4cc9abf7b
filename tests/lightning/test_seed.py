"""One home for seeding a trial before its build: the runner's seeding is :func:`seed_trial`'s."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tunebridge.lightning import LightningObjective, TrialSettings
from tunebridge.lightning._runner import trial_seed as runner_trial_seed
from tunebridge.lightning._seed import seed_process, seed_trial, trial_seed
from tunebridge.lightning.builtin import make_classes

CONFIG: dict[str, Any] = {"lr": 0.05, "hidden": 4}


class NumpyInit(pl.LightningModule):
    """A user's module whose ``__init__`` draws its first layer's weights from numpy (and python's random)."""

    def __init__(self, lr: float = 0.05, hidden: int = 4) -> None:
        super().__init__()
        self.lr = lr
        first = nn.Linear(30, hidden)
        with torch.no_grad():
            first.weight.copy_(torch.from_numpy(np.random.rand(hidden, 30) - 0.5))
            first.bias.fill_(random.random())
        self.net = nn.Sequential(first, nn.ReLU(), nn.Linear(hidden, 2))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def _initial(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _scramble() -> None:
    """Move every global generator on, so that equal weights can only come from seeding."""
    random.random()
    np.random.rand(7)
    torch.rand(7)


def test_the_runner_and_seed_trial_give_a_numpy_initialised_module_the_same_weights() -> None:
    built: list[dict[str, torch.Tensor]] = []

    def build(config: Mapping[str, Any]) -> tuple[Any, Any]:
        module = NumpyInit(**config)
        built.append(_initial(module))
        return module, make_classes("lightning.pytorch").BreastCancerDataModule(batch_size=128, seed=0)

    settings = TrialSettings(metric="val_loss", mode="min", max_epochs=1, seed=3, accelerator="cpu")
    _scramble()
    LightningObjective(build, settings)(dict(CONFIG), None)
    _scramble()
    assert seed_trial(3, CONFIG) == trial_seed(3, CONFIG)
    fused = _initial(NumpyInit(**CONFIG))
    assert sorted(fused) == sorted(built[0])
    for name, tensor in fused.items():
        assert torch.equal(tensor, built[0][name]), name
    _scramble()
    torch.manual_seed(trial_seed(3, CONFIG))  # torch alone (what the fused loop seeded): numpy's weights differ
    assert not torch.equal(_initial(NumpyInit(**CONFIG))["net.0.weight"], built[0]["net.0.weight"])


DRAWS: list[tuple[str, Callable[[], object]]] = [
    ("python", lambda: random.random()),
    ("numpy", lambda: float(np.random.rand())),
    ("torch", lambda: float(torch.rand(1))),
]


@pytest.mark.parametrize(("source", "draw"), DRAWS, ids=[s for s, _ in DRAWS])
def test_seed_trial_seeds_every_source_with_the_trials_own_seed(source: str, draw: Callable[[], object]) -> None:
    seed_process(trial_seed(0, CONFIG))
    expected = draw()
    _scramble()
    seed_trial(0, CONFIG)
    assert draw() == expected
    seed_trial(0, {**CONFIG, "lr": 0.1})  # another config, another seed
    assert draw() != expected


def test_seed_trial_tells_lightning_the_seed_for_dataloader_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    assert seed_trial(None, CONFIG) is None
    assert "PL_GLOBAL_SEED" not in os.environ and "PL_SEED_WORKERS" not in os.environ
    seed = seed_trial(5, CONFIG)
    assert seed == trial_seed(5, CONFIG)
    assert os.environ["PL_GLOBAL_SEED"] == str(seed) and os.environ["PL_SEED_WORKERS"] == "1"


def test_trial_seed_is_still_importable_from_the_runner() -> None:
    assert runner_trial_seed is trial_seed
