"""Per-member optimizers and learning-rate schedules over stacked or packed parameters.

Each member keeps the algorithm, hyperparameters, state and step count its own ``torch.optim``
optimizer would have (SGD with momentum, RMSprop, Adam, AdamW, with torch's defaults and formulas), so a
member trains as it would alone. Members of one cohort may use different algorithms.

Parameters come in one of two layouts: *stacked* (first dimension: the member slot, as ``vmap``
cohorts hold them) or *packed* (one 1-D tensor of every member's own elements, unpadded, with
``member_of`` naming each element's slot, as MLP cohorts hold them). Each step updates whole tensors
with per-member coefficients spread over the elements: a handful of operations per step whatever the
number of members, and for packed parameters no arithmetic on padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from tunebridge.lightning import TrainingConfig

__all__ = ["FusedOptimizer", "scheduled_lr"]

_BETAS = (0.9, 0.999)
_EPS = 1e-8
_RMS_ALPHA = 0.99
_Coef = tuple[Tensor, Tensor, Tensor]  # lr, weight decay, momentum, spread over a parameter's elements


def scheduled_lr(training: TrainingConfig, epoch: int, max_epochs: int) -> float:
    """The learning rate of a member's ``epoch`` (0-based), as its Lightning LR scheduler sets it."""
    if training.lr_schedule == "exponential":
        return training.lr * training.lr_gamma**epoch
    if training.lr_schedule == "cosine":
        eta_min = training.lr * training.lr_min_factor
        return eta_min + (training.lr - eta_min) * (1 + math.cos(math.pi * epoch / max_epochs)) / 2
    return training.lr


