"""The built-in models and datasets together: one call turns a sampled config into a module and its data.

Example:
    >>> model, dm = build_builtin("mlp", "wine", {"lr": 0.01, "batch_size": 32}, max_epochs=3, seed=0)
    >>> type(model).__name__, dm.batch_size, model.hparams.n_features
    ('MLPClassifier', 32, 13)
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import SimpleNamespace
from typing import Any

import torch

from tunebridge._hints import did_you_mean
from tunebridge.errors import SchemaError
from tunebridge.lightning._packages import resolve_namespace
from tunebridge.lightning._training import _read_int
from tunebridge.lightning.data import MODEL_KINDS, datamodule_classes, make_datamodule
from tunebridge.lightning.models import model_classes

__all__ = ["MODEL_KINDS", "build_builtin", "make_classes"]


def make_classes(namespace: str | None = None) -> SimpleNamespace:
    """The five built-in classes on one Lightning package (cached per package).

    Args:
        namespace: ``"lightning.pytorch"`` or ``"pytorch_lightning"``; None for the default package.

    Returns:
        A namespace with ``MLPClassifier``, ``ConvNetClassifier``, ``DigitsDataModule``,
        ``BreastCancerDataModule``, ``WineDataModule`` and ``namespace`` (the package name).

    Raises:
        SchemaError: ``namespace`` names neither package.
    """
    return _make_classes(resolve_namespace(namespace))


@cache
def _make_classes(namespace: str) -> SimpleNamespace:
    models, data = model_classes(namespace), datamodule_classes(namespace)
    return SimpleNamespace(
        namespace=namespace,
        MLPClassifier=models.MLPClassifier,
        ConvNetClassifier=models.ConvNetClassifier,
        DigitsDataModule=data.DigitsDataModule,
        BreastCancerDataModule=data.BreastCancerDataModule,
        WineDataModule=data.WineDataModule,
    )


def build_builtin(
    model: str, data: str, config: Mapping[str, Any], *, max_epochs: int, seed: int, namespace: str | None = None
) -> tuple[Any, Any]:
    """A built-in LightningModule and the datamodule it trains on, both from one config.

    The datamodule takes ``batch_size`` from the config (default 64); the model reads the rest. The
    weights are initialised from ``seed`` without touching the global torch RNG.

    Args:
        model: ``"mlp"`` or ``"cnn"`` (the CNN needs the ``"digits"`` images).
        data: ``"digits"``, ``"breast_cancer"`` or ``"wine"``.
        config: One sampled config; unknown keys are ignored.
        max_epochs: Length of the run (the cosine schedule anneals over it).
        seed: Fixes the split, the shuffle and the initial weights.
        namespace: Lightning package to build on; None for the default.

    Returns:
        ``(module, datamodule)``.

    Raises:
        SchemaError: Unknown model or dataset, a CNN on tabular data, or an invalid config value.
    """
    if model not in MODEL_KINDS:
        hint, known = did_you_mean(model, MODEL_KINDS), f"Known models: {', '.join(MODEL_KINDS)}."
        raise SchemaError(
            "unknown built-in model", path="model", value=repr(model), fix=f"{hint} {known}" if hint else known
        )
    batch_size = _read_int(config, "batch_size", 64, low=1)
    dm = make_datamodule(data, batch_size=batch_size, seed=seed, for_model=model, namespace=namespace)
    classes = make_classes(namespace)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "mlp":
            module = classes.MLPClassifier(
                config, n_features=dm.n_features, n_classes=dm.n_classes, max_epochs=max_epochs
            )
        else:
            module = classes.ConvNetClassifier(
                config, input_shape=dm.input_shape, n_classes=dm.n_classes, max_epochs=max_epochs
            )
    return module, dm
