"""K built-in MLPs as one stacked network: per-member widths, depths, activations, batch norm, dropout.

Member ``k`` of a cohort is exactly its own ``MLPClassifier``: its weights sit in the top-left corner of
zero-padded stacked tensors (``[K, in, out]``), its padded units are masked to zero after every
activation (so they get no gradient and stay zero), a layer beyond its ``n_layers`` passes the hidden
state through unchanged, and its head reads its last hidden layer. Activations, batch norm and dropout
are chosen per member by masks. The forward pass is one batched matmul per layer for the whole cohort.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["FusedMLP", "MemberShape", "member_shape", "paid_work", "work"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
}


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
    acts = [name for m in net for name, cls in _LAYER_NAMES.items() if type(m) is cls]
    drops = [m.p for m in net if isinstance(m, torch.nn.Dropout)]
    return MemberShape(
        widths=tuple(lin.out_features for lin in linears[:-1]),
        activation=acts[0] if acts else "relu",
        batch_norm=any(isinstance(m, torch.nn.BatchNorm1d) for m in net),
        dropout=float(drops[0]) if drops else 0.0,
    )


_LAYER_NAMES = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "gelu": torch.nn.GELU,
    "leaky_relu": torch.nn.LeakyReLU,
}


class FusedMLP:
    """The stacked parameters and buffers of a cohort of K MLPs, and their forward pass.

    Args:
        n_features: Input width. n_classes: Output width.
        depth: Hidden layers of the deepest member. width: Units of the widest hidden layer.
        capacity: K, the number of member slots.
    """

    def __init__(
        self, *, n_features: int, n_classes: int, depth: int, width: int, capacity: int, dtype: torch.dtype
    ) -> None:
        self.n_features, self.n_classes, self.depth, self.width, self.capacity = (
            n_features,
            n_classes,
            depth,
            width,
            capacity,
        )
        k, h = capacity, width

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, dtype=dtype)

        # Every trainable tensor is a view of one flat [K, P] leaf: the optimizer then updates one tensor
        # per step instead of a dozen small ones (on a CPU, op dispatch costs more than the arithmetic).
        shapes: list[tuple[int, ...]] = [(n_features if i == 0 else h, h) for i in range(depth)]
        shapes.append((h, n_classes))
        shapes += [(h,)] * depth + [(n_classes,)] + [(h,)] * depth + [(h,)] * depth
        self._layout: list[tuple[int, tuple[int, ...]]] = []
        offset = 0
        for shape in shapes:
            self._layout.append((offset, shape))
            offset += math.prod(shape)
        self.flat = zeros(k, offset)
        n_w = depth + 1
        self.weight_mask = zeros(offset)  # 1 on Linear weights (the L1 penalty's terms)
        for off, shape in self._layout[:n_w]:
            self.weight_mask[off : off + math.prod(shape)] = 1
        for off, shape in self._layout[2 * n_w + depth :]:  # batch norm weights start at 1
            self.flat[:, off : off + math.prod(shape)] = 1
        self.running_mean = [zeros(k, h) for _ in range(depth)]
        self.running_var = [torch.ones(k, h, dtype=dtype) for _ in range(depth)]
        self.unit_mask = zeros(k, depth, h)  # 1 where a member has the unit
        self.layer_on = torch.zeros(k, depth, dtype=torch.bool)  # layers a member has
        self.bn_on = torch.zeros(k, dtype=torch.bool)
        self.dropout = zeros(k)
        self.activation: list[str] = ["relu"] * k
        self.flat.requires_grad_(True)

    def _split(self, flat: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Weights, biases, batch-norm biases and batch-norm weights: views of ``flat`` (``[rows, P]``)."""
        rows, d = flat.shape[0], self.depth
        views = [flat[:, off : off + math.prod(shape)].view(rows, *shape) for off, shape in self._layout]
        return views[: d + 1], views[d + 1 : 2 * d + 2], views[2 * d + 2 : 3 * d + 2], views[3 * d + 2 :]

    @property
    def weights(self) -> list[Tensor]:
        return self._split(self.flat)[0]

    @property
    def biases(self) -> list[Tensor]:
        return self._split(self.flat)[1]

    @property
    def bn_bias(self) -> list[Tensor]:
        return self._split(self.flat)[2]

    @property
    def bn_weight(self) -> list[Tensor]:
        return self._split(self.flat)[3]

    def parameters(self) -> list[Tensor]:
        """The one trainable leaf: every member's parameters, ``[K, P]``."""
        return [self.flat]

    @torch.no_grad()
    def load_member(self, slot: int, module: Any, shape: MemberShape) -> None:
        """Put one built ``MLPClassifier``'s weights (its initialisation) into member slot ``slot``."""
        self.clear(slot)
        net = module.net
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        norms = [m for m in net if isinstance(m, torch.nn.BatchNorm1d)]
        for i, lin in enumerate(linears[:-1]):
            w = lin.weight.detach().t()  # torch stores [out, in]; the stack multiplies [in, out]
            self.weights[i][slot, : w.shape[0], : w.shape[1]] = w
            self.biases[i][slot, : w.shape[1]] = lin.bias.detach()
            self.unit_mask[slot, i, : w.shape[1]] = 1
            self.layer_on[slot, i] = True
            if norms:
                self.bn_weight[i][slot, : w.shape[1]] = norms[i].weight.detach()
                self.bn_bias[i][slot, : w.shape[1]] = norms[i].bias.detach()
                stats: Any = norms[i]  # a BatchNorm1d that tracks running statistics (the default)
                self.running_mean[i][slot, : w.shape[1]] = stats.running_mean
                self.running_var[i][slot, : w.shape[1]] = stats.running_var
        head = linears[-1]
        w = head.weight.detach().t()
        self.weights[-1][slot, : w.shape[0], :] = w
        self.biases[-1][slot] = head.bias.detach()
        self.bn_on[slot] = shape.batch_norm
        self.dropout[slot] = shape.dropout
        self.activation[slot] = shape.activation

    @torch.no_grad()
    def clear(self, slot: int) -> None:
        """Empty a slot: zero weights, no units (an empty slot computes zeros and gets no gradient)."""
        self.flat[slot] = 0
        for t in self.bn_weight:
            t[slot] = 1
        for t in self.running_mean:
            t[slot] = 0
        for t in self.running_var:
            t[slot] = 1
        self.unit_mask[slot] = 0
        self.layer_on[slot] = False
        self.bn_on[slot] = False
        self.dropout[slot] = 0

    @torch.no_grad()
    def member_state(self, slot: int, module: Any) -> dict[str, Tensor]:
        """Member ``slot``'s weights as ``module``'s own ``state_dict`` (unpadded), e.g. for a checkpoint."""
        state = {k: v.clone() for k, v in module.state_dict().items()}
        net = module.net
        lin_i = bn_i = 0
        n_linear = sum(isinstance(m, torch.nn.Linear) for m in net)
        for idx, m in enumerate(net):
            if isinstance(m, torch.nn.Linear):
                layer = lin_i if lin_i < n_linear - 1 else len(self.weights) - 1
                w = self.weights[layer][slot, : m.in_features, : m.out_features].t()
                state[f"net.{idx}.weight"] = w.to(state[f"net.{idx}.weight"].dtype).clone()
                state[f"net.{idx}.bias"] = self.biases[layer][slot, : m.out_features].to(w.dtype).clone()
                lin_i += 1
            elif isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                for name, src in (
                    ("weight", self.bn_weight),
                    ("bias", self.bn_bias),
                    ("running_mean", self.running_mean),
                    ("running_var", self.running_var),
                ):
                    key = f"net.{idx}.{name}"
                    state[key] = src[bn_i][slot, :n].to(state[key].dtype).clone()
                bn_i += 1
        return state

    def forward(self, x: Tensor, slots: Tensor, *, train: bool) -> Tensor:
        """Logits ``[S, B, C]`` of the members in ``slots`` for inputs ``x`` (``[S, B, n_features]``).

        Only the occupied slots are computed: their parameters are gathered (gradients flow back into
        the stacked tensors at those slots), so an emptied slot costs nothing.
        """
        h = x
        every = len(slots) == self.capacity  # all slots: no gather (and no scatter of the gradient)
        weights, biases, bn_bias, bn_weight = self._split(self.flat if every else self.flat[slots])
        names = [self.activation[s] for s in slots.tolist()]
        acts = sorted(set(names))
        unit_mask = self.unit_mask[slots]
        layer_on = self.layer_on[slots]
        bn_on = self.bn_on[slots]
        drop = self.dropout[slots]
        for i in range(self.depth):
            z = torch.baddbmm(biases[i][:, None, :], h, weights[i])
            if bool(bn_on.any()):
                z = self._batch_norm(i, z, slots, bn_on, train, bn_weight[i], bn_bias[i])
            if len(acts) == 1:
                a = _ACTIVATIONS[acts[0]](z)
            else:
                a = torch.zeros_like(z)
                for name in acts:
                    chosen = torch.tensor([n == name for n in names])[:, None, None]
                    a = torch.where(chosen, _ACTIVATIONS[name](z), a)
            a = a * unit_mask[:, i, None, :]
            if train and bool((drop > 0).any()):
                keep = (1 - drop)[:, None, None].to(a.dtype)
                mask = torch.bernoulli(keep.expand_as(a))
                a = torch.where(keep < 1, a * mask / keep, a)  # independent per member, as nn.Dropout
            h = a if i == 0 else torch.where(layer_on[:, i, None, None], a, h)
        return torch.baddbmm(biases[-1][:, None, :], h, weights[-1])

    def _batch_norm(
        self, i: int, z: Tensor, slots: Tensor, bn_on: Tensor, train: bool, gamma: Tensor, beta: Tensor
    ) -> Tensor:
        if train:
            mean = z.mean(dim=1)
            var = z.var(dim=1, unbiased=False)
            with torch.no_grad():  # BatchNorm1d's running statistics: momentum 0.1, unbiased variance
                n = z.shape[1]
                unbiased = var.detach() * (n / max(n - 1, 1))
                on = bn_on[:, None]
                rm, rv = self.running_mean[i][slots], self.running_var[i][slots]
                self.running_mean[i][slots] = torch.where(on, 0.9 * rm + 0.1 * mean.detach(), rm)
                self.running_var[i][slots] = torch.where(on, 0.9 * rv + 0.1 * unbiased, rv)
        else:
            mean, var = self.running_mean[i][slots], self.running_var[i][slots]
        normed = (z - mean[:, None, :]) / torch.sqrt(var[:, None, :] + 1e-5)
        normed = normed * gamma[:, None, :] + beta[:, None, :]
        return torch.where(bn_on[:, None, None], normed, z)

    def l1(self, slots: Tensor) -> Tensor:
        """Per member in ``slots``: the sum of absolute Linear weights, as ``l1_norm`` of the unfused module."""
        rows = self.flat if len(slots) == self.capacity else self.flat[slots]
        return (rows.abs() * self.weight_mask).sum(dim=1)

    def fits(self, shape: MemberShape) -> bool:
        """Whether a member of this shape fits the stack's depth and width."""
        return len(shape.widths) <= self.depth and max(shape.widths) <= self.width


def work(shape: MemberShape, n_features: int, n_classes: int) -> int:
    """Multiply-adds of one sample's forward pass through a member alone (its useful work)."""
    ins = (n_features, *shape.widths)
    return sum(a * b for a, b in zip(ins, shape.widths)) + shape.widths[-1] * n_classes


def paid_work(n_features: int, n_classes: int, depth: int, width: int) -> int:
    """Multiply-adds of one sample's forward pass through one slot of a stack (what fusion pays)."""
    return n_features * width + (depth - 1) * width * width + width * n_classes
