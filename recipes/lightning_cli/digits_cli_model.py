"""The model and data of the lightning_cli recipe: a small MLP on scikit-learn's bundled digits.

An ordinary LightningCLI project: nothing here knows about tunebridge.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class DigitsClassifier(pl.LightningModule):
    """An MLP over the 8x8 digits: ``hidden`` units, ``dropout``, Adam at ``lr``."""

    def __init__(self, hidden: int = 32, dropout: float = 0.0, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class DigitsData(pl.LightningDataModule):
    """scikit-learn's digits (bundled, no download), scaled to [0, 1], a fixed 75/25 split."""

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.25) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.val_fraction = val_fraction

    def setup(self, stage: str | None = None) -> None:
        x, y = load_digits(return_X_y=True)
        features = torch.tensor(x / 16.0, dtype=torch.float32)
        labels = torch.tensor(y, dtype=torch.long)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
        n_val = int(len(labels) * self.val_fraction)
        self.val = TensorDataset(features[order[:n_val]], labels[order[:n_val]])
        self.train = TensorDataset(features[order[n_val:]], labels[order[n_val:]])

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val, batch_size=256)
