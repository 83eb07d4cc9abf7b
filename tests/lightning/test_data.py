"""Offline datamodules: seeded stratified splits, train-only standardization, fast batch-index loaders."""

from __future__ import annotations

import importlib
import pickle
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from tunebridge.errors import SchemaError
from tunebridge.lightning.data import (
    DATASETS,
    BatchIndexDataset,
    BreastCancerDataModule,
    DigitsDataModule,
    WineDataModule,
    datamodule_classes,
    load_arrays,
    make_datamodule,
    split_indices,
)
from tunebridge.lightning.models import model_classes

torch.set_num_threads(1)

NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]
SHAPES = [  # name, n_features, n_classes, n_rows
    ("digits", 64, 10, 1797),
    ("breast_cancer", 30, 2, 569),
    ("wine", 13, 3, 178),
]


def _fitted(name: str, **kw: Any) -> Any:
    dm = make_datamodule(name, batch_size=kw.pop("batch_size", 32), seed=kw.pop("seed", 0), **kw)
    dm.setup("fit")
    return dm


def _trainer(pl: ModuleType, epochs: int) -> Any:
    return pl.Trainer(
        max_epochs=epochs,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )


@pytest.mark.parametrize(("name", "n_features", "n_classes", "n_rows"), SHAPES)
def test_attributes_are_known_before_setup_and_match_the_data(
    name: str, n_features: int, n_classes: int, n_rows: int
) -> None:
    dm = DATASETS[name]()
    assert (dm.n_features, dm.n_classes) == (n_features, n_classes)
    x, y = load_arrays(name)
    assert len(x) == len(y) == n_rows
    assert int(np.prod(x.shape[1:])) == n_features and len(np.unique(y)) == n_classes
    assert not x.flags.writeable  # the shared cache cannot be changed by accident


@pytest.mark.parametrize(("flatten", "shape"), [(True, (64,)), (False, (1, 8, 8))])
def test_digits_layout_and_scale(flatten: bool, shape: tuple[int, ...]) -> None:
    dm = DigitsDataModule(flatten=flatten)
    assert dm.input_shape == (1, 8, 8) and dm.n_features == 64
    dm.setup("fit")
    assert dm.train_set is not None and dm.val_set is not None
    for part in (dm.train_set, dm.val_set):
        assert part.x.shape[1:] == shape and part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert float(part.x.min()) == 0.0 and float(part.x.max()) == 1.0
    assert len(dm.train_set) + len(dm.val_set) == 1797 and len(dm.val_set) == 360


@pytest.mark.parametrize(("for_model", "shape"), [("mlp", (64,)), ("cnn", (1, 8, 8))])
def test_make_datamodule_shapes_digits_for_the_model(for_model: str, shape: tuple[int, ...]) -> None:
    dm = _fitted("digits", for_model=for_model, val_fraction=0.25, val_batch_size=100)
    assert dm.train_set.x.shape[1:] == shape and dm.flatten is (for_model == "mlp")
    assert (dm.val_fraction, dm.val_batch_size, dm.batch_size) == (0.25, 100, 32)


@pytest.mark.parametrize("name", list(DATASETS))
def test_split_is_seeded_stratified_and_a_partition(name: str) -> None:
    _, y = load_arrays(name)
    train, val = split_indices(y, val_fraction=0.2, seed=3)
    again = split_indices(y, val_fraction=0.2, seed=3)
    other = split_indices(y, val_fraction=0.2, seed=4)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, other[1])
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    # stratified: every class keeps its share in the validation split (up to rounding)
    for label in np.unique(y):
        assert abs(np.sum(y[val] == label) - 0.2 * np.sum(y == label)) <= 1


