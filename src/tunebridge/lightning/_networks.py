"""The networks of the built-in models, as plain ``nn.Sequential`` built from a flat config.

Example:
    >>> mlp_network({"n_layers": 1, "units": 8}, n_features=4, n_classes=2)
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=2, bias=True)
    )
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from tunebridge._rules import is_int_at_least
from tunebridge._vocab import ACTIVATIONS
from tunebridge.errors import SchemaError
from tunebridge.lightning._training import _read_choice, _read_flag, _read_float, _read_int

__all__ = ["ACTIVATION_LAYERS", "KERNEL_SIZES", "POOLING_LAYERS", "convnet_network", "l1_norm", "mlp_network"]

ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}
POOLING_LAYERS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
KERNEL_SIZES = (3, 5, 7)


def _layer_int(config: Mapping[str, Any], name: str, index: int, default: int) -> int:
    """``name/index`` for one layer, falling back to a shared ``name`` and then to ``default``."""
    shared = _read_int(config, name, default, low=1)
    return _read_int(config, f"{name}/{index}", shared, low=1)


def _activation(config: Mapping[str, Any]) -> type[nn.Module]:
    return ACTIVATION_LAYERS[_read_choice(config, "activation", "relu", ACTIVATIONS)]


def _check_positive(owner: str, **sizes: int) -> None:
    for name, size in sizes.items():
        if not is_int_at_least(size, 1, kind=numbers.Integral):
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
