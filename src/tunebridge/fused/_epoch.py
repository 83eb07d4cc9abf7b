"""One epoch of a cohort, whatever trains it (stacked MLPs, one vmapped architecture, a user's module).

:func:`run_epoch` trains the active members on their batches, validates them and lets each member decide
(its end of epoch: :class:`~tunebridge.backends.TrialEpochs`); out of device memory it halves the members
training. :class:`EpochSteps` is what a cohort gives it; the built-in models' data (each member's own order,
cross-entropy plus L1) is one of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor
from torch.nn import functional as F

from tunebridge.backends._preempt import Preempted
from tunebridge.errors import TrialOutOfMemoryError
from tunebridge.fused._optim import FusedOptimizer, scheduled_lr

if TYPE_CHECKING:
    from tunebridge.fused._cohort import Member

__all__ = ["EpochSteps", "device_data", "epoch_order", "run_epoch"]


def epoch_order(generator: torch.Generator, n: int) -> Tensor:
    """One epoch's sample order, drawn as ``RandomSampler`` draws it with a generator.

    ``RandomSampler.__iter__`` draws ``randperm(n)`` for the epoch and then one more for the
    remainder (``num_samples % n``, empty here): both advance the generator.
    """
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)
    return order


def device_data(datamodule: Any, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A built-in datamodule's train and validation tensors on ``device`` (inputs in ``dtype``), moved once."""
    datamodule.setup()
    train, val = datamodule.train_set, datamodule.val_set
    return train.x.to(device, dtype), train.y.to(device), val.x.to(device, dtype), val.y.to(device)


class EpochSteps(Protocol):
    """One epoch of a cohort as :func:`run_epoch` trains it (members by slot, in the order of its ``active``):
    ``batch(step)`` gives the step's batch and its number of samples (None past the last; asked again, the same),
    ``loss(slots, batch)`` each member's training loss ``[len(slots)]``, ``metrics(slots)`` each member's
    validation metrics (read back once); after ``keep(n)``, only the first ``n`` members train."""

    def batch(self, step: int) -> tuple[Any, int] | None: ...
    def loss(self, slots: list[int], batch: Any) -> Tensor: ...
    def metrics(self, slots: list[int]) -> dict[str, list[float]]: ...
    def keep(self, n: int) -> None: ...


class _OwnOrders:
    """The built-in models' :class:`EpochSteps`: each member's own order over the data on the device;
    ``forward(slots, x, train)`` gives logits ``[S, B, C]``, ``l1(slots)`` the members' L1 norms."""

    def __init__(
        self,
        active: list[tuple[int, Member]],
        data: tuple[Tensor, Tensor, Tensor, Tensor],
        *,
        batch_size: int,
        dtype: torch.dtype,
        forward: Callable[[list[int], Tensor, bool], Tensor],
        l1: Callable[[list[int]], Tensor],
    ) -> None:
        self.x, self.y, self.x_val, self.y_val = data
        device = self.y.device
        # Each member's order is drawn with its own CPU generator, as its DataLoader draws it; moved once.
        self.perms = torch.stack([epoch_order(m.generator, len(self.y)) for _, m in active]).to(device)
        self.l1_coef = torch.tensor([m.training.l1 for _, m in active], dtype=dtype, device=device)
        self.l1 = l1 if any(m.training.l1 > 0 for _, m in active) else None
        self.forward, self.batch_size = forward, batch_size

    def batch(self, step: int) -> tuple[Any, int] | None:
        start = step * self.batch_size
        if start >= len(self.y):
            return None
        idx = self.perms[:, start : start + self.batch_size]
        return (self.x[idx], self.y[idx]), int(idx.shape[1])

    def loss(self, slots: list[int], batch: Any) -> Tensor:
        """Per member: the mean cross-entropy of its batch (``x``: ``[S, B, ...]``), plus its L1 penalty."""
        x, y = batch
        logits = self.forward(slots, x, True)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)
        return loss + self.l1_coef * self.l1(slots) if self.l1 is not None else loss

    @torch.no_grad()
    def metrics(self, slots: list[int]) -> dict[str, list[float]]:
        """Per member: validation loss and accuracy over the whole validation set, read back at once."""
        x_val, y_val = self.x_val, self.y_val
        logits = self.forward(slots, x_val.expand(len(slots), *x_val.shape), False)
        val_loss = F.cross_entropy(logits.transpose(1, 2), y_val.expand(len(slots), -1), reduction="none")
        val_acc = (logits.argmax(dim=2) == y_val).to(torch.float64).mean(dim=1)
        losses = torch.stack([row.mean() for row in val_loss])  # each row's own mean, as one member's would be
        return {"val_loss": losses.tolist(), "val_acc": val_acc.tolist()}

    def keep(self, n: int) -> None:
        self.perms, self.l1_coef = self.perms[:n], self.l1_coef[:n]


