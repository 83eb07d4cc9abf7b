"""Cohorts of members with one architecture, trained with ``torch.func.vmap`` over stacked parameters.

The built-in ConvNet fuses this way: members whose configs build the same layers (blocks, filters,
kernel, pooling, activation) differ in their training hyperparameters only (lr, optimizer, momentum,
weight decay, L1, dropout, schedule), and ``vmap(functional_call(...))`` runs all of them as one batched
computation (batched convolutions become grouped ones). Each member keeps its own optimizer state,
schedule, data order, early stopping and checkpoint, as in :mod:`tunebridge.fused._cohort`.

The stacked parameters and buffers, the data and one copy of the module that ``vmap`` runs live on the
cohort's ``device``; the members' own modules stay where they were built (their weights are stacked on
the CPU and moved once).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from tunebridge.fused._cohort import Member
from tunebridge.fused._epoch import device_data, run_epoch
from tunebridge.fused._optim import FusedOptimizer, scheduled_lr
from tunebridge.fused._resume import restore_stacked, stacked_state

__all__ = ["StackedCohort", "VmapCohort", "architecture"]


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


class StackedCohort:
    """Members of one module's architecture: their parameters and buffers stacked on ``device``, run through
    one copy of the module under ``vmap``; the base of :class:`VmapCohort` and the user modules' cohorts."""

    def __init__(self, members: list[Member], *, dtype: torch.dtype, device: torch.device | None = None) -> None:
        self.signature = members[0].signature
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self.slots: list[Member | None] = list(members)
        modules = [m.module.to(dtype) for m in members]
        # The module vmap runs (functional_call gives it each member's parameters and buffers); the
        # members' own modules stay where they are.
        self.base = copy.deepcopy(modules[0]).to(self.device, dtype) if self.device.type != "cpu" else modules[0]
        params, buffers = stack_module_state(modules)
        self.names = list(params)
        self.params = [params[n].detach().to(self.device, copy=True).requires_grad_(True) for n in self.names]
        self.buffers = {k: v.detach().to(self.device, copy=True) for k, v in buffers.items()}
        self.optimizer = FusedOptimizer(self.params, len(members))
        self.useful = self.paid = 0.0
        self.requeue: list[Member] = []  # members taken out by an out-of-memory step, for the queue
        self._index: tuple[list[int], Tensor] | None = None  # the last slots indexed, on the device

    @property
    def members(self) -> list[Member]:
        return [m for m in self.slots if m is not None]

    def accepts(self, member: Member) -> bool:
        return False  # members are placed when the cohort is formed (one architecture, one round of claims)

    def remove(self, member: Member) -> None:
        slot = self.slots.index(member)
        self.slots[slot] = None
        self.optimizer.clear(slot)

    def point_state(self, slot: int, member: Member) -> dict[str, Any]:
        """Member ``slot``'s part of the cohort for its resume point (:mod:`tunebridge.fused._resume`)."""
        return stacked_state(self, slot)

    def _restore_members(self) -> None:
        """Members that go on from a resume point take their part back (after their optimizers are set)."""
        for slot, m in enumerate(self.slots):
            if m is not None and m.resumed is not None:
                restore_stacked(self, slot, m.resumed)
                m.resumed = None

    def _slots(self, slots: list[int]) -> Tensor | None:
        """``slots`` as an index on the device (made once per set of slots), or None for every slot."""
        if len(slots) == len(self.slots):
            return None
        if self._index is None or self._index[0] != slots:
            self._index = (list(slots), torch.tensor(slots, device=self.device))
        return self._index[1]

    def _vmapped(
        self,
        net: torch.nn.Module,
        slots: list[int],
        args: tuple[Any, ...],
        *,
        train: bool,
        in_dims: tuple[int | None, ...],
        prefix: str = "",
    ) -> Any:
        """``net(*args)`` for the members in ``slots``, each with its own parameters and buffers (named
        ``prefix`` + the module's names in ``net``); ``in_dims`` says which of ``args`` hold one entry per member."""
        index = self._slots(slots)
        params = {prefix + n: (p if index is None else p[index]) for n, p in zip(self.names, self.params)}
        # Batch norm updates its running statistics in place: in training, in copies (a gather is one)
        # that are written back once the pass has succeeded, so that a pass that runs out of memory
        # changes none, and members that train while others wait keep theirs.
        track = train and bool(self.buffers)
        buffers = {
            prefix + k: b[index] if index is not None else b.clone() if track else b for k, b in self.buffers.items()
        }
        net.train(train)

        def one(p: dict[str, Tensor], b: dict[str, Tensor], *xs: Any) -> Any:
            return functional_call(net, (p, b), xs)

        out = vmap(one, in_dims=(0, 0, *in_dims), randomness="different")(params, buffers, *args)
        if track:
            with torch.no_grad():
                for k, b in self.buffers.items():
                    if index is None:
                        b.copy_(buffers[prefix + k])
                    else:
                        b[index] = buffers[prefix + k]
        return out

    def _run_epoch(self, active: list[tuple[int, Member]], data: Any, **options: Any) -> None:
        """:func:`~tunebridge.fused._epoch.run_epoch` for ``active``; the members it stops go to ``requeue``."""

        def shrink(kept: list[tuple[int, Member]]) -> list[Tensor]:
            for slot in {i for i, _ in active} - {i for i, _ in kept}:
                self.optimizer.clear(slot)  # not updated from now on
            return self.params

        dropped = run_epoch(
            active,
            data,
            params=self.params,
            optimizer=self.optimizer,
            snapshot=self.member_state,
            shrink=shrink,
            point=self.point_state,
            **options,
        )
        for member in dropped:
            self.remove(member)
        self.requeue += dropped

    @torch.no_grad()
    def member_state(self, slot: int, member: Member) -> dict[str, Tensor]:
        """Member ``slot``'s weights as its module's own ``state_dict``, on the CPU (no device memory kept)."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in self._module(member).state_dict().items()}
        for name, p in zip(self.names, self.params):
            state[name] = p[slot].detach().to("cpu", copy=True)
        for name, b in self.buffers.items():
            state[name] = b[slot].to("cpu", copy=True)
        return state

    def _module(self, member: Member) -> Any:
        """The module whose ``state_dict`` gives a member's checkpoint its entries that are not stacked."""
        return member.module


