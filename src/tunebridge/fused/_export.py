"""A fused member's weights as a normal Lightning checkpoint of its own model class (built-in or the user's)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tunebridge._atomic import write_atomically
from tunebridge._compat import lightning_namespace_of

__all__ = ["save_member_checkpoint"]


def save_member_checkpoint(module: Any, state: dict[str, Tensor], path: str, *, epoch: int) -> None:
    """Write ``state`` (the member's unpadded ``state_dict``) so that ``type(module).load_from_checkpoint`` loads it.

    The file holds what Lightning's loader reads: the state dict, the module's hyperparameters (its
    ``__init__`` arguments, saved by ``save_hyperparameters``) and the version of the Lightning package
    the module's class derives from (``lightning.pytorch`` or ``pytorch_lightning``).

    Raises:
        TypeError: ``module`` is not a LightningModule of either package.
    """
    # The package the module's class derives from, as Lightning's own checkpoints record it.
    version = str(lightning_namespace_of(module).__version__)
    checkpoint = {
        "epoch": max(0, epoch - 1),
        "global_step": 0,
        "pytorch-lightning_version": version,
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in state.items()},  # loadable without a GPU
        "hyper_parameters": dict(module.hparams),
    }
    write_atomically(path, lambda partial: torch.save(checkpoint, partial))
