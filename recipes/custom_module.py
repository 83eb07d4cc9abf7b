"""Tune your own LightningModule with the Python API (no spec file needed).

Run:  python custom_module.py [--trials N] [--epochs E]   (after `tunebridge recipes --copy .`)
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

import tunebridge
from tunebridge import Choice, Float, Int, Space
from tunebridge.lightning.data import BreastCancerDataModule


class TinyNet(pl.LightningModule):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.lr = config["lr"]
        layers: list[nn.Module] = []
        width = 30
        for i in range(config["n_layers"]):
            layers += [nn.Linear(width, config[f"units/{i}"]), getattr(nn, config["activation"])()]
            width = config[f"units/{i}"]
        self.net = nn.Sequential(*layers, nn.Linear(width, 2))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def build(config: dict[str, Any]) -> tuple[TinyNet, Any]:
    return TinyNet(config), BreastCancerDataModule(batch_size=config["batch_size"], seed=0)


space = Space(
    n_layers=Int(1, 3),
    units=Int(8, 64, log=True, per_layer="n_layers"),  # units/0 .. units/{n_layers-1}
    activation=Choice(["ReLU", "Tanh", "GELU"]),
    lr=Float(1e-4, 1e-1, log=True),
    batch_size=Choice([16, 32, 64], ordered=True),
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = tunebridge.tune(
        build,
        space,
        metric="val_loss",
        mode="min",
        trials=args.trials,
        max_epochs=args.epochs,
        search="tpe",
        pruner={"policy": "median", "grace_period": 3},
        early_stopping={"patience": 3},
    )
    print("best val_loss:", result.best_value)
    print("best config:", result.best_config)
    print(result.trials[["number", "state", "value", "epochs"]].to_string(index=False))