@pytest.mark.parametrize("name", list(DATASETS))
def test_datamodule_split_follows_the_seed(name: str) -> None:
    a, b, c = _fitted(name, seed=1), _fitted(name, seed=1), _fitted(name, seed=2)
    assert torch.equal(a.val_set.x, b.val_set.x) and torch.equal(a.train_set.y, b.train_set.y)
    assert not torch.equal(a.val_set.x, c.val_set.x)
    x_before = a.train_set.x
    a.setup("validate")  # a second setup keeps the split
    assert a.train_set.x is x_before


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_tabular_standardization_uses_train_statistics_only(name: str) -> None:
    dm = _fitted(name, seed=7)
    x, y = load_arrays(name)
    train, val = split_indices(y, val_fraction=0.2, seed=7)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    np.testing.assert_allclose(dm.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(dm.std, std, rtol=1e-5)
    np.testing.assert_allclose(dm.train_set.x.numpy().mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(dm.train_set.x.numpy().std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(dm.val_set.x.numpy(), (x[val] - mean) / std, rtol=1e-4, atol=1e-5)
    # validation rows were not part of the statistics, so their mean is not exactly zero
    assert np.abs(dm.val_set.x.numpy().mean(axis=0)).max() > 1e-3
    assert np.array_equal(dm.val_set.y.numpy(), y[val])


@pytest.mark.parametrize(("name", "batch_size"), [("digits", 64), ("wine", 50), ("breast_cancer", 455)])
def test_train_loader_covers_the_split_once_per_epoch(name: str, batch_size: int) -> None:
    dm = _fitted(name, batch_size=batch_size, seed=11)
    loader = dm.train_dataloader()
    n = len(dm.train_set)
    assert len(loader) == -(-n // batch_size)
    epochs = []
    for _ in range(2):
        order = [list(batch) for batch in loader.sampler]
        assert all(len(b) == batch_size for b in order[:-1]) and 0 < len(order[-1]) <= batch_size
        flat = [i for b in order for i in b]
        assert sorted(flat) == list(range(n))  # every training row exactly once
        epochs.append(flat)
    assert epochs[0] != epochs[1] or n == 1  # the shuffle moves on from one epoch to the next
    assert epochs[0] != list(range(n))
    # a fresh loader with the same seed replays the same order; the batches are the rows it names
    first = epochs[0][:batch_size]
    assert next(iter(dm.train_dataloader().sampler)) == first
    x, y = next(iter(dm.train_dataloader()))
    assert torch.equal(x, dm.train_set.x[first]) and torch.equal(y, dm.train_set.y[first])


def test_train_loader_batches_are_whole_tensors() -> None:
    dm = _fitted("digits", batch_size=100)
    batches = list(dm.train_dataloader())
    assert len(batches) == 15 and tuple(batches[0][0].shape) == (100, 64) and tuple(batches[-1][0].shape) == (37, 64)
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(torch.sort(seen).values, torch.sort(dm.train_set.y).values)


@pytest.mark.parametrize("name", list(DATASETS))
def test_val_loader_is_sequential(name: str) -> None:
    dm = _fitted(name, val_batch_size=100)
    batches = list(dm.val_dataloader())
    assert all(len(y) <= 100 for _, y in batches)
    assert torch.equal(torch.cat([x for x, _ in batches]), dm.val_set.x)
    assert torch.equal(torch.cat([y for _, y in batches]), dm.val_set.y)


def test_batch_index_dataset() -> None:
    ds = BatchIndexDataset(torch.arange(10.0).view(5, 2), torch.arange(5))
    x, y = ds[[4, 0]]
    assert len(ds) == 5 and y.tolist() == [4, 0] and x.tolist() == [[8.0, 9.0], [0.0, 1.0]]
    with pytest.raises(SchemaError, match=r"x and y must have the same number of rows, but got 2 and 3"):
        BatchIndexDataset(torch.zeros(2, 1), torch.zeros(3))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: make_datamodule("digit", batch_size=8, seed=0),
            SchemaError,
            r"data: unknown built-in dataset, but got 'digit'. Did you mean 'digits'\? Known datasets: breast_cancer, "
            r"digits, wine",
        ),
        (
            lambda: make_datamodule("mnist", batch_size=8, seed=0),
            SchemaError,
            r"but got 'mnist'. Known datasets: breast_cancer, digits, wine",
        ),
        (
            lambda: make_datamodule("wine", batch_size=8, seed=0, for_model="cnn"),
            SchemaError,
            r"the 'cnn' model needs image data, but got 'wine' \(tabular\). Use data 'digits' with the CNN",
        ),
        (
            lambda: make_datamodule("digits", batch_size=8, seed=0, for_model="rnn"),
            SchemaError,
            r"for_model: must be one of 'mlp', 'cnn', but got 'rnn'",
        ),
        (
            lambda: make_datamodule("digits", batch_size=8, seed=0, flatten=False),
            TypeError,
            r"make_datamodule chooses `flatten` from `for_model`",
        ),
        (
            lambda: make_datamodule("wine", batch_size=8, seed=0, namespace="lightning"),
            SchemaError,
            r"namespace: must be one of 'lightning.pytorch', 'pytorch_lightning', but got 'lightning'",
        ),
        (
            lambda: WineDataModule(batch_size=8, shuffle=True),
            TypeError,
            r"WineDataModule got unexpected keyword argument\(s\) 'shuffle'; it accepts batch_size, val_fraction",
        ),
        (
            lambda: DigitsDataModule(batch_size=0),
            SchemaError,
            r"DigitsDataModule.batch_size: must be an integer >= 1, but got 0",
        ),
        (lambda: BreastCancerDataModule(batch_size=True), SchemaError, r"batch_size: must be an integer >= 1"),
        (
            lambda: WineDataModule(val_fraction=1.0),
            SchemaError,
            r"WineDataModule.val_fraction: must be a number in \(0, 1\), but got 1.0",
        ),
        (lambda: WineDataModule(seed=-1), SchemaError, r"WineDataModule.seed: must be an integer >= 0, but got -1"),
        (lambda: load_arrays("iris"), SchemaError, r"unknown built-in dataset, but got 'iris'"),
    ],
)
def test_errors(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_classes_per_package(namespace: str) -> None:
    pl = importlib.import_module(namespace)
    classes = datamodule_classes(namespace)
    assert classes is datamodule_classes(namespace) and set(classes.datasets) == set(DATASETS)
    for cls in classes.datasets.values():
        assert issubclass(cls, pl.LightningDataModule)
    dm = make_datamodule("wine", batch_size=8, seed=0, namespace=namespace)
    assert isinstance(dm, pl.LightningDataModule) and dm.hparams.batch_size == 8
    dm.setup("fit")
    restored = pickle.loads(pickle.dumps(dm))  # classes pickle by reference, per package
    assert type(restored) is type(dm) and torch.equal(restored.val_set.x, dm.val_set.x)


@pytest.mark.parametrize(
    ("namespace", "name", "min_acc"),
    [
        ("lightning.pytorch", "wine", 0.9),
        ("pytorch_lightning", "breast_cancer", 0.9),
    ],
)
def test_mlp_fits_tabular_data_under_a_trainer(namespace: str, name: str, min_acc: float) -> None:
    pl = importlib.import_module(namespace)
    dm = make_datamodule(name, batch_size=16, seed=0, namespace=namespace)
    torch.manual_seed(0)
    model = model_classes(namespace).MLPClassifier(
        {"lr": 1e-2}, n_features=dm.n_features, n_classes=dm.n_classes, max_epochs=3
    )
    trainer = _trainer(pl, 3)
    trainer.fit(model, dm)
    assert float(trainer.callback_metrics["val_acc"]) > min_acc
