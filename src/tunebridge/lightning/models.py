"""Built-in configurable LightningModules: an MLP and a small ConvNet, both driven by a flat config.

A config is one sample of a search space: a flat mapping such as ``{"lr": 0.01, "n_layers": 2,
"units/0": 128, "units/1": 32}``. Every key is optional (a space holding only ``lr`` works), unknown
keys are ignored (the space may carry keys meant for something else), and an invalid value raises
:class:`~tunebridge.errors.SchemaError` (a ``ValueError``) naming the key, the value and what is allowed.
The vocabulary is the one of :mod:`tunebridge.presets` (both read it from ``tunebridge._vocab``). The networks live in
:mod:`tunebridge.lightning._networks`, the optimisation settings in :mod:`tunebridge.lightning._training`;
both are re-exported here.

Classes are built per Lightning package because ``lightning.pytorch`` and ``pytorch_lightning`` are
separate class trees and a module must run under a Trainer of its own package: the module-level
:data:`MLPClassifier` and :data:`ConvNetClassifier` use the default package
(:func:`tunebridge._compat.lightning_namespace`), :func:`model_classes` builds them for either one.
Both are built on first use, so importing this module does not import Lightning.

Example:
    >>> from tunebridge.lightning.models import MLPClassifier
    >>> model = MLPClassifier({"lr": 0.01, "n_layers": 1}, n_features=64, n_classes=10)
    >>> model.n_params
    4810
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from operator import attrgetter
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tunebridge._rules import is_int_at_least
from tunebridge.errors import SchemaError
from tunebridge.lightning._networks import (
    ACTIVATION_LAYERS,
    KERNEL_SIZES,
    POOLING_LAYERS,
    convnet_network,
    l1_norm,
    mlp_network,
)
from tunebridge.lightning._packages import NAMESPACES, PackageClasses, lazy_attribute
from tunebridge.lightning._training import TrainingConfig, build_optimizer, build_scheduler

__all__ = [
    "ACTIVATION_LAYERS",
    "KERNEL_SIZES",
    "NAMESPACES",
    "POOLING_LAYERS",
    "ConvNetClassifier",
    "MLPClassifier",
    "TrainingConfig",
    "build_optimizer",
    "build_scheduler",
    "convnet_network",
    "l1_norm",
    "mlp_network",
    "model_classes",
]

if TYPE_CHECKING:  # built on first use by the module __getattr__ (end of file); declared for the checkers
    MLPClassifier: type[Any]
    ConvNetClassifier: type[Any]


def model_classes(namespace: str | None = None) -> SimpleNamespace:
    """``MLPClassifier`` and ``ConvNetClassifier`` built on one Lightning package (cached per package).

    Args:
        namespace: ``"lightning.pytorch"`` or ``"pytorch_lightning"``; None for the default package.

    Raises:
        SchemaError: ``namespace`` names neither package.
    """
    return _CLASSES(namespace)


def _build(pl: ModuleType) -> dict[str, type]:
    """The public classifier classes on the Lightning package ``pl``."""

    class _Classifier(pl.LightningModule):  # type: ignore[misc, name-defined]
        """Shared training logic: cross-entropy, L1 penalty, logging and optimizers."""

        net: nn.Sequential
        config: dict[str, Any]
        training_config: TrainingConfig
        max_epochs: int

        def __init__(self, config: Mapping[str, Any], max_epochs: int, hparams: dict[str, Any]) -> None:
            super().__init__()
            if not is_int_at_least(max_epochs, 1, kind=numbers.Integral):
                raise SchemaError(
                    "must be an integer >= 1",
                    path=f"{type(self).__name__}.max_epochs",
                    value=repr(max_epochs),
                    fix="Pass the Trainer's max_epochs.",
                )
            self.config = dict(config)
            self.training_config = TrainingConfig.from_config(config)
            self.max_epochs = int(max_epochs)
            self.save_hyperparameters({"config": self.config, **hparams, "max_epochs": self.max_epochs})

        def forward(self, x: Tensor) -> Tensor:
            logits: Tensor = self.net(x)
            return logits

        @property
        def n_params(self) -> int:
            """Number of trainable parameters."""
            return sum(p.numel() for p in self.parameters() if p.requires_grad)

        def l1_penalty(self) -> Tensor:
            """``l1`` times the L1 norm of the weights (zero when L1 is off)."""
            if self.training_config.l1 == 0:
                return torch.zeros((), device=self.device)
            return self.training_config.l1 * l1_norm(self.net)

        def compute_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
            """Training objective on one batch: cross-entropy plus the L1 penalty."""
            x, y = batch
            return F.cross_entropy(self(x), y) + self.l1_penalty()

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            loss = self.compute_loss(batch)
            self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[1]))
            return loss

        def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
            x, y = batch
            logits = self(x)
            acc = (logits.argmax(dim=1) == y).float().mean()
            opts: dict[str, Any] = {"on_epoch": True, "on_step": False, "prog_bar": False, "batch_size": len(y)}
            self.log("val_loss", F.cross_entropy(logits, y), **opts)
            self.log("val_acc", acc, **opts)

        def configure_optimizers(self) -> Any:
            optimizer = build_optimizer(self.parameters(), self.training_config)
            scheduler = build_scheduler(optimizer, self.training_config, self.max_epochs)
            if scheduler is None:
                return optimizer
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    class MLPClassifier(_Classifier):
        """A configurable multilayer perceptron classifier (see :func:`mlp_network` for the keys).

        Args:
            config: Flat config; all keys optional, unknown keys ignored.
            n_features: Width of the input.
            n_classes: Number of classes.
            max_epochs: Length of the run (the cosine schedule anneals over it).

        Raises:
            SchemaError: A config key holds an invalid value.
        """

        def __init__(self, config: Mapping[str, Any], *, n_features: int, n_classes: int, max_epochs: int = 20) -> None:
            net = mlp_network(config, n_features=n_features, n_classes=n_classes)
            super().__init__(config, max_epochs, {"n_features": int(n_features), "n_classes": int(n_classes)})
            self.net = net

    class ConvNetClassifier(_Classifier):
        """A configurable small ConvNet classifier (see :func:`convnet_network` for the keys).

        Args:
            config: Flat config; all keys optional, unknown keys ignored.
            input_shape: ``(channels, height, width)`` of one input.
            n_classes: Number of classes.
            max_epochs: Length of the run (the cosine schedule anneals over it).

        Raises:
            SchemaError: A config key holds an invalid value.
        """

        def __init__(
            self, config: Mapping[str, Any], *, input_shape: tuple[int, int, int], n_classes: int, max_epochs: int = 20
        ) -> None:
            net = convnet_network(config, input_shape=input_shape, n_classes=n_classes)
            shape = tuple(int(s) for s in input_shape)
            super().__init__(config, max_epochs, {"input_shape": shape, "n_classes": int(n_classes)})
            self.net = net

    return {"MLPClassifier": MLPClassifier, "ConvNetClassifier": ConvNetClassifier}


_CLASSES = PackageClasses(__name__, _build, runs="module")
_DEFAULTS = {name: attrgetter(name) for name in ("MLPClassifier", "ConvNetClassifier")}


def __getattr__(name: str) -> Any:
    # The default-package classes and the pickled ones (`MLPClassifier__lightning_pytorch`, ...), built
    # here on first use rather than at import, so that importing this module leaves Lightning unloaded.
    return lazy_attribute(_CLASSES, name, _DEFAULTS)
