"""Per-member optimizers and learning-rate schedules over stacked parameters.

Each member keeps the algorithm, hyperparameters, state and step count its own ``torch.optim``
optimizer would have (SGD with momentum, RMSprop, Adam, AdamW, with torch's defaults and formulas), so a
member trains as it would alone. Members of one cohort may use different algorithms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from tunebridge.lightning._training import TrainingConfig

__all__ = ["FusedOptimizer", "scheduled_lr"]

_BETAS = (0.9, 0.999)
_EPS = 1e-8
_RMS_ALPHA = 0.99


def scheduled_lr(training: TrainingConfig, epoch: int, max_epochs: int) -> float:
    """The learning rate of a member's ``epoch`` (0-based), as its Lightning LR scheduler sets it."""
    if training.lr_schedule == "exponential":
        return training.lr * training.lr_gamma**epoch
    if training.lr_schedule == "cosine":
        eta_min = training.lr * training.lr_min_factor
        return eta_min + (training.lr - eta_min) * (1 + math.cos(math.pi * epoch / max_epochs)) / 2
    return training.lr


class FusedOptimizer:
    """One optimizer per member slot over the stacked ``params`` (first dimension: the member)."""

    def __init__(self, params: Sequence[Tensor], capacity: int) -> None:
        self.params = list(params)
        self.capacity = capacity
        self.kind: list[str | None] = [None] * capacity
        dtype = self.params[0].dtype
        self.lr = torch.zeros(capacity, dtype=dtype)
        self.momentum = torch.zeros(capacity, dtype=dtype)
        self.weight_decay = torch.zeros(capacity, dtype=dtype)
        self.steps = torch.zeros(capacity, dtype=torch.long)
        self._groups: list[tuple[str, Tensor]] | None = None  # (kind, slots), rebuilt when members change
        self.buf = [torch.zeros_like(p) for p in self.params]  # momentum buffer / Adam's first moment
        self.sq = [torch.zeros_like(p) for p in self.params]  # Adam's second moment / RMSprop's square average

    def set_member(self, slot: int, training: TrainingConfig, lr: float) -> None:
        """A fresh optimizer for a member (new state, step 0)."""
        self.kind[slot] = training.optimizer
        self._groups = None
        self.lr[slot] = lr
        self.momentum[slot] = training.momentum
        self.weight_decay[slot] = training.weight_decay
        self.steps[slot] = 0
        for b, s in zip(self.buf, self.sq):
            b[slot] = 0
            s[slot] = 0

    def clear(self, slot: int) -> None:
        """The slot is empty: no updates."""
        self.kind[slot] = None
        self._groups = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every member present, each with its own algorithm."""
        if self._groups is None:
            by_kind: dict[str, list[int]] = {}
            for slot, kind in enumerate(self.kind):
                if kind is not None:
                    by_kind.setdefault(kind, []).append(slot)
            self._groups = [(kind, torch.tensor(slots)) for kind, slots in by_kind.items()]
            self._present = torch.tensor([k is not None for k in self.kind])
        if not self._groups:
            return
        self.steps[self._present] += 1
        for kind, idx in self._groups:
            for p, b, s in zip(self.params, self.buf, self.sq):
                if p.grad is not None:
                    self._update(kind, idx, p, b, s)

    def _update(self, kind: str, idx: Tensor, p: Tensor, buf: Tensor, sq: Tensor) -> None:
        view = (-1,) + (1,) * (p.dim() - 1)
        lr = self.lr[idx].view(view)
        wd = self.weight_decay[idx].view(view)
        mom = self.momentum[idx].view(view)
        w = p[idx]
        g = p.grad[idx]  # type: ignore[index]
        if kind in ("sgd", "momentum"):
            g = g + wd * w
            m = torch.where(mom != 0, mom * buf[idx] + g, g)
            buf[idx] = m
            p[idx] = w - lr * m
        elif kind == "rmsprop":
            g = g + wd * w
            s = _RMS_ALPHA * sq[idx] + (1 - _RMS_ALPHA) * g * g
            sq[idx] = s
            avg = s.sqrt() + _EPS
            m = mom * buf[idx] + g / avg
            buf[idx] = m
            p[idx] = torch.where(mom > 0, w - lr * m, w - lr * g / avg)
        else:  # adam, adamw
            if kind == "adamw":
                w = w * (1 - lr * wd)
            else:
                g = g + wd * w
            b1, b2 = _BETAS
            m = b1 * buf[idx] + (1 - b1) * g
            v = b2 * sq[idx] + (1 - b2) * g * g
            buf[idx], sq[idx] = m, v
            t = self.steps[idx].to(p.dtype).view(view)
            bias1 = 1 - b1**t
            bias2 = 1 - b2**t
            denom = v.sqrt() / bias2.sqrt() + _EPS
            p[idx] = w - (lr / bias1) * m / denom
