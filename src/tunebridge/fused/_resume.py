"""A fused member's resume point: its whole training state, on its own, so that it goes on in any cohort.

When its reporter asks (:class:`~tunebridge.backends.Reporter` ``checkpoint(folder)``, at the end of an
epoch), a member writes ``folder/checkpoint.ckpt`` (:data:`~tunebridge.backends.CHECKPOINT_FILE`) with
``torch.save``: only tensors and plain containers, so ``torch.load(..., weights_only=True)`` reads it.

- its own part: the epoch, the train loss it reports with the next epoch, its data order's generator,
  its end-of-epoch state (history, early stopping's best value and wait) and its kept weights;
- its part of the cohort (``"cohort"``), free of the cohort's layout: a stacked MLP's parameters, optimizer
  state and running statistics in the member's own element order (unpadded: the same in any stack), or
  a vmapped member's slice of every stacked parameter, buffer and optimizer state; its optimizer step
  count; for a user's module, the shared training loader's state (its datamodule's ``state_dict()``).

:func:`load_point` gives a freshly built member that state before it joins a cohort; the cohort applies
its part when it takes the member (:func:`restore_mlp`, :func:`restore_stacked`). The learning rate is
its schedule's value at the member's epoch, as the member would have had it.

Not restored: dropout masks. A cohort draws them for all its members at once from the process's random
state (the stacked MLP one ``rand_like`` per layer, ``vmap(..., randomness="different")`` one batched draw),
so no member has a stream of its own: a member with dropout goes on with fresh masks (its curve goes on
statistically as before, not bit for bit). Without dropout, a resumed member trains exactly the curve it
would have trained.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tunebridge.backends import CHECKPOINT_FILE, ResumePlan

if TYPE_CHECKING:
    from tunebridge.fused._cohort import Member
    from tunebridge.fused._mlp import FusedMLP
    from tunebridge.fused._vmap import StackedCohort

__all__ = [
    "FORMAT",
    "fused_plan",
    "load_point",
    "mlp_state",
    "restore_mlp",
    "restore_stacked",
    "save_point",
    "stacked_state",
]

#: The layout of a member's point (a point of another layout is refused, never half loaded).
FORMAT = 1


def fused_plan(plan: ResumePlan | None) -> ResumePlan | None:
    """The study's resume plan as fused members write and read it: each point records ``"fused": true`` in its
    ``resume.json`` (and a fused run requires it), so that a run that trains its trials otherwise can refuse it."""
    return None if plan is None else dataclasses.replace(plan, meta={**plan.meta, "fused": True})


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def save_point(member: Member, cohort_part: Callable[[], dict[str, Any]], folder: str) -> None:
    """Write ``member``'s resume point into ``folder`` (its reporter's ``checkpoint(folder)``)."""
    epochs = member.trial_epochs
    state = {
        "format": FORMAT,
        "epoch": int(member.epoch),
        "train_loss": member.train_loss,
        "generator": member.generator.get_state(),
        "history": {int(e): {str(k): float(v) for k, v in m.items()} for e, m in epochs.history.items()},
        "best": float(epochs.best),
        "wait": int(epochs.wait),
        "early_stopped": bool(epochs.early_stopped),
        "reason": epochs.reason,
        "kept": {k: _cpu(v) for k, v in member.kept.items()} if member.kept is not None else None,
        "cohort": cohort_part(),
    }
    torch.save(state, os.path.join(folder, CHECKPOINT_FILE))


def load_point(member: Member, path: str) -> None:
    """Give a freshly built ``member`` the state of its resume point at ``path``; its cohort part waits in
    ``member.resumed`` for the cohort that takes it.

    Raises:
        ValueError: The file is not a fused member's point of this layout.
    """
    why = f"fuse: {path} is not a fused member's resume point (layout {FORMAT}); did `fuse:` change since?"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{why}: {type(exc).__name__}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or "cohort" not in state:
        raise ValueError(why)
    member.epoch = int(state["epoch"])
    member.train_loss = None if state["train_loss"] is None else float(state["train_loss"])
    member.generator.set_state(state["generator"])
    epochs = member.trial_epochs
    epochs.history = {int(e): dict(m) for e, m in state["history"].items()}
    epochs.best, epochs.wait = float(state["best"]), int(state["wait"])
    epochs.early_stopped, epochs.reason = bool(state["early_stopped"]), state["reason"]
    member.kept = state["kept"] if member.keep else None
    member.resumed = state["cohort"]


def _check(part: dict[str, Any], kind: str) -> None:
    if part.get("kind") != kind:
        raise ValueError(f"fuse: a resume point of a {part.get('kind')} member cannot go on in a {kind} cohort")


def _fill(target: torch.Tensor, value: torch.Tensor, what: str) -> None:
    if target.shape != value.shape:
        raise ValueError(f"fuse: the resume point's {what} has shape {tuple(value.shape)}, not {tuple(target.shape)}")
    target.copy_(value.to(target.device, target.dtype))


@torch.no_grad()
def mlp_state(net: FusedMLP, slot: int, widths: tuple[int, ...]) -> dict[str, Any]:
    """Stacked MLP member ``slot``'s part (``widths``: its hidden layers' units), packed or not."""
    row = net.rows[slot]
    assert row is not None
    theta, buf, sq, j = row.theta, row.buf, row.sq, None
    if net.packed is not None and slot in net.packed_slots:
        j = net.packed_slots.index(slot)
        start, stop = net._segments[j]
        theta, buf, sq = (t[start:stop] for t in (net.packed, net.optimizer.buf[0], net.optimizer.sq[0]))
    means = [m[slot] for m in net.running_mean] if j is None else [m[j] for m in net._stats[0]]
    variances = [v[slot] for v in net.running_var] if j is None else [v[j] for v in net._stats[1]]
    return {
        "kind": "mlp",
        "theta": _cpu(theta),
        "buf": _cpu(buf),
        "sq": _cpu(sq),
        "running_mean": [_cpu(m[:w]) for m, w in zip(means, widths)],
        "running_var": [_cpu(v[:w]) for v, w in zip(variances, widths)],
        "steps": int(net.optimizer.steps[slot]),
    }


@torch.no_grad()
def restore_mlp(net: FusedMLP, slot: int, part: dict[str, Any]) -> None:
    """Put a member's part back into ``slot`` (just loaded by ``load_member``, its optimizer just set)."""
    _check(part, "mlp")
    net.unpack()
    row = net.rows[slot]
    assert row is not None
    for name in ("theta", "buf", "sq"):
        value = part[name]
        if value.shape != row.theta.shape:
            raise ValueError(f"fuse: the resume point's {name} has {value.numel()} elements, not {row.theta.numel()}")
        setattr(row, name, value.to(net.device, net.dtype))
    for i, (mean, var) in enumerate(zip(part["running_mean"], part["running_var"])):
        _fill(net.running_mean[i][slot, : len(mean)], mean, f"running_mean {i}")
        _fill(net.running_var[i][slot, : len(var)], var, f"running_var {i}")
    net.optimizer.steps[slot] = int(part["steps"])