class VmapCohort(StackedCohort):
    """Up to ``capacity`` members of one architecture and signature, trained with one vmapped step."""

    def __init__(self, members: list[Member], *, dtype: torch.dtype, device: torch.device | None = None) -> None:
        super().__init__(members, dtype=dtype, device=device)
        # The L1 penalty's terms: weights of Linear and Conv2d layers, as tunebridge's l1_norm counts them.
        kinds = {name: type(mod) for name, mod in self.base.named_modules()}
        self.l1_terms = [
            i
            for i, n in enumerate(self.names)
            if n.endswith(".weight") and kinds.get(n.rsplit(".", 1)[0]) in (torch.nn.Linear, torch.nn.Conv2d)
        ]
        for slot, m in enumerate(members):  # a resumed member is at its epoch's learning rate
            self.optimizer.set_member(slot, m.training, scheduled_lr(m.training, m.epoch, m.module.max_epochs))
        self._restore_members()
        self._data = device_data(members[0].datamodule, self.device, dtype)

    def _forward(self, slots: list[int], x: Tensor, *, train: bool) -> Tensor:
        out: Tensor = self._vmapped(self.base, slots, (x,), train=train, in_dims=(0,))
        return out

    def train_epoch(self) -> None:
        """One epoch of every member (own batches), validation, and each member's decisions."""
        active = [(i, m) for i, m in enumerate(self.slots) if m is not None and not m.done]
        if not active:
            return
        self.useful += float(len(self._data[1]) * len(active))
        self.paid += float(len(self._data[1]) * len(active))  # one architecture: no padding
        self._run_epoch(
            active,
            self._data,
            batch_size=self.signature.batch_size,
            dtype=self.dtype,
            forward=lambda slots, x, train: self._forward(slots, x, train=train),
            l1=self._l1,
        )

    def _l1(self, slots: list[int]) -> Tensor:
        """Per member: the sum of absolute Linear and Conv2d weights (as tunebridge's ``l1_norm``)."""
        index = self._slots(slots)
        terms = [(self.params[i] if index is None else self.params[i][index]) for i in self.l1_terms]
        return torch.stack([t.abs().flatten(1).sum(dim=1) for t in terms]).sum(dim=0)
