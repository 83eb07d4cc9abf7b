"""Cohorts of members with one architecture, trained with ``torch.func.vmap`` over stacked parameters.

The built-in ConvNet fuses this way: members whose configs build the same layers (blocks, filters,
kernel, pooling, activation) differ in their training hyperparameters only (lr, optimizer, momentum,
weight decay, L1, dropout, schedule), and ``vmap(functional_call(...))`` runs all of them as one batched
computation (batched convolutions become grouped ones). Each member keeps its own optimizer state,
schedule, data order, early stopping and checkpoint, as in :mod:`tunebridge.fused._cohort`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from tunebridge.fused._cohort import Member, run_epoch
from tunebridge.fused._optim import FusedOptimizer, scheduled_lr

__all__ = ["VmapCohort", "architecture"]


def architecture(module: Any) -> tuple[Any, ...]:
    """What members of one vmapped cohort must share: parameter and buffer shapes, and every dropout p.

    ``vmap`` runs every member through one module (the first member's), so whatever is not a parameter
    or a buffer, such as a ``Dropout``'s ``p``, must be equal: members that differ in it form cohorts
    of their own.
    """
    state = module.state_dict()
    shapes = tuple((name, tuple(t.shape)) for name, t in state.items())
    rates = tuple(float(m.p) for m in module.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd))
    return (*shapes, ("dropout", rates))


class VmapCohort:
    """Up to ``capacity`` members of one architecture and signature, trained with one vmapped step."""

    def __init__(self, members: list[Member], *, dtype: torch.dtype) -> None:
        self.signature = members[0].signature
        self.arch = architecture(members[0].module)
        self.base = members[0].module.to(dtype)
        self.dtype = dtype
        self.slots: list[Member | None] = list(members)
        modules = [m.module.to(dtype) for m in members]
        params, buffers = stack_module_state(modules)
        self.names = list(params)
        self.params = [params[n].detach().clone().requires_grad_(True) for n in self.names]
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        # The L1 penalty's terms: weights of Linear and Conv2d layers, as tunebridge's l1_norm counts them.
        kinds = {name: type(mod) for name, mod in self.base.named_modules()}
        self.l1_terms = [
            i
            for i, n in enumerate(self.names)
            if n.endswith(".weight") and kinds.get(n.rsplit(".", 1)[0]) in (torch.nn.Linear, torch.nn.Conv2d)
        ]
        self.optimizer = FusedOptimizer(self.params, len(members))
        for slot, m in enumerate(members):
            self.optimizer.set_member(slot, m.training, scheduled_lr(m.training, 0, m.module.max_epochs))
        dm = members[0].datamodule
        dm.setup()
        self._data = (dm.train_set.x.to(dtype), dm.train_set.y, dm.val_set.x.to(dtype), dm.val_set.y)
        self.useful = self.paid = 0.0

    @property
    def members(self) -> list[Member]:
        return [m for m in self.slots if m is not None]

    def accepts(self, member: Member) -> bool:
        return False  # members are placed when the cohort is formed (one architecture, one round of claims)

    def remove(self, member: Member) -> None:
        slot = self.slots.index(member)
        self.slots[slot] = None
        self.optimizer.clear(slot)

    def _forward(self, slots: Tensor, x: Tensor, *, train: bool) -> Tensor:
        every = len(slots) == len(self.slots)
        params = {n: (p if every else p[slots]) for n, p in zip(self.names, self.params)}
        buffers = {k: (b if every else b[slots]) for k, b in self.buffers.items()}
        self.base.train(train)

        def one(p: dict[str, Tensor], b: dict[str, Tensor], xb: Tensor) -> Tensor:
            out: Tensor = functional_call(self.base, (p, b), (xb,))
            return out

        out: Tensor = vmap(one, randomness="different")(params, buffers, x)
        return out

    def train_epoch(self) -> None:
        """One epoch of every member (own batches), validation, and each member's decisions."""
        active = [(i, m) for i, m in enumerate(self.slots) if m is not None and not m.done]
        if not active:
            return
        self.useful += float(len(self._data[1]) * len(active))
        self.paid += float(len(self._data[1]) * len(active))  # one architecture: no padding
        run_epoch(
            active,
            self._data,
            batch_size=self.signature.batch_size,
            dtype=self.dtype,
            forward=lambda slots, x, train: self._forward(slots, x, train=train),
            l1=self._l1,
            params=self.params,
            optimizer=self.optimizer,
            snapshot=self.member_state,
        )

    def _l1(self, slots: Tensor) -> Tensor:
        """Per member: the sum of absolute Linear and Conv2d weights (as tunebridge's ``l1_norm``)."""
        every = len(slots) == len(self.slots)
        terms = [(self.params[i] if every else self.params[i][slots]) for i in self.l1_terms]
        return torch.stack([t.abs().flatten(1).sum(dim=1) for t in terms]).sum(dim=0)

    @torch.no_grad()
    def member_state(self, slot: int, member: Member) -> dict[str, Tensor]:
        """Member ``slot``'s weights as its module's own ``state_dict``."""
        state = {k: v.clone() for k, v in member.module.state_dict().items()}
        for name, p in zip(self.names, self.params):
            state[name] = p[slot].detach().clone()
        for name, b in self.buffers.items():
            state[name] = b[slot].clone()
        return state