@torch.no_grad()
def stacked_state(cohort: StackedCohort, slot: int) -> dict[str, Any]:
    """Vmapped member ``slot``'s part: its slice of every stacked parameter, buffer and optimizer state."""
    opt = cohort.optimizer
    return {
        "kind": "stacked",
        "params": {n: _cpu(p[slot]) for n, p in zip(cohort.names, cohort.params)},
        "buf": {n: _cpu(b[slot]) for n, b in zip(cohort.names, opt.buf)},
        "sq": {n: _cpu(s[slot]) for n, s in zip(cohort.names, opt.sq)},
        "buffers": {k: _cpu(b[slot]) for k, b in cohort.buffers.items()},
        "steps": int(opt.steps[slot]),
    }


@torch.no_grad()
def restore_stacked(cohort: StackedCohort, slot: int, part: dict[str, Any]) -> None:
    """Put a member's part back into ``slot`` of a vmapped cohort (its optimizer just set)."""
    _check(part, "stacked")
    opt = cohort.optimizer
    if set(part["params"]) != set(cohort.names) or set(part["buffers"]) != set(cohort.buffers):
        raise ValueError("fuse: the resume point's parameters are not the module's")
    for n, p, b, s in zip(cohort.names, cohort.params, opt.buf, opt.sq):
        _fill(p[slot], part["params"][n], n)
        _fill(b[slot], part["buf"][n], f"optimizer state of {n}")
        _fill(s[slot], part["sq"][n], f"optimizer state of {n}")
    for k, b in cohort.buffers.items():
        _fill(b[slot], part["buffers"][k], k)
    opt.steps[slot] = int(part["steps"])
