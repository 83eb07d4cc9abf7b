"""Built-in configurable LightningModules: an MLP and a small ConvNet, both driven by a flat config.

A config is one sample of a search space: a flat mapping such as ``{"lr": 0.01, "n_layers": 2,
"units/0": 128, "units/1": 32}``. Every key is optional (a space holding only ``lr`` works), unknown
keys are ignored (the space may carry keys meant for something else), and an invalid value raises
:class:`~tunebridge.errors.SchemaError` (a ``ValueError``) naming the key, the value and what is allowed.
The vocabulary is the one of :mod:`tunebridge.presets`.

Classes are built per Lightning package because ``lightning.pytorch`` and ``pytorch_lightning`` are
separate class trees and a module must run under a Trainer of its own package: the module-level
:data:`MLPClassifier` and :data:`ConvNetClassifier` use the default package
(:func:`tunebridge._compat.lightning_namespace`), :func:`model_classes` builds them for either one.

Example:
    >>> model = MLPClassifier({"lr": 0.01, "n_layers": 1}, n_features=64, n_classes=10)
    >>> model.n_params
    4810
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tunebridge._compat import lightning_namespace
from tunebridge.errors import SchemaError
from tunebridge.presets import ACTIVATIONS, OPTIMIZERS, SCHEDULES

__all__ = [
    "ACTIVATION_LAYERS",
    "NAMESPACES",
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

NAMESPACES = ("lightning.pytorch", "pytorch_lightning")
ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}
POOLING_LAYERS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
KERNEL_SIZES = (3, 5, 7)
# Momentum when the config leaves it out: the classic 0.9 for SGD with momentum, torch's 0 for RMSprop.
_DEFAULT_MOMENTUM = {"sgd": 0.0, "momentum": 0.9, "rmsprop": 0.0, "adam": 0.0, "adamw": 0.0}


def _listing(values: tuple[Any, ...]) -> str:
    return ", ".join(repr(v) for v in values)


def _read_choice(config: Mapping[str, Any], key: str, default: Any, allowed: tuple[Any, ...]) -> Any:
    value = config.get(key, default)
    if isinstance(value, bool) or value not in allowed:
        raise SchemaError(
            f"must be one of {_listing(allowed)}",
            path=key,
            value=repr(value),
            fix=f"Restrict `{key}` in the search space to these values.",
        )
    return value


def _read_int(config: Mapping[str, Any], key: str, default: int, *, low: int) -> int:
    value = config.get(key, default)
    integral = isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()
    if not integral or value < low:
        raise SchemaError(
            f"must be an integer >= {low}",
            path=key,
            value=repr(value),
            fix=f"Declare `{key}` as an Int parameter with low >= {low}.",
        )
    return int(value)


def _read_float(
    config: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    value = config.get(key, default)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise SchemaError(
            f"must be a number in {interval}",
            path=key,
            value=repr(value),
            fix=f"Keep the bounds of `{key}` inside {interval}.",
        )
    return float(value)


def _read_flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, str) or value not in (True, False):  # numpy bools compare equal, strings never do
        raise SchemaError("must be a boolean", path=key, value=repr(value), fix=f"Declare `{key}` as a Bool parameter.")
    return bool(value)


def _layer_int(config: Mapping[str, Any], name: str, index: int, default: int) -> int:
    """``name/index`` for one layer, falling back to a shared ``name`` and then to ``default``."""
    shared = _read_int(config, name, default, low=1)
    return _read_int(config, f"{name}/{index}", shared, low=1)


@dataclass(frozen=True)
class TrainingConfig:
    """The optimisation and regularisation part of a config, validated.

    Attributes:
        lr: Learning rate.
        optimizer: One of ``sgd``, ``momentum``, ``rmsprop``, ``adam``, ``adamw``.
        momentum: Momentum for ``momentum`` and ``rmsprop`` (always 0 for ``sgd``).
        lr_schedule: One of ``none``, ``exponential``, ``cosine`` (stepped once per epoch).
        lr_gamma: Decay factor of the exponential schedule.
        lr_min_factor: Final learning rate of the cosine schedule, as a fraction of ``lr``.
        weight_decay: Passed to the optimizer (0 unless ``weight_decay`` is set and ``weight_decay_on``
            is not False).
        l1: Coefficient of the L1 penalty on weights (0 unless ``l1`` is set and ``l1_on`` is not False).
    """

    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.0
    lr_schedule: str = "none"
    lr_gamma: float = 0.95
    lr_min_factor: float = 0.01
    weight_decay: float = 0.0
    l1: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainingConfig:
        """Read and validate the training keys of ``config`` (other keys are ignored).

        Raises:
            SchemaError: A training key holds a value outside its allowed set or range.
        """
        optimizer = _read_choice(config, "optimizer", "adam", OPTIMIZERS)
        momentum = _read_float(config, "momentum", _DEFAULT_MOMENTUM[optimizer], low=0.0, high=1.0, open_high=True)
        # An inactive conditional parameter may still sit in the config: the switch decides.
        wd_on = _read_flag(config, "weight_decay_on", True)
        l1_on = _read_flag(config, "l1_on", True)
        return cls(
            lr=_read_float(config, "lr", 1e-3, low=0.0, open_low=True),
            optimizer=optimizer,
            momentum=0.0 if optimizer == "sgd" else momentum,
            lr_schedule=_read_choice(config, "lr_schedule", "none", SCHEDULES),
            lr_gamma=_read_float(config, "lr_gamma", 0.95, low=0.0, high=1.0, open_low=True),
            lr_min_factor=_read_float(config, "lr_min_factor", 0.01, low=0.0, high=1.0),
            weight_decay=_read_float(config, "weight_decay", 0.0, low=0.0) if wd_on else 0.0,
            l1=_read_float(config, "l1", 0.0, low=0.0) if l1_on else 0.0,
        )


def build_optimizer(params: Any, training: TrainingConfig) -> torch.optim.Optimizer:
    """The torch optimizer that ``training`` describes, over ``params``."""
    lr, wd, name = training.lr, training.weight_decay, training.optimizer
    if name in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=lr, momentum=training.momentum, nesterov=False, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=training.momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":  # AdamW decouples the decay itself; 0 (not torch's 0.01) unless the config asks
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise SchemaError(f"must be one of {_listing(OPTIMIZERS)}", path="optimizer", value=repr(name))


def build_scheduler(
    optimizer: torch.optim.Optimizer, training: TrainingConfig, max_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning-rate schedule ``training`` describes, or None for ``lr_schedule="none"``."""
    if training.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=training.lr_gamma)
    if training.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max_epochs, eta_min=training.lr * training.lr_min_factor
        )
    return None


