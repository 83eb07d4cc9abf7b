"""Fused trial cohorts: many trials of the built-in MLP trained at once as one stacked model.

``fuse: auto | K`` in a spec (``tune(run={"fuse": ...})``, ``--fuse``) trains up to K trials together. Every
member is an ordinary trial of the study (its own number, params, per-epoch values, pruning, early
stopping and ``final_*`` attributes); fusion changes speed, not results: a member's curve is the one
its config gives alone (same seed and data order), within floating-point rounding.

What may differ inside one cohort: lr, momentum, weight decay, L1, dropout, the lr schedule and its
parameters, the optimizer, the activation, batch norm, the number of layers and the units per layer
(padded to the cohort's widest and masked). Members share the data and its batch size (cohorts are
grouped by that signature). Fusable today: the built-in ``MLPClassifier`` on a built-in dataset, and the
built-in ``ConvNetClassifier`` for members of one architecture (batch norm included: its running statistics
are stacked buffers, one set per member), through ``vmap``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from tunebridge._rules import check_backend, check_fuse
from tunebridge.errors import SchemaError, TunebridgeError

if TYPE_CHECKING:  # pragma: no cover - imported on first use below (they import torch)
    from tunebridge.fused._loop import FusedExecutor, FuseStats, run_fused
    from tunebridge.fused._ray import run_fused_on_ray

__all__ = [
    "FuseStats",
    "FusedExecutor",
    "NotFusableError",
    "check_fusable",
    "fuse_capacity",
    "resolve_capacity",
    "run_fused",
    "run_fused_on_ray",
]

# The engine is loaded on first use: importing this package (fuse: checks, the CLI) does not import torch.
_LAZY = {
    "FuseStats": "tunebridge.fused._loop",
    "FusedExecutor": "tunebridge.fused._loop",
    "run_fused": "tunebridge.fused._loop",
    "run_fused_on_ray": "tunebridge.fused._ray",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tunebridge.fused' has no attribute {name!r}")


class NotFusableError(TunebridgeError, TypeError):
    """A trial's model cannot be trained in a fused cohort; the message says why."""


def check_fusable(module: Any, datamodule: Any) -> None:
    """Refuse (with the reason) a model that fusion cannot train exactly as it would train alone.

    Raises:
        NotFusableError: Not a built-in model on a built-in in-memory dataset, or a layer it does not know.
    """
    import torch

    from tunebridge.fused._user import check_user_module, is_user_module

    name = type(module).__name__.split("__")[0]
    if name not in ("MLPClassifier", "ConvNetClassifier"):
        if is_user_module(module):
            check_user_module(module, datamodule)
            return
        raise NotFusableError(
            f"fuse: {type(module).__name__} cannot be fused: fused cohorts train the built-in MLPClassifier and "
            "ConvNetClassifier (model: mlp | cnn), and your own module once it defines fused_loss(batch) and "
            "fused_metrics(batch) (see the fused_custom recipe); or drop `fuse:` for this spec."
        )
    if not all(hasattr(datamodule, a) for a in ("seed", "val_fraction", "batch_size", "setup")) or not type(
        datamodule
    ).__name__.split("__")[0].endswith("DataModule"):
        raise NotFusableError(
            f"fuse: the datamodule {type(datamodule).__name__} cannot be fused: cohorts read the built-in "
            "in-memory datasets (data: digits | breast_cancer | wine)."
        )
    if name == "ConvNetClassifier":
        return  # vmapped: batch norm's running statistics are stacked buffers, updated per member
    allowed = (torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.Dropout, torch.nn.ReLU, torch.nn.Tanh, torch.nn.GELU)
    for layer in module.net:
        if not isinstance(layer, (*allowed, torch.nn.LeakyReLU)):
            raise NotFusableError(f"fuse: the layer {type(layer).__name__} has no fused form")
    if not any(isinstance(m, torch.nn.Linear) for m in list(module.net)[:-1]):
        raise NotFusableError("fuse: a model without hidden layers (n_layers: 0) has nothing to fuse")


def resolve_capacity(fuse: int | str | None) -> int | Literal["auto"] | None:
    """Members trained at once for ``fuse`` (None: no fusion; ``"auto"``: sized by the run from its
    device and its first member, see :func:`tunebridge.fused._loop.auto_capacity`)."""
    if fuse is None or fuse is False:
        return None
    if fuse == "auto":
        return "auto"
    return int(fuse)


def fuse_capacity(fuse: int | str, backend: str, **trainer_only: Any) -> int | Literal["auto"]:
    """Members trained at once for ``tune(run={"fuse": ...})``; refuses, before any trial, what fusion cannot run.

    Fused cohorts train without a Lightning Trainer: options that only a Trainer honours (``trainer``,
    ``callbacks``, ``logger``, ``trial_timeout``) are refused, never ignored; ``accelerator`` picks the
    device the cohorts train on (``cpu``, ``gpu``/``cuda`` or ``auto``).

    Raises:
        SchemaError: ``fuse`` is not ``auto`` or an integer >= 1, the backend is neither optuna nor ray, or a
            Trainer-only option is set.
    """
    check_fuse(fuse)
    check_backend(backend)  # fused cohorts run on either: on Optuna, or as cohort workers on Ray
    from tunebridge.fused._memory import fused_device

    fused_device(trainer_only.pop("accelerator", "auto"))  # cpu, gpu/cuda or auto; refused otherwise
    given = [k for k, v in trainer_only.items() if v not in (None, [], {}, (), "auto", "cpu")]
    if given:
        raise SchemaError(
            "fused cohorts do not run a Lightning Trainer, so these options would be ignored",
            path="fuse",
            value=", ".join(given),
            fix="Drop them, or drop fuse: to train each trial with its own Trainer.",
        )
    capacity = resolve_capacity(fuse)
    assert capacity is not None  # fuse is set
    return capacity