class FusedOptimizer:
    """One optimizer per member slot over ``params``.

    Args:
        params: Stacked tensors (first dimension: the slot), or one packed 1-D tensor with ``member_of``.
        capacity: The number of slots.
        member_of: For a packed tensor, the slot of each element.
        segments: For a packed tensor, ``(slot, start, stop)`` of each member's elements, in order.

    Hyperparameters and step counts live on the parameters' device. A step never waits for the device:
    which elements each algorithm updates is planned from Python values (the slots' kinds, the segments).
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        capacity: int,
        *,
        member_of: Tensor | None = None,
        segments: Sequence[tuple[int, int, int]] = (),
    ) -> None:
        self.capacity = capacity
        self.kind: list[str | None] = [None] * capacity
        dtype, device = params[0].dtype, params[0].device
        self.lr = torch.zeros(capacity, dtype=dtype, device=device)
        self.momentum = torch.zeros(capacity, dtype=dtype, device=device)
        self.weight_decay = torch.zeros(capacity, dtype=dtype, device=device)
        self.steps = torch.zeros(capacity, dtype=torch.long, device=device)
        self._plan: list[tuple[str, slice | Tensor | None, list[_Coef]]] | None = None  # rebuilt on change
        self.rebind(params, member_of=member_of, segments=segments)

    def rebind(
        self,
        params: Sequence[Tensor],
        *,
        member_of: Tensor | None = None,
        segments: Sequence[tuple[int, int, int]] = (),
        buf: Sequence[Tensor] | None = None,
        sq: Sequence[Tensor] | None = None,
    ) -> None:
        """Train new parameter tensors (a repacked cohort), with their state (default: zeros)."""
        self.params = list(params)
        self.member_of = member_of
        self.segments = list(segments)
        self.buf = list(buf) if buf is not None else [torch.zeros_like(p) for p in self.params]
        self.sq = list(sq) if sq is not None else [torch.zeros_like(p) for p in self.params]
        self._plan = None

    def _spread(self, values: Tensor, like: Tensor, sel: slice | Tensor | None) -> Tensor:
        """Per-slot ``values`` as a tensor that broadcasts against ``like[sel]``'s elements."""
        if self.member_of is not None:
            return values[self.member_of[sel] if sel is not None else self.member_of]
        out = values if sel is None else values[sel]
        return out.view((-1,) + (1,) * (like.dim() - 1))

    def set_member(self, slot: int, training: TrainingConfig, lr: float) -> None:
        """A fresh optimizer for a member (new state, step 0)."""
        self.kind[slot] = training.optimizer
        self._plan = None
        self.lr[slot] = lr
        self.momentum[slot] = training.momentum
        self.weight_decay[slot] = training.weight_decay
        self.steps[slot] = 0
        if self.member_of is None:
            for b, s in zip(self.buf, self.sq):
                b[slot] = 0
                s[slot] = 0

    def set_lr(self, slot: int, lr: float) -> None:
        """A member's learning rate from now on (its schedule's next value)."""
        self.lr[slot] = lr
        self._plan = None

    def clear(self, slot: int) -> None:
        """The slot is empty: no updates."""
        self.kind[slot] = None
        self._plan = None

    def _make_plan(self) -> list[tuple[str, slice | Tensor | None, list[_Coef]]]:
        """Per kind: which elements it updates (a range of a packed tensor, slots of a stacked one, or all)."""
        present = [k for k in self.kind if k is not None]
        kinds = sorted(set(present))
        device = self.steps.device
        self._present = torch.tensor([k is not None for k in self.kind], dtype=torch.long, device=device)
        plan: list[tuple[str, slice | Tensor | None]] = []
        if self.member_of is not None:
            # Packed members are ordered by kind (see FusedMLP.pack): each kind is one contiguous range.
            ranges: dict[str, list[tuple[int, int]]] = {}
            for slot, start, stop in self.segments:
                kind = self.kind[slot]
                if kind is not None and stop > start:
                    ranges.setdefault(kind, []).append((start, stop))
            for kind in kinds:
                spans = ranges.get(kind, [])
                if spans:
                    a, b = spans[0][0], spans[-1][1]
                    assert b - a == sum(hi - lo for lo, hi in spans), "packed members must be ordered by optimizer"
                    plan.append((kind, slice(a, b)))
        elif len(kinds) == 1 and len(present) == self.capacity:
            plan.append((kinds[0], None))
        else:
            for kind in kinds:
                chosen = [i for i, k in enumerate(self.kind) if k == kind]
                plan.append((kind, torch.tensor(chosen, device=device)))

        def coef(p: Tensor, sel: slice | Tensor | None) -> _Coef:
            return (
                self._spread(self.lr, p, sel),
                self._spread(self.weight_decay, p, sel),
                self._spread(self.momentum, p, sel),
            )

        return [(kind, sel, [coef(p, sel) for p in self.params]) for kind, sel in plan]

    @torch.no_grad()
    def step(self) -> None:
        """One update of every member present, each with its own algorithm."""
        if self._plan is None:
            self._plan = self._make_plan()
        if not self._plan:
            return
        self.steps += self._present  # no boolean indexing: it would wait for the device
        for n, (p, buf, sq) in enumerate(zip(self.params, self.buf, self.sq)):
            grad = p.grad
            if grad is None:
                continue
            for kind, sel, coefs in self._plan:
                coef = coefs[n]
                if sel is None:
                    w, g, b, s = p, grad, buf, sq
                else:
                    w, g, b, s = p[sel], grad[sel], buf[sel], sq[sel]

                def spread(values: Tensor, like: Tensor = p, sel: slice | Tensor | None = sel) -> Tensor:
                    return self._spread(values, like, sel)

                new_w, new_b, new_s = _update(kind, w, g, b, s, coef, spread, self.steps)
                if sel is None or isinstance(sel, slice):  # views: write in place
                    w.copy_(new_w)
                    b.copy_(new_b)
                    s.copy_(new_s)
                else:
                    p[sel], buf[sel], sq[sel] = new_w, new_b, new_s


def _update(
    kind: str,
    w: Tensor,
    g: Tensor,
    buf: Tensor,
    sq: Tensor,
    coef: tuple[Tensor, Tensor, Tensor],
    spread: Callable[[Tensor], Tensor],
    steps: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """New (parameter, first state, second state) of every element by ``kind``'s torch formula."""
    lr, wd, mom = coef
    if kind in ("sgd", "momentum"):
        g = g + wd * w
        m = torch.where(mom != 0, mom * buf + g, g)
        return w - lr * m, m, sq
    if kind == "rmsprop":
        g = g + wd * w
        s = _RMS_ALPHA * sq + (1 - _RMS_ALPHA) * g * g
        avg = s.sqrt() + _EPS
        m = mom * buf + g / avg
        return torch.where(mom > 0, w - lr * m, w - lr * g / avg), m, s
    # adam, adamw
    if kind == "adamw":
        w = w * (1 - lr * wd)
    else:
        g = g + wd * w
    b1, b2 = _BETAS
    m = b1 * buf + (1 - b1) * g
    v = b2 * sq + (1 - b2) * g * g
    t = steps.to(w.dtype)
    bias1 = spread(1 - b1**t)
    bias2 = spread((1 - b2**t).sqrt())
    denom = v.sqrt() / bias2 + _EPS
    return w - (lr / bias1) * m / denom, m, v