def _activation(config: Mapping[str, Any]) -> type[nn.Module]:
    return ACTIVATION_LAYERS[_read_choice(config, "activation", "relu", ACTIVATIONS)]


def _check_positive(owner: str, **sizes: int) -> None:
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise SchemaError(
                "must be a positive integer",
                path=f"{owner}.{name}",
                value=repr(size),
                fix="Take it from the datamodule (n_features, input_shape, n_classes).",
            )


def mlp_network(config: Mapping[str, Any], *, n_features: int, n_classes: int) -> nn.Sequential:
    """The MLP a config describes: ``n_layers`` x [Linear(``units/i``), BatchNorm?, activation, Dropout?], head.

    Args:
        config: Reads ``n_layers`` (2), ``units/i`` (falls back to ``units``, then 64), ``activation``
            (relu), ``batch_norm`` (False) and ``dropout`` (0.0).
        n_features: Width of the input.
        n_classes: Number of output logits.

    Raises:
        SchemaError: A structure key holds an invalid value.
    """
    _check_positive("MLPClassifier", n_features=n_features, n_classes=n_classes)
    n_layers = _read_int(config, "n_layers", 2, low=0)
    act = _activation(config)
    batch_norm = _read_flag(config, "batch_norm", False)
    dropout = _read_float(config, "dropout", 0.0, low=0.0, high=1.0, open_high=True)
    layers: list[nn.Module] = []
    width = n_features
    for i in range(n_layers):
        units = _layer_int(config, "units", i, 64)
        layers.append(nn.Linear(width, units))
        if batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(act())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def convnet_network(config: Mapping[str, Any], *, input_shape: tuple[int, int, int], n_classes: int) -> nn.Sequential:
    """The ConvNet a config describes: ``n_blocks`` conv blocks, then flatten, Dropout? and a linear head.

    A block is Conv2d(``filters/i``, ``kernel_size``, padding "same"), BatchNorm2d?, activation and a
    2x2 pooling, skipped once the feature map is smaller than 2x2 (so it never shrinks below 1x1). The
    head flattens rather than averaging globally: on small images where a digit stroke lies matters.

    Args:
        config: Reads ``n_blocks`` (2), ``filters/i`` (falls back to ``filters``, then 16),
            ``kernel_size`` (3), ``pooling`` (max), ``activation`` (relu), ``batch_norm`` (False)
            and ``dropout`` (0.0).
        input_shape: ``(channels, height, width)`` of one input.
        n_classes: Number of output logits.

    Raises:
        SchemaError: A structure key holds an invalid value.
    """
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise SchemaError(
            "must be (channels, height, width)",
            path="ConvNetClassifier.input_shape",
            value=repr(input_shape),
            fix="Use the datamodule's input_shape, e.g. (1, 8, 8).",
        )
    _check_positive(
        "ConvNetClassifier", channels=input_shape[0], height=input_shape[1], width=input_shape[2], n_classes=n_classes
    )
    channels, height, width = (int(s) for s in input_shape)
    n_blocks = _read_int(config, "n_blocks", 2, low=0)
    kernel = int(_read_choice(config, "kernel_size", 3, KERNEL_SIZES))
    pool = POOLING_LAYERS[_read_choice(config, "pooling", "max", tuple(POOLING_LAYERS))]
    act = _activation(config)
    batch_norm = _read_flag(config, "batch_norm", False)
    dropout = _read_float(config, "dropout", 0.0, low=0.0, high=1.0, open_high=True)
    layers: list[nn.Module] = []
    for i in range(n_blocks):
        filters = _layer_int(config, "filters", i, 16)
        layers.append(nn.Conv2d(channels, filters, kernel, padding="same"))
        if batch_norm:
            layers.append(nn.BatchNorm2d(filters))
        layers.append(act())
        if height >= 2 and width >= 2:
            layers.append(pool(2))
            height, width = height // 2, width // 2
        channels = filters
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(channels * height * width, n_classes))
    return nn.Sequential(*layers)


