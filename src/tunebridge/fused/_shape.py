"""The structure of a built-in MLP member, and what a stack of such members costs (useful and paid work)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tunebridge.lightning import ACTIVATION_LAYERS

__all__ = ["MemberShape", "carried", "member_shape", "paid_work", "stack_widths", "work"]


@dataclass(frozen=True)
class MemberShape:
    """The structure of one member, read from its built module (never re-derived from the config)."""

    widths: tuple[int, ...]  # units per hidden layer
    activation: str
    batch_norm: bool
    dropout: float


def member_shape(module: Any) -> MemberShape:
    """The structure of a built-in ``MLPClassifier`` (its ``net``: Linear, BatchNorm?, act, Dropout?, ..., head)."""
    net = module.net
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    acts = [name for m in net for name, cls in ACTIVATION_LAYERS.items() if type(m) is cls]
    drops = [m.p for m in net if isinstance(m, torch.nn.Dropout)]
    return MemberShape(
        widths=tuple(lin.out_features for lin in linears[:-1]),
        activation=acts[0] if acts else "relu",
        batch_norm=any(isinstance(m, torch.nn.BatchNorm1d) for m in net),
        dropout=float(drops[0]) if drops else 0.0,
    )


def carried(shape: MemberShape, depth: int) -> tuple[int, ...]:
    """The widths a member needs in each of ``depth`` stacked layers (its last one carried to the head)."""
    return shape.widths + (shape.widths[-1],) * (depth - len(shape.widths))


def stack_widths(shapes: list[MemberShape]) -> tuple[int, ...]:
    """The smallest per-layer widths of a stack that holds every one of ``shapes``."""
    depth = max(len(s.widths) for s in shapes)
    return tuple(max(w) for w in zip(*(carried(s, depth) for s in shapes)))


def work(shape: MemberShape, n_features: int, n_classes: int) -> int:
    """Multiply-adds of one sample's forward pass through a member alone (its useful work)."""
    return paid_work(n_features, n_classes, shape.widths)


def paid_work(n_features: int, n_classes: int, widths: tuple[int, ...]) -> int:
    """Multiply-adds of one sample's forward pass through one slot of a stack (what fusion pays)."""
    ins = (n_features, *widths)
    return sum(a * b for a, b in zip(ins, widths)) + widths[-1] * n_classes
