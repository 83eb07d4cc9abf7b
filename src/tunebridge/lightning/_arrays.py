"""The bundled datasets as arrays, split and batched: what the built-in datamodules hold (no Lightning here).

Each split is held as two tensors and the loaders draw whole batches of indices
(:class:`BatchIndexDataset`); the train/validation split is stratified and seeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import Dataset

from tunebridge._hints import did_you_mean
from tunebridge._vocab import BUILTIN_DATA
from tunebridge.errors import SchemaError

__all__ = ["BatchIndexDataset", "load_arrays", "split_indices"]

# Names are checked against the shared vocabulary; this maps each of them to its loader (a test holds
# the keys equal to BUILTIN_DATA).
_LOADERS = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}


@cache
def _cached_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    bunch = _LOADERS[name]()
    # Digits pixels are integers 0..16; the images keep their 8x8 layout until a datamodule flattens them.
    x = bunch.images / 16.0 if name == "digits" else bunch.data
    x, y = np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(bunch.target, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw features and labels of a bundled dataset (digits scaled to [0, 1], shape (N, 8, 8)).

    The arrays are loaded once per process and shared, so they are read-only.

    Raises:
        SchemaError: ``name`` is not a known dataset.
    """
    return _cached_arrays(_check_dataset(name))


def split_indices(y: np.ndarray, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train and validation row indices (sorted) for labels ``y``."""
    train, val = train_test_split(np.arange(len(y)), test_size=val_fraction, random_state=seed, stratify=y)
    return np.sort(train), np.sort(val)


class BatchIndexDataset(Dataset[tuple[Tensor, Tensor]]):
    """Features and labels held as tensors, indexed by a whole batch of indices at once.

    Use it with ``DataLoader(ds, batch_size=None, sampler=BatchSampler(...))``: one index tensor per batch
    replaces ``batch_size`` calls to ``__getitem__`` and a collate.

    Args:
        x: Features, first dimension the samples.
        y: Labels, one per sample.
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise SchemaError(
                "x and y must have the same number of rows",
                path="BatchIndexDataset",
                value=f"{len(x)} and {len(y)}",
                fix="Pass features and labels of one split.",
            )
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: Sequence[int] | int) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.x[idx], self.y[idx]


def _check_dataset(name: str) -> str:
    if name not in BUILTIN_DATA:
        hint, known = did_you_mean(name, BUILTIN_DATA), f"Known datasets: {', '.join(sorted(BUILTIN_DATA))}."
        raise SchemaError(
            "unknown built-in dataset", path="data", value=repr(name), fix=f"{hint} {known}" if hint else known
        )
    return name
