"""K built-in MLPs as one stacked network: per-member widths, depths, activations, batch norm, dropout.

Member ``k`` of a cohort is exactly its own ``MLPClassifier``. Its parameters are kept *packed*: one 1-D
tensor holds every member's own elements, unpadded (so the optimizer and the L1 penalty never touch
padding). Each step scatters them into zero-padded stacked tensors (``[K, in, out]``, a member in the
top-left corner) for one batched matmul per layer. A padded unit stays exactly zero without a mask:
its weights and bias are zero, every activation maps 0 to 0, batch norm maps a constant 0 to its bias
(0), and its gradient is zero because the next layer's padded weights are. A layer beyond a member's
``n_layers`` passes the hidden state through unchanged, and its head reads its last hidden layer.
Activations, batch norm and dropout are chosen per member by masks; batch norm is one
``F.batch_norm`` over ``[B, K * width]`` (each member's units are channels of their own, with their own
running statistics: the formula ``BatchNorm1d`` uses).

Every tensor lives on the cohort's ``device``; what the forward pass branches on (which members have a
layer, batch norm, dropout, which activation) is kept as Python values too, so a step never waits for it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from tunebridge.fused._optim import FusedOptimizer
from tunebridge.fused._shape import MemberShape, carried, member_shape, paid_work, stack_widths, work

__all__ = ["FusedMLP", "MemberShape", "carried", "member_shape", "paid_work", "stack_widths", "work"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
}


@dataclass
class _Row:
    """One member's parameters, unpadded: their places in a padded row, values and optimizer state."""

    pos: Tensor  # positions in one padded row of the stack (``[P]`` layout)
    theta: Tensor  # the values (1-D)
    weight: Tensor  # which of them are Linear weights (the L1 penalty's terms)
    buf: Tensor = field(init=False)
    sq: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.buf = torch.zeros_like(self.theta)
        self.sq = torch.zeros_like(self.theta)


