"""The model and data of the hydra recipe, laid out as lightning-hydra-template's are: a network given to a
LightningModule with a ``_partial_`` optimizer, and a LightningDataModule; scikit-learn's bundled digits, offline.

An ordinary Hydra project: nothing here knows about tunebridge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class SimpleDenseNet(nn.Module):
    """Three linear layers with batch norm (lightning-hydra-template's ``SimpleDenseNet``, for 8x8 digits)."""

    def __init__(self, input_size: int = 64, lin1_size: int = 64, lin2_size: int = 64, output_size: int = 10) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_size, lin1_size),
            nn.BatchNorm1d(lin1_size),
            nn.ReLU(),
            nn.Linear(lin1_size, lin2_size),
            nn.BatchNorm1d(lin2_size),
            nn.ReLU(),
            nn.Linear(lin2_size, output_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out


class DigitsLitModule(pl.LightningModule):
    """Classifies digits with ``net``; ``optimizer`` is a partial (``_partial_: true``) given the parameters.

    Logs ``val/loss``, ``val/acc`` and ``val/acc_best`` (the best ``val/acc`` so far), as the template's
    MNISTLitModule does.
    """

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer]) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net
        self.optimizer = optimizer
        self.best = 0.0
        self._correct = self._seen = 0
        self._loss = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def on_train_start(self) -> None:
        self.best = 0.0  # the sanity check's batches are not an epoch

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self._loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        self._correct += int((logits.argmax(dim=1) == y).sum())
        self._seen += len(y)

    def on_validation_epoch_end(self) -> None:
        acc = self._correct / max(self._seen, 1)
        self.best = max(self.best, acc)
        self.log("val/loss", self._loss / max(self._seen, 1))
        self.log("val/acc", acc)
        self.log("val/acc_best", self.best)
        self._correct = self._seen = 0
        self._loss = 0.0

    def configure_optimizers(self) -> Any:
        return self.optimizer(params=self.parameters())


class DigitsDataModule(pl.LightningDataModule):
    """scikit-learn's digits (bundled, no download), scaled to [0, 1], a fixed 75/25 split.

    ``data_dir`` is where a dataset that downloads would go (``${paths.data_dir}``): digits needs none.
    """

    def __init__(self, data_dir: str = "data/", batch_size: int = 64, val_fraction: float = 0.25) -> None:
        super().__init__()
        self.data_dir = data_dir
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
        # drop_last: a last batch of one sample would break BatchNorm1d
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val, batch_size=256)
