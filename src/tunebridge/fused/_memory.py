"""Where fused cohorts train (the device), and how many members fit there at once (``fuse: auto``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from tunebridge.errors import SchemaError

if TYPE_CHECKING:
    from tunebridge.fused._cohort import Member

__all__ = ["auto_capacity", "default_capacity", "fused_device", "member_bytes"]

#: Bytes per parameter element, counted in elements of the cohort's dtype: the value, its gradient and two
#: optimizer states (4), the padded stack a step scatters them into and its gradient (2), the per-element
#: coefficients, L1 terms and indexes of the packed layout (8: three of them are int64), the copies a
#: repacked member keeps between epochs (3) and an optimizer update's temporaries (7).
PARAM_COPIES = 24
#: Per sample and per element of a layer's output, in training: the output, what backward saves with it
#: (pre-activation, dropout mask) and its gradient.
TRAIN_ACTIVATION_COPIES = 4
#: The share of the free device memory that ``fuse: auto`` fills (the rest: the allocator's fragmentation,
#: the CUDA context's own growth, kernels' workspaces).
HEADROOM = 0.7
#: The most members ``fuse: auto`` trains at once (more adds little: a step is already one big kernel each).
MAX_AUTO = 1024


def fused_device(accelerator: str) -> torch.device:
    """The device fused cohorts train on for a run's ``accelerator``.

    ``cpu`` is the CPU; ``gpu`` or ``cuda`` the current CUDA device; ``auto`` the CUDA device when there
    is one, else the CPU.

    Raises:
        SchemaError: ``gpu`` without a CUDA device, or an accelerator fused cohorts do not run on.
    """
    name = accelerator.lower()
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SchemaError(
                "fused cohorts on a GPU need a CUDA device, and torch sees none",
                path="accelerator",
                value=repr(accelerator),
                fix="Use accelerator: cpu (or auto), or install a CUDA build of torch on a machine with a GPU.",
            )
        return torch.device("cuda" if name == "gpu" else name)
    raise SchemaError(
        "fused cohorts train on the CPU or a CUDA GPU",
        path="accelerator",
        value=repr(accelerator),
        fix="Use accelerator: cpu, gpu or auto with fuse:, or drop fuse:.",
    )


def member_bytes(module: Any, sample: torch.Tensor, *, batch_size: int, n_val: int, dtype: torch.dtype) -> int:
    """Device memory one member of a cohort needs: its parameters and their state, and its activations.

    Args:
        module: The member's built module (on the CPU). sample: One input sample (any leading batch of 1).
        batch_size: Samples per training step. n_val: Validation samples (validated in one pass).
        dtype: The cohort's dtype.

    Parameters count :data:`PARAM_COPIES` times; activations (the elements every leaf module outputs for
    one sample, measured by running ``sample`` through ``module``) :data:`TRAIN_ACTIVATION_COPIES` times
    per training sample, and once per validation sample (validation keeps no gradients).
    """
    n_params = sum(p.numel() for p in module.parameters())
    outputs: list[int] = []

    def count(_: Any, __: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            outputs.append(out.numel())

    leaves = [m for m in module.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            first = next(module.parameters(), None)
            module(sample[:1].to(first.dtype if first is not None else sample.dtype))
    finally:
        module.train(was_training)
        for hook in hooks:
            hook.remove()
    per_sample = sum(outputs)
    size = torch.empty((), dtype=dtype).element_size()
    elements = PARAM_COPIES * n_params + per_sample * (TRAIN_ACTIVATION_COPIES * batch_size + n_val)
    return int(size * elements)


def default_capacity(
    device: str | torch.device = "cpu",
    *,
    per_member: int | None = None,
    free_bytes: int | None = None,
    data_bytes: int = 0,
) -> int:
    """``fuse: auto``: how many members to train at once on ``device``.

    On the CPU: ``max(8, 16 * os.cpu_count())`` (a few dozen members saturate the cores; a larger K only
    makes each epoch longer). On a CUDA device: the members that fit in :data:`HEADROOM` of its free
    memory once the data is there, ``(HEADROOM * free_bytes - data_bytes) // per_member``, between 1
    and :data:`MAX_AUTO`. ``per_member`` is :func:`member_bytes` of a member; without it (no model
    built yet) 64 MiB per member and at least 32. ``free_bytes`` defaults to what CUDA reports free now.
    An out-of-memory step halves K anyway (see :func:`tunebridge.fused._epoch.run_epoch`).
    """
    device = torch.device(device)
    if device.type != "cuda" or (free_bytes is None and not torch.cuda.is_available()):
        return max(8, 16 * (os.cpu_count() or 1))
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    if per_member is None:
        return int(max(32, min(MAX_AUTO, free_bytes // (64 * 2**20))))
    usable = HEADROOM * free_bytes - data_bytes
    return int(max(1, min(MAX_AUTO, usable // max(1, per_member))))


def auto_capacity(member: Member, device: torch.device, dtype: torch.dtype) -> int:
    """``fuse: auto`` for a run whose first member is ``member``: :func:`default_capacity` on ``device``.

    On a CUDA device, from its free memory, the data's size and :func:`member_bytes` of ``member`` (its
    parameter count, optimizer state, and activations for one batch and for validation).
    """
    if device.type != "cuda":
        return default_capacity(device)
    dm = member.datamodule
    dm.setup()
    x, x_val = dm.train_set.x, dm.val_set.x
    size = torch.empty((), dtype=dtype).element_size()
    data = size * (x.numel() + x_val.numel()) + 8 * (len(x) + len(x_val))
    per = member_bytes(member.module, x, batch_size=member.signature.batch_size, n_val=len(x_val), dtype=dtype)
    return default_capacity(device, per_member=per, data_bytes=data)
