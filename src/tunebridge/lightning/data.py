"""Offline LightningDataModules over the datasets bundled with scikit-learn (no download, ever).

Trials are tiny, so per-sample ``DataLoader`` overhead would dominate: each split is held as two tensors
and the loaders draw whole batches of indices (:class:`BatchIndexDataset`). The train/validation split
is stratified and seeded, and the train shuffling is seeded too, so a seed fixes what a trial sees.

As for the models, classes are built per Lightning package: the module-level classes and
:data:`DATASETS` use the default one, :func:`datamodule_classes` builds them for either. Both are built
on first use, so importing this module does not import Lightning.

Example:
    >>> dm = make_datamodule("wine", batch_size=32, seed=0)
    >>> dm.n_features, dm.n_classes
    (13, 3)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from operator import attrgetter
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from tunebridge._rules import is_int_at_least
from tunebridge._vocab import BUILTIN_MODELS
from tunebridge.errors import SchemaError
from tunebridge.lightning._arrays import BatchIndexDataset, _cached_arrays, _check_dataset, load_arrays, split_indices
from tunebridge.lightning._packages import NAMESPACES, PackageClasses, lazy_attribute

__all__ = [
    "DATASETS",
    "BatchIndexDataset",
    "BreastCancerDataModule",
    "DigitsDataModule",
    "NAMESPACES",
    "WineDataModule",
    "datamodule_classes",
    "load_arrays",
    "make_datamodule",
    "split_indices",
]

if TYPE_CHECKING:  # built on first use by the module __getattr__ (end of file); declared for the checkers
    DATASETS: dict[str, type[Any]]
    DigitsDataModule: type[Any]
    BreastCancerDataModule: type[Any]
    WineDataModule: type[Any]

#: The built-in models a datamodule can be shaped for (``for_model``); re-exported by ``builtin``.
MODEL_KINDS = BUILTIN_MODELS


def _check_int(owner: str, name: str, value: Any, low: int) -> int:
    if not is_int_at_least(value, low, kind=numbers.Integral):
        raise SchemaError(
            f"must be an integer >= {low}",
            path=f"{owner}.{name}",
            value=repr(value),
            fix=f"Pass an int {name} >= {low}.",
        )
    return int(value)


def datamodule_classes(namespace: str | None = None) -> SimpleNamespace:
    """The three datamodule classes built on one Lightning package (cached per package).

    Args:
        namespace: ``"lightning.pytorch"`` or ``"pytorch_lightning"``; None for the default package.

    Returns:
        A namespace with ``DigitsDataModule``, ``BreastCancerDataModule``, ``WineDataModule``,
        ``datasets`` (name -> class) and ``namespace``.

    Raises:
        SchemaError: ``namespace`` names neither package.
    """
    return _CLASSES(namespace)


def _build(pl: ModuleType) -> dict[str, Any]:
    """The public datamodule classes on the Lightning package ``pl``, and ``datasets`` (name -> class)."""

    class _ArrayDataModule(pl.LightningDataModule):  # type: ignore[misc, name-defined]
        """A seeded, stratified split of one bundled dataset, served from memory."""

        dataset: str
        n_features: int
        n_classes: int
        input_shape: tuple[int, ...] | None = None
        batch_size: int
        val_batch_size: int
        val_fraction: float
        seed: int

        def __init__(
            self,
            *,
            batch_size: int = 64,
            val_fraction: float = 0.2,
            seed: int = 0,
            val_batch_size: int = 512,
            **kw: Any,
        ) -> None:
            super().__init__()
            owner = type(self).__name__
            if kw:
                raise TypeError(
                    f"{owner} got unexpected keyword argument(s) {', '.join(map(repr, kw))}; it "
                    f"accepts batch_size, val_fraction, seed, val_batch_size{self._extra_args()}."
                )
            self.batch_size = _check_int(owner, "batch_size", batch_size, 1)
            self.val_batch_size = _check_int(owner, "val_batch_size", val_batch_size, 1)
            self.seed = _check_int(owner, "seed", seed, 0)
            if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0 < val_fraction < 1:
                raise SchemaError(
                    "must be a number in (0, 1)",
                    path=f"{owner}.val_fraction",
                    value=repr(val_fraction),
                    fix="Use e.g. val_fraction=0.2.",
                )
            self.val_fraction = float(val_fraction)
            self.train_set: BatchIndexDataset | None = None
            self.val_set: BatchIndexDataset | None = None
            self._shuffle: torch.Generator | None = None  # the training order's generator, once made
            self._restored: Tensor | None = None  # its state from a checkpoint, until the loader is made

        @staticmethod
        def _extra_args() -> str:
            return ""

        def _transform(self, x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return x_train, x_val

        def setup(self, stage: str | None = None) -> None:
            """Split and prepare the arrays (once; later calls keep the same split)."""
            if self.train_set is not None:
                return
            x, y = _cached_arrays(self.dataset)
            train, val = split_indices(y, val_fraction=self.val_fraction, seed=self.seed)
            x_train, x_val = self._transform(x[train], x[val])  # fancy indexing copies: writable arrays
            self.train_set = BatchIndexDataset(torch.from_numpy(x_train), torch.from_numpy(y[train].copy()))
            self.val_set = BatchIndexDataset(torch.from_numpy(x_val), torch.from_numpy(y[val].copy()))

        def _splits(self) -> tuple[BatchIndexDataset, BatchIndexDataset]:
            self.setup()
            assert self.train_set is not None and self.val_set is not None  # set by setup()
            return self.train_set, self.val_set

        def train_dataloader(self) -> DataLoader[tuple[Tensor, Tensor]]:
            """Shuffled batches; the order is fixed by ``seed`` (and advances from one epoch to the next)."""
            train = self._splits()[0]
            generator = torch.Generator().manual_seed(self.seed)
            if self._restored is not None:  # a resumed trial goes on with the order it had reached
                generator.set_state(self._restored)
                self._restored = None
            self._shuffle = generator
            sampler = BatchSampler(RandomSampler(train, generator=generator), self.batch_size, drop_last=False)
            return DataLoader(train, batch_size=None, sampler=sampler, num_workers=0)

        def state_dict(self) -> dict[str, Any]:
            """The training order's generator state: it travels in checkpoints (resume points, Ray's)."""
            return {} if self._shuffle is None else {"shuffle": self._shuffle.get_state()}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self._restored = state_dict.get("shuffle")

        def val_dataloader(self) -> DataLoader[tuple[Tensor, Tensor]]:
            """Batches of ``val_batch_size`` in a fixed order."""
            val = self._splits()[1]
            sampler = BatchSampler(SequentialSampler(val), self.val_batch_size, drop_last=False)
            return DataLoader(val, batch_size=None, sampler=sampler, num_workers=0)

    class DigitsDataModule(_ArrayDataModule):
        """sklearn's 8x8 handwritten digits (1797 images, 10 classes), pixels scaled to [0, 1].

        Args:
            batch_size: Training batch size.
            val_fraction: Share of the samples held out for validation (stratified).
            seed: Fixes the split and the training shuffle.
            val_batch_size: Validation batch size.
            flatten: True gives (N, 64) rows for an MLP, False gives (N, 1, 8, 8) images for a ConvNet.
        """

        dataset = "digits"
        n_features = 64
        n_classes = 10
        input_shape = (1, 8, 8)

        def __init__(
            self,
            *,
            batch_size: int = 64,
            val_fraction: float = 0.2,
            seed: int = 0,
            val_batch_size: int = 512,
            flatten: bool = True,
            **kw: Any,
        ) -> None:
            super().__init__(
                batch_size=batch_size, val_fraction=val_fraction, seed=seed, val_batch_size=val_batch_size, **kw
            )
            self.flatten = bool(flatten)
            self.save_hyperparameters()

        @staticmethod
        def _extra_args() -> str:
            return ", flatten"

        def _transform(self, x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            shape = (-1, self.n_features) if self.flatten else (-1, *self.input_shape)
            return x_train.reshape(shape), x_val.reshape(shape)

    class _TabularDataModule(_ArrayDataModule):
        """A tabular dataset, standardized with the mean and std of the training split only."""

        mean: np.ndarray | None = None
        std: np.ndarray | None = None

        def __init__(
            self,
            *,
            batch_size: int = 64,
            val_fraction: float = 0.2,
            seed: int = 0,
            val_batch_size: int = 512,
            **kw: Any,
        ) -> None:
            super().__init__(
                batch_size=batch_size, val_fraction=val_fraction, seed=seed, val_batch_size=val_batch_size, **kw
            )
            self.save_hyperparameters()

        def _transform(self, x_train: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Statistics from the training rows only: validation must not leak into preprocessing.
            mean = x_train.mean(axis=0)
            std = x_train.std(axis=0)
            std[std == 0] = 1.0  # a constant column stays constant instead of dividing by zero
            self.mean, self.std = mean, std
            return (x_train - mean) / std, (x_val - mean) / std

    class BreastCancerDataModule(_TabularDataModule):
        """sklearn's Wisconsin breast cancer table (569 rows, 30 features, 2 classes), standardized.

        Args:
            batch_size: Training batch size.
            val_fraction: Share of the samples held out for validation (stratified).
            seed: Fixes the split and the training shuffle.
            val_batch_size: Validation batch size.
        """

        dataset = "breast_cancer"
        n_features = 30
        n_classes = 2

    class WineDataModule(_TabularDataModule):
        """sklearn's wine table (178 rows, 13 features, 3 classes), standardized.

        Args:
            batch_size: Training batch size.
            val_fraction: Share of the samples held out for validation (stratified).
            seed: Fixes the split and the training shuffle.
            val_batch_size: Validation batch size.
        """

        dataset = "wine"
        n_features = 13
        n_classes = 3

    classes = {"digits": DigitsDataModule, "breast_cancer": BreastCancerDataModule, "wine": WineDataModule}
    return {"datasets": classes, **{c.__name__: c for c in classes.values()}}


_CLASSES = PackageClasses(__name__, _build, runs="data")


def make_datamodule(
    name: str, *, batch_size: int, seed: int, for_model: str = "mlp", namespace: str | None = None, **kw: Any
) -> Any:
    """A datamodule of a bundled dataset, shaped for the model that will read it.

    Args:
        name: ``"digits"``, ``"breast_cancer"`` or ``"wine"``.
        batch_size: Training batch size.
        seed: Fixes the split and the training shuffle.
        for_model: ``"mlp"`` (flat rows) or ``"cnn"`` (images; digits only).
        namespace: Lightning package to build on; None for the default.
        **kw: Passed to the datamodule (``val_fraction``, ``val_batch_size``).

    Raises:
        SchemaError: Unknown dataset or model kind, or a CNN asked for a tabular dataset.
        TypeError: ``flatten`` was passed (``for_model`` decides it) or an unknown keyword.
    """
    _check_dataset(name)
    if for_model not in MODEL_KINDS:
        raise SchemaError(
            f"must be one of {', '.join(map(repr, MODEL_KINDS))}",
            path="for_model",
            value=repr(for_model),
            fix="Name the built-in model that reads the data.",
        )
    if "flatten" in kw:
        raise TypeError(
            "make_datamodule chooses `flatten` from `for_model`: pass for_model='mlp' for flat rows "
            "or for_model='cnn' for images instead."
        )
    cls = datamodule_classes(namespace).datasets[name]
    if name == "digits":
        kw["flatten"] = for_model == "mlp"
    elif for_model == "cnn":
        raise SchemaError(
            "the 'cnn' model needs image data",
            path="data",
            value=f"{name!r} (tabular)",
            fix="Use data 'digits' with the CNN, or the 'mlp' model for tabular data.",
        )
    return cls(batch_size=batch_size, seed=seed, **kw)


_DEFAULTS: dict[str, Callable[[SimpleNamespace], Any]] = {
    "DATASETS": lambda classes: dict(classes.datasets),
    **{name: attrgetter(name) for name in ("DigitsDataModule", "BreastCancerDataModule", "WineDataModule")},
}


def __getattr__(name: str) -> Any:
    # The default-package classes and DATASETS, and the pickled classes (`WineDataModule__pytorch_lightning`,
    # ...), built here on first use rather than at import, so that importing this module leaves Lightning unloaded.
    return lazy_attribute(_CLASSES, name, _DEFAULTS)