def l1_norm(module: nn.Module) -> Tensor:
    """Sum of absolute weights of the Linear and Conv2d layers of ``module`` (biases and norms excluded)."""
    weights = [m.weight for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not weights:
        return torch.zeros(())
    return torch.stack([w.abs().sum() for w in weights]).sum()


def _resolve_namespace(namespace: str | None) -> str:
    if namespace is None:
        return lightning_namespace().__name__
    if namespace not in NAMESPACES:
        raise SchemaError(
            f"must be one of {_listing(NAMESPACES)}",
            path="namespace",
            value=repr(namespace),
            fix="Name the Lightning package whose Trainer will run the module.",
        )
    return namespace


def _alias(cls: type, namespace: str) -> type:
    # Pickle finds a class by module + qualname; a class built in a function has neither, so each gets
    # a module-level alias that the module __getattr__ below can rebuild in a fresh process.
    cls.__module__ = __name__
    cls.__qualname__ = f"{cls.__name__}__{namespace.replace('.', '_')}"
    return cls


def model_classes(namespace: str | None = None) -> SimpleNamespace:
    """``MLPClassifier`` and ``ConvNetClassifier`` built on one Lightning package (cached per package).

    Args:
        namespace: ``"lightning.pytorch"`` or ``"pytorch_lightning"``; None for the default package.

    Raises:
        SchemaError: ``namespace`` names neither package.
    """
    return _model_classes(_resolve_namespace(namespace))


@cache
def _model_classes(namespace: str) -> SimpleNamespace:
    pl = lightning_namespace(namespace)

    class _Classifier(pl.LightningModule):  # type: ignore[misc, name-defined]
        """Shared training logic: cross-entropy, L1 penalty, logging and optimizers."""

        net: nn.Sequential
        config: dict[str, Any]
        training_config: TrainingConfig
        max_epochs: int

        def __init__(self, config: Mapping[str, Any], max_epochs: int, hparams: dict[str, Any]) -> None:
            super().__init__()
            if isinstance(max_epochs, bool) or not isinstance(max_epochs, numbers.Integral) or max_epochs < 1:
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

    return SimpleNamespace(
        namespace=namespace,
        MLPClassifier=_alias(MLPClassifier, namespace),
        ConvNetClassifier=_alias(ConvNetClassifier, namespace),
    )


def __getattr__(name: str) -> type:
    base, sep, tag = name.partition("__")
    for namespace in NAMESPACES:
        if sep and base in ("MLPClassifier", "ConvNetClassifier") and tag == namespace.replace(".", "_"):
            return getattr(_model_classes(namespace), base)  # type: ignore[no-any-return]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_DEFAULT = model_classes()
MLPClassifier = _DEFAULT.MLPClassifier
ConvNetClassifier = _DEFAULT.ConvNetClassifier
