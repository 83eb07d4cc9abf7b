"""Fuse your own LightningModule: trials that differ in optimizer settings train as one vmapped model.

Run:  python fused_custom.py [--trials N] [--epochs E] [--no-fuse]   (after `tunebridge recipes --copy .`)
Two hooks opt in: fused_loss and fused_metrics (training_step / validation_step call them too).
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import tunebridge
from tunebridge import Choice, Float, Space
from tunebridge.lightning.data import DigitsDataModule


class Net(pl.LightningModule):
    def __init__(
        self, lr: float = 1e-3, weight_decay: float = 0.0, optimizer: str = "adamw", momentum: float = 0.9
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def fused_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:  # one batch's training loss
        x, y = batch
        return F.cross_entropy(self(x), y)

    def fused_metrics(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:  # one batch's validation metrics
        x, y = batch
        logits = self(x)
        return {"val_loss": F.cross_entropy(logits, y), "val_acc": (logits.argmax(1) == y).to(logits.dtype).mean()}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self.fused_loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        for name, value in self.fused_metrics(batch).items():
            self.log(name, value)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp["optimizer"] == "sgd":
            return torch.optim.SGD(
                self.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
            )
        return torch.optim.AdamW(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])


def build(config: dict[str, Any]) -> tuple[Net, Any]:
    return Net(**config), DigitsDataModule(batch_size=64, seed=0)  # the loader's order is seeded: same in every trial


space = Space(
    lr=Float(1e-4, 3e-2, log=True),
    weight_decay=Float(1e-6, 1e-2, log=True),
    optimizer=Choice(["sgd", "adamw"]),
    momentum=Float(0.5, 0.99, when={"optimizer": ["sgd"]}),
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-fuse", action="store_true", help="one Trainer per trial, for comparison")
    args = parser.parse_args()
    result = tunebridge.tune(
        build, space, metric="val_acc", mode="max", trials=args.trials, max_epochs=args.epochs, seed=0, storage=None,
        trainer={"accelerator": "cpu"}, run={"fuse": None if args.no_fuse else "auto"},
    )  # fmt: skip
    print(f"best val_acc {result.best_value:.4f} with {result.best_config}")
