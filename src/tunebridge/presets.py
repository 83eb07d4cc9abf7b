"""Ready-made spaces for the standard hyperparameter families; take, override and extend them.

The parameter names here are the vocabulary the built-in models (``tunebridge.lightning.models``)
read from a config, so a preset works with them unchanged. Standard library only.

Example:
    >>> from tunebridge import presets
    >>> from tunebridge.schema import Float
    >>> space = presets.mlp() + presets.training() + presets.regularization()
    >>> space = space.replace(lr=Float(1e-3, 3e-2, log=True))
    >>> "units" in space and space["units"].per_layer
    'n_layers'
"""

from __future__ import annotations

from collections.abc import Callable

from tunebridge._rules import check_choice
from tunebridge._vocab import ACTIVATIONS, OPTIMIZERS, SCHEDULES
from tunebridge.schema import Bool, Choice, Float, Int, Space

__all__ = ["PRESETS", "cnn", "cnn_full", "get", "mlp", "mlp_full", "regularization", "training"]


def mlp(*, max_layers: int = 3, min_units: int = 16, max_units: int = 256) -> Space:
    """Structure of a multilayer perceptron: ``n_layers``, ``units/i`` per layer, ``activation``."""
    return Space(
        n_layers=Int(1, max_layers),
        units=Int(min_units, max_units, log=True, per_layer="n_layers"),
        activation=Choice(list(ACTIVATIONS)),
    )


def cnn(*, max_blocks: int = 2) -> Space:
    """Structure of a small ConvNet: blocks, ``filters/i`` per block, kernel size, pooling, batch norm."""
    return Space(
        n_blocks=Int(1, max_blocks),
        filters=Choice([8, 16, 32, 64], ordered=True, per_layer="n_blocks"),
        kernel_size=Choice([3, 5, 7], ordered=True),
        pooling=Choice(["max", "avg"]),
        activation=Choice(list(ACTIVATIONS)),
        batch_norm=Bool(),
    )


def training() -> Space:
    """Optimisation: log-scale ``lr``, ``batch_size``, ``optimizer`` with ``momentum`` only where it
    applies (``momentum``, ``rmsprop``), and an ``lr_schedule`` with its own conditional parameters.

    Epochs are the budget: set ``max_epochs`` on the run (pruners count in epochs). To tune epochs too,
    add an ``epochs`` int parameter; a trial then trains ``min(epochs, max_epochs)`` epochs.
    """
    return Space(
        lr=Float(1e-4, 1e-1, log=True),
        batch_size=Choice([16, 32, 64, 128], ordered=True),
        optimizer=Choice(list(OPTIMIZERS)),
        momentum=Float(0.5, 0.99, when={"optimizer": ["momentum", "rmsprop"]}),
        lr_schedule=Choice(list(SCHEDULES)),
        lr_gamma=Float(0.8, 0.99, when={"lr_schedule": "exponential"}),
        lr_min_factor=Float(1e-3, 1e-1, log=True, when={"lr_schedule": "cosine"}),
    )


def regularization() -> Space:
    """Regularisation: ``dropout``, weight decay (L2) and L1, each "off or log-scaled", batch norm."""
    return Space(
        dropout=Float(0.0, 0.5),
        weight_decay_on=Bool(),
        weight_decay=Float(1e-6, 1e-2, log=True, when={"weight_decay_on": True}),
        l1_on=Bool(),
        l1=Float(1e-7, 1e-3, log=True, when={"l1_on": True}),
        batch_norm=Bool(),
    )


def mlp_full() -> Space:
    """:func:`mlp` + :func:`training` + :func:`regularization`."""
    return mlp() + training() + regularization()


def cnn_full() -> Space:
    """:func:`cnn` + :func:`training` + :func:`regularization`."""
    return cnn() + training() + regularization()


PRESETS: dict[str, Callable[[], Space]] = {
    "mlp": mlp,
    "cnn": cnn,
    "training": training,
    "regularization": regularization,
    "mlp_full": mlp_full,
    "cnn_full": cnn_full,
}


def get(name: str) -> Space:
    """A preset by name (as used under ``space: {presets: [...]}`` in a spec file).

    Raises:
        SchemaError: No preset has that name; the message suggests the nearest one.
    """
    check_choice(
        name, tuple(PRESETS), path="space.presets", rule="unknown preset", fix=f"Known presets: {', '.join(PRESETS)}."
    )
    return PRESETS[name]()
