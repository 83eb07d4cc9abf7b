"""Fused trial cohorts: many trials of the built-in MLP trained at once as one stacked model.

``fuse: auto | K`` in a spec (``tune(fuse=...)``, ``--fuse``) trains up to K trials together. Every
member is an ordinary trial of the study (its own number, params, per-epoch values, pruning, early
stopping and ``final_*`` attributes); fusion changes speed, not results: a member's curve is the one
its config gives alone (same seed and data order), within floating-point rounding.

What may differ inside one cohort: lr, momentum, weight decay, L1, dropout, the lr schedule and its
parameters, the optimizer, the activation, batch norm, the number of layers and the units per layer
(padded to the cohort's widest and masked). Members share the data and its batch size (cohorts are
grouped by that signature). Fusable today: the built-in ``MLPClassifier`` on a built-in dataset.
"""

from __future__ import annotations

from typing import Any

from tunebridge.errors import TunebridgeError

__all__ = ["NotFusableError", "check_fusable", "resolve_capacity"]


class NotFusableError(TunebridgeError, TypeError):
    """A trial's model cannot be trained in a fused cohort; the message says why."""


def check_fusable(module: Any, datamodule: Any) -> None:
    """Refuse (with the reason) a model that fusion cannot train exactly as it would train alone.

    Raises:
        NotFusableError: Not the built-in MLP on a built-in in-memory dataset, or a layer it does not know.
    """
    name = type(module).__name__.split("__")[0]
    if name != "MLPClassifier":
        raise NotFusableError(
            f"fuse: {type(module).__name__} cannot be fused: fused cohorts train the built-in MLPClassifier "
            "(model: mlp); ConvNets and your own modules train unfused (drop `fuse:` for this spec)."
        )
    if not all(hasattr(datamodule, a) for a in ("seed", "val_fraction", "batch_size", "setup")) or not type(
        datamodule
    ).__name__.split("__")[0].endswith("DataModule"):
        raise NotFusableError(
            f"fuse: the datamodule {type(datamodule).__name__} cannot be fused: cohorts read the built-in "
            "in-memory datasets (data: digits | breast_cancer | wine)."
        )
    import torch

    allowed = (torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.Dropout, torch.nn.ReLU, torch.nn.Tanh, torch.nn.GELU)
    for layer in module.net:
        if not isinstance(layer, (*allowed, torch.nn.LeakyReLU)):
            raise NotFusableError(f"fuse: the layer {type(layer).__name__} has no fused form")
    if not any(isinstance(m, torch.nn.Linear) for m in list(module.net)[:-1]):
        raise NotFusableError("fuse: a model without hidden layers (n_layers: 0) has nothing to fuse")


def resolve_capacity(fuse: int | str | None) -> int | None:
    """Members trained at once for ``fuse`` (None: no fusion; ``auto``: from the device)."""
    if fuse is None or fuse is False:
        return None
    if fuse == "auto":
        from tunebridge.fused._loop import default_capacity

        return default_capacity()
    return int(fuse)