def run_epoch(
    active: list[tuple[int, Member]],
    data: tuple[Tensor, Tensor, Tensor, Tensor] | EpochSteps,
    *,
    batch_size: int | None,
    params: list[Tensor],
    optimizer: FusedOptimizer,
    snapshot: Callable[[int, Member], dict[str, Tensor]],
    shrink: Callable[[list[tuple[int, Member]]], list[Tensor]],
    dtype: torch.dtype | None = None,
    forward: Callable[[list[int], Tensor, bool], Tensor] | None = None,
    l1: Callable[[list[int]], Tensor] | None = None,
    point: Callable[[int, Member], dict[str, Any]] | None = None,
) -> list[Member]:
    """One epoch of the ``active`` members of a cohort (any kind): train, validate, decide per member.

    ``data`` is the cohort's :class:`EpochSteps`, or the built-in models' data on the device (:func:`device_data`,
    each member in its own order, cross-entropy plus L1: see ``_OwnOrders`` for ``forward`` and ``l1``).
    ``snapshot(slot, member)`` gives a member's weights as its module's ``state_dict``. A step never waits for
    the device: losses and metrics are read back once per epoch. ``point(slot, member)`` gives a member's part
    of the cohort for its resume point (:mod:`tunebridge.fused._resume`).

    Out of device memory (``torch.OutOfMemoryError``) in a forward or backward pass, the members past the
    first half stop, the first half goes on from the failed step (``shrink(kept)`` repacks the cohort
    for them and gives its new parameters): each member's epoch is the one it trains alone. Out of memory
    in an optimizer update, no member's state is whole: all stop. A member alone fails with
    :class:`~tunebridge.errors.TrialOutOfMemoryError`.

    Preempted (SIGTERM) while the members report, every member still reports its epoch (and writes its
    resume point) before the preemption is raised again.

    Returns:
        The members that stopped without a result, for the caller to put back in the queue.
    """
    if isinstance(data, tuple):
        if dtype is None or forward is None or l1 is None or batch_size is None:
            raise TypeError("run_epoch: the built-in models' data needs batch_size, dtype, forward and l1; got None")
        steps: EpochSteps = _OwnOrders(active, data, batch_size=batch_size, dtype=dtype, forward=forward, l1=l1)
    else:
        steps = data
    sums = torch.zeros(len(active), dtype=torch.float64, device=params[0].device)
    dropped: list[Member] = []
    done = seen = size = 0  # batches (and their samples) trained by every member still active; the last's size
    while True:
        slots, updating = [i for i, _ in active], False
        try:
            while (step := steps.batch(done)) is not None:
                batch, size = step
                loss = steps.loss(slots, batch)
                for p in params:
                    p.grad = None
                loss.sum().backward()  # type: ignore[no-untyped-call]
                updating = True
                optimizer.step()
                sums += loss.detach().to(torch.float64) * size
                updating, done, seen = False, done + 1, seen + size
            metrics = steps.metrics(slots)
            train_sums = sums.tolist()
            break
        except torch.OutOfMemoryError as exc:
            message = f"{exc}".splitlines()[0] if f"{exc}" else "out of memory"
        for p in params:
            p.grad = None
        if len(active) == 1:
            active[0][1].error = TrialOutOfMemoryError(
                f"fuse: out of device memory training this trial alone (batch_size={batch_size or size}): {message}"
            )
            return dropped
        if updating:  # an update stopped midway: no member's state is whole
            return dropped + [m for _, m in active]
        half = len(active) // 2
        dropped += [m for _, m in active[half:]]
        active, sums = active[:half], sums[:half]
        steps.keep(half)
        params = shrink(active)
    preempted: Preempted | None = None
    for j, (slot, m) in enumerate(active):
        m.epoch += 1
        if m.training.lr_schedule != "none":  # stepped once per epoch, as Lightning's "interval: epoch" does
            optimizer.set_lr(slot, scheduled_lr(m.training, m.epoch, m.module.max_epochs))
        values = {name: per_member[j] for name, per_member in metrics.items()}
        # Lightning validates before it aggregates the epoch's train_loss, so a trial's report at
        # epoch e carries the train_loss of epoch e-1 (none at epoch 1): the same here.
        if m.train_loss is not None:
            values.setdefault("train_loss", m.train_loss)
        m.train_loss = train_sums[j] / max(seen, 1)
        own_point = functools.partial(point, slot, m) if point is not None else None
        try:
            m.decide(values, functools.partial(snapshot, slot, m), own_point)
        except Preempted as exc:  # the others write their points too
            preempted = preempted or exc
    if preempted is not None:
        raise preempted
    return dropped