class FusedMLP:
    """The packed parameters, buffers and optimizer of a cohort of K MLPs, and their forward pass.

    Args:
        n_features: Input width. n_classes: Output width.
        widths: Units of each stacked hidden layer (:func:`stack_widths` of the members it is built for).
        capacity: K, the number of member slots.
        dtype, device: Of every tensor of the cohort (a member's weights are copied there once, on load).

    Members are placed in slots (:meth:`load_member`, :meth:`clear`); :meth:`pack` gathers the given
    slots into one trainable leaf (``parameters()``) and the optimizer's state, :meth:`forward` computes
    exactly those slots, and a change of members unpacks first (each member keeps its values and state).
    """

    def __init__(
        self,
        *,
        n_features: int,
        n_classes: int,
        widths: tuple[int, ...],
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> None:
        self.n_features, self.n_classes, self.widths, self.capacity = n_features, n_classes, widths, capacity
        self.depth, self.width = len(widths), max(widths)
        ins = (n_features, *widths[:-1])
        self.dtype, self.device = dtype, device or torch.device("cpu")
        shapes: list[tuple[int, ...]] = [(a, b) for a, b in zip(ins, widths)]
        shapes.append((widths[-1], n_classes))
        shapes += [(w,) for w in widths] + [(n_classes,)] + [(w,) for w in widths] * 2
        self._layout: list[tuple[int, tuple[int, ...]]] = []
        offset = 0
        for shape in shapes:
            self._layout.append((offset, shape))
            offset += math.prod(shape)
        self.row_size = offset
        self._base_row = torch.zeros(
            offset, dtype=dtype, device=self.device
        )  # what a padded row holds before a member's values
        for off, shape in self._layout[3 * self.depth + 2 :]:  # batch norm weights start at 1
            self._base_row[off : off + math.prod(shape)] = 1
        self.running_mean = [torch.zeros(capacity, w, dtype=dtype, device=self.device) for w in widths]
        self.running_var = [torch.ones(capacity, w, dtype=dtype, device=self.device) for w in widths]
        self.layer_on = torch.zeros(capacity, self.depth, dtype=torch.bool, device=self.device)  # layers a member has
        self.bn_on = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.dropout = torch.zeros(capacity, dtype=dtype, device=self.device)
        # The same, as Python values: the flags the forward pass branches on are computed from them.
        self.n_layers, self.has_bn, self.p = [0] * capacity, [False] * capacity, [0.0] * capacity
        self.activation: list[str] = ["relu"] * capacity
        self.rows: list[_Row | None] = [None] * capacity
        self.optimizer = FusedOptimizer(
            [torch.zeros(0, dtype=dtype, device=self.device)],
            capacity,
            member_of=torch.zeros(0, dtype=torch.long, device=self.device),
        )
        self.packed: Tensor | None = None
        self.packed_slots: list[int] = []
        self._saved_stats: list[Tensor] | None = None  # batch-norm statistics before the step in progress

    def _split(self, flat: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Weights, biases, batch-norm biases and batch-norm weights: views of ``flat`` (``[rows, P]``)."""
        rows, d = flat.shape[0], self.depth
        # One split, not a slice per tensor: a slice's backward writes its gradient into a zero tensor of
        # the whole leaf (one per slice); split's backward is one cat.
        parts = torch.split(flat, [math.prod(shape) for _, shape in self._layout], dim=1)
        views = [part.view(rows, *shape) for part, (_, shape) in zip(parts, self._layout)]
        return views[: d + 1], views[d + 1 : 2 * d + 2], views[2 * d + 2 : 3 * d + 2], views[3 * d + 2 :]

    def parameters(self) -> list[Tensor]:
        """The one trainable leaf: the packed members' parameters."""
        assert self.packed is not None, "pack() first"
        return [self.packed]

    def _region(self, index: int, rows: int, cols: int) -> Tensor:
        """Positions of the top-left ``rows x cols`` corner of layout entry ``index`` in a padded row."""
        off, shape = self._layout[index]
        width = shape[1] if len(shape) == 2 else 1
        rows_, cols_ = torch.arange(rows, device=self.device), torch.arange(cols, device=self.device)
        return (off + rows_[:, None] * width + cols_[None, :]).flatten()

    @torch.no_grad()
    def load_member(self, slot: int, module: Any, shape: MemberShape) -> None:
        """Put one built ``MLPClassifier``'s weights (its initialisation) into member slot ``slot``."""
        self.clear(slot)
        d = self.depth
        net = module.net
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        norms = [m for m in net if isinstance(m, torch.nn.BatchNorm1d)]
        pos: list[Tensor] = []
        vals: list[Tensor] = []
        weight: list[Tensor] = []

        def put(index: int, rows: int, cols: int, value: Tensor, is_weight: bool) -> None:
            pos.append(self._region(index, rows, cols))
            vals.append(value.detach().reshape(-1).to(self.device, self.dtype))
            weight.append(torch.full((rows * cols,), is_weight, device=self.device))

        for i, lin in enumerate(linears[:-1]):
            out = lin.out_features
            put(i, lin.in_features, out, lin.weight.t(), True)  # torch stores [out, in]; the stack [in, out]
            put(d + 1 + i, 1, out, lin.bias, False)
            self.layer_on[slot, i] = True
            if norms:
                put(2 * d + 2 + i, 1, out, norms[i].bias, False)
                put(3 * d + 2 + i, 1, out, norms[i].weight, False)
                stats: Any = norms[i]  # a BatchNorm1d that tracks running statistics (the default)
                self.running_mean[i][slot, :out] = stats.running_mean.to(self.device, self.dtype)
                self.running_var[i][slot, :out] = stats.running_var.to(self.device, self.dtype)
        head = linears[-1]
        put(d, head.in_features, self.n_classes, head.weight.t(), True)
        put(2 * d + 1, 1, self.n_classes, head.bias, False)
        self.rows[slot] = _Row(torch.cat(pos), torch.cat(vals), torch.cat(weight))
        self.bn_on[slot] = shape.batch_norm
        self.dropout[slot] = shape.dropout
        self.activation[slot] = shape.activation
        self.n_layers[slot], self.has_bn[slot], self.p[slot] = len(linears) - 1, shape.batch_norm, shape.dropout

    @torch.no_grad()
    def clear(self, slot: int) -> None:
        """Empty a slot."""
        self.unpack()
        self.rows[slot] = None
        for t in self.running_mean:
            t[slot] = 0
        for t in self.running_var:
            t[slot] = 1
        self.layer_on[slot] = False
        self.bn_on[slot] = False
        self.dropout[slot] = 0
        self.n_layers[slot], self.has_bn[slot], self.p[slot] = 0, False, 0.0

    @torch.no_grad()
    def pack(self, slots: list[int]) -> None:
        """Train exactly ``slots`` from now on: one leaf of their parameters, and their optimizer state."""
        if self.packed is not None and slots == self.packed_slots:
            return
        self.unpack()
        rows = [self.rows[s] for s in slots]
        assert all(r is not None for r in rows), "only occupied slots can be packed"
        self.packed_slots = list(slots)
        # Rows of the stack follow ``slots``; the packed elements are ordered by optimizer, so that each
        # optimizer updates one contiguous range (no gather, no mask).
        kinds = self.optimizer.kind
        self._order = sorted(range(len(slots)), key=lambda j: (str(kinds[slots[j]]), j))
        present = [(j, r) for j in self._order if (r := rows[j]) is not None]
        self._index = torch.cat([r.pos + j * self.row_size for j, r in present])
        self._row_of = torch.cat([torch.full((len(r.theta),), j, device=self.device) for j, r in present])
        self._segments: dict[int, tuple[int, int]] = {}  # packed row -> its elements (Python: no device sync)
        start = 0
        for j, r in present:
            self._segments[j] = (start, start + len(r.theta))
            start += len(r.theta)
        self._l1_terms = torch.cat([r.weight for _, r in present]).to(self.dtype)
        self._base = self._base_row.repeat(len(slots))
        self.packed = torch.cat([r.theta for _, r in present]).requires_grad_(True)
        idx = torch.tensor(slots, device=self.device)
        member_of = idx[self._row_of]
        buf = torch.cat([r.buf for _, r in present])
        sq = torch.cat([r.sq for _, r in present])
        segments = [(slots[j], a, b) for j, (a, b) in self._segments.items()]
        self.optimizer.rebind([self.packed], member_of=member_of, segments=segments, buf=[buf], sq=[sq])
        self._stats = (
            [m[idx].contiguous() for m in self.running_mean],
            [v[idx].contiguous() for v in self.running_var],
        )
        self._layer_on = self.layer_on[idx]
        self._full = [all(self.n_layers[s] > i for s in slots) for i in range(self.depth)]
        self._bn_on = self.bn_on[idx][:, None, None]
        self._any_bn, self._all_bn = any(self.has_bn[s] for s in slots), all(self.has_bn[s] for s in slots)
        self._keep = (1 - self.dropout[idx])[:, None, None]
        self._any_dropout = any(self.p[s] > 0 for s in slots)
        names = [self.activation[s] for s in slots]
        self._acts = [
            (name, torch.tensor([n == name for n in names], device=self.device)[:, None, None])
            for name in sorted(set(names))
        ]
        starts = [j for j in range(len(names)) if j == 0 or names[j] != names[j - 1]]
        contiguous = len(starts) == len(self._acts)  # each activation on one range of rows
        bounds = [*starts, len(names)]
        self._act_ranges = [(names[a], a, b) for a, b in itertools.pairwise(bounds)] if contiguous else None

    @torch.no_grad()
    def unpack(self) -> None:
        """Give every packed member its values, optimizer state and running statistics back."""
        if self.packed is None:
            return
        in_order = [self.packed_slots[j] for j in self._order]
        lengths = [len(r.theta) for r in (self.rows[s] for s in in_order) if r is not None]
        parts = zip(
            torch.split(self.packed.detach(), lengths),
            torch.split(self.optimizer.buf[0], lengths),
            torch.split(self.optimizer.sq[0], lengths),
        )
        for slot, (theta, buf, sq) in zip(in_order, parts):
            row = self.rows[slot]
            assert row is not None
            row.theta, row.buf, row.sq = theta.clone(), buf.clone(), sq.clone()
        idx = torch.tensor(self.packed_slots, device=self.device)
        for i in range(self.depth):
            self.running_mean[i][idx] = self._stats[0][i]
            self.running_var[i][idx] = self._stats[1][i]
        self.packed, self.packed_slots, self._saved_stats = None, [], None

    @torch.no_grad()
    def member_state(self, slot: int, module: Any) -> dict[str, Tensor]:
        """Member ``slot``'s weights as ``module``'s own ``state_dict`` (unpadded), e.g. for a checkpoint."""
        row_data = self.rows[slot]
        assert row_data is not None
        theta, j = row_data.theta, None
        if self.packed is not None and slot in self.packed_slots:
            j = self.packed_slots.index(slot)
            start, stop = self._segments[j]
            theta = self.packed.detach()[start:stop]
        row = self._base_row.clone()
        row[row_data.pos] = theta
        weights, biases, bn_bias, bn_weight = ([t[0] for t in part] for part in self._split(row[None]))
        if j is None:
            means, variances = [m[slot] for m in self.running_mean], [v[slot] for v in self.running_var]
        else:
            means, variances = [m[j] for m in self._stats[0]], [v[j] for v in self._stats[1]]
        # On the CPU: kept weights and checkpoints do not hold device memory.
        state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        net = module.net
        lin_i = bn_i = 0
        n_linear = sum(isinstance(m, torch.nn.Linear) for m in net)
        for idx, m in enumerate(net):
            if isinstance(m, torch.nn.Linear):
                layer = lin_i if lin_i < n_linear - 1 else self.depth
                w = weights[layer][: m.in_features, : m.out_features].t()
                state[f"net.{idx}.weight"] = w.to("cpu", state[f"net.{idx}.weight"].dtype, copy=True)
                state[f"net.{idx}.bias"] = biases[layer][: m.out_features].to("cpu", w.dtype, copy=True)
                lin_i += 1
            elif isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                for name, src in (
                    ("weight", bn_weight[bn_i]),
                    ("bias", bn_bias[bn_i]),
                    ("running_mean", means[bn_i]),
                    ("running_var", variances[bn_i]),
                ):
                    key = f"net.{idx}.{name}"
                    state[key] = src[:n].to("cpu", state[key].dtype, copy=True)
                bn_i += 1
        return state

    def forward(self, x: Tensor, slots: Sequence[int], *, train: bool) -> Tensor:
        """Logits ``[S, B, C]`` of the members in ``slots`` for inputs ``x`` (``[S, B, n_features]``)."""
        self.pack(list(slots))
        assert self.packed is not None
        if train and self._any_bn and self.device.type != "cpu":
            # A step that runs out of device memory may have updated some layers' statistics: keep them.
            self._saved_stats = [t.clone() for t in (*self._stats[0], *self._stats[1])]
        flat = torch.index_put(self._base, (self._index,), self.packed).view(len(self.packed_slots), self.row_size)
        weights, biases, bn_bias, bn_weight = self._split(flat)
        h = x
        for i in range(self.depth):
            z = torch.baddbmm(biases[i][:, None, :], h, weights[i])
            if self._any_bn:
                z = self._batch_norm(i, z, train, bn_weight[i], bn_bias[i])
            if len(self._acts) == 1:
                a = _ACTIVATIONS[self._acts[0][0]](z)
            elif self._act_ranges is not None:
                a = torch.cat([_ACTIVATIONS[name](z[lo:hi]) for name, lo, hi in self._act_ranges])
            else:
                a = torch.zeros_like(z)
                for name, chosen in self._acts:
                    a = torch.where(chosen, _ACTIVATIONS[name](z), a)
            if train and self._any_dropout:  # independent per member, as nn.Dropout: mask / (1 - p)
                a = a * ((torch.rand_like(a) < self._keep) / self._keep)
            if not self._full[i]:  # members without layer i carry their last hidden state through it
                a = torch.where(self._layer_on[:, i, None, None], a, _fit(h, a.shape[2]))
            h = a
        return torch.baddbmm(biases[-1][:, None, :], h, weights[-1])

    def _batch_norm(self, i: int, z: Tensor, train: bool, gamma: Tensor, beta: Tensor) -> Tensor:
        """``BatchNorm1d`` of every member at once: its units are channels of one ``[B, S * width]`` input."""
        s, b, w = z.shape
        normed = F.batch_norm(
            z.transpose(0, 1).reshape(b, s * w),
            self._stats[0][i].view(-1),
            self._stats[1][i].view(-1),
            gamma.reshape(-1),
            beta.reshape(-1),
            training=train,
            momentum=0.1,
            eps=1e-5,
        )
        out = normed.view(b, s, w).transpose(0, 1)
        return out if self._all_bn else torch.where(self._bn_on, out, z)

    @torch.no_grad()
    def restore_stats(self) -> None:
        """Undo a failed step's updates of the batch-norm statistics (see :meth:`forward`)."""
        if self._saved_stats is not None and self.packed is not None:
            for t, saved in zip((*self._stats[0], *self._stats[1]), self._saved_stats):
                t.copy_(saved)
        self._saved_stats = None

    def l1(self, slots: Sequence[int]) -> Tensor:
        """Per member in ``slots``: the sum of absolute Linear weights, as ``l1_norm`` of the unfused module."""
        self.pack(list(slots))
        assert self.packed is not None
        terms = self.packed.abs() * self._l1_terms
        zeros = torch.zeros(len(self.packed_slots), dtype=terms.dtype, device=self.device)
        return zeros.index_add(0, self._row_of, terms)

    def fits(self, shape: MemberShape) -> bool:
        """Whether a member of this shape fits the stack's layers (its last hidden state carried through)."""
        return len(shape.widths) <= self.depth and all(a <= b for a, b in zip(carried(shape, self.depth), self.widths))


def _fit(h: Tensor, width: int) -> Tensor:
    """A hidden state ``[S, B, w]`` padded with zeros or cut to ``width`` units (cut units are unused)."""
    have = h.shape[2]
    return h if have == width else (F.pad(h, (0, width - have)) if have < width else h[:, :, :width])
