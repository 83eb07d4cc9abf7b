"""A user's own Lightning project, as a user writes it: layers made in ``__init__``, own data, own callback.

Nothing here knows tunebridge. ``TB_LIGHTNING`` picks the Lightning package (``lightning.pytorch`` or
``pytorch_lightning``) so that the same project runs under both.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl: Any = importlib.import_module(os.environ.get("TB_LIGHTNING", "lightning.pytorch"))


class Classifier(pl.LightningModule):  # type: ignore[misc,name-defined]
    """A small MLP whose layers are created (and initialised) in ``__init__``, with dropout."""

    def __init__(self, hidden: int = 16, lr: float = 0.01, dropout: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class Data(pl.LightningDataModule):  # type: ignore[misc,name-defined]
    """Breast cancer data, standardised, a fixed split; the train loader shuffles (seeded by the trial)."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size
        x, y = load_breast_cancer(return_X_y=True)
        x = (x - x.mean(0)) / x.std(0)
        xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
        self.train = TensorDataset(xt[:400], yt[:400])
        self.val = TensorDataset(xt[400:], yt[400:])

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.val, batch_size=256)


class CountEpochs(pl.Callback):  # type: ignore[misc,name-defined]
    """A user's callback: appends one line per finished training epoch to a file."""

    def __init__(self, path: str = "epochs.txt") -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        with Path(self.path).open("a") as f:
            f.write(f"{trainer.current_epoch}\n")


def build(config: dict[str, Any]) -> tuple[Any, Any]:
    """``config -> (module, datamodule)``: what tunebridge calls once per trial."""
    module = Classifier(hidden=int(config.get("hidden", 16)), lr=float(config["lr"]), dropout=0.1)
    return module, Data(batch_size=int(config.get("batch_size", 64)))
