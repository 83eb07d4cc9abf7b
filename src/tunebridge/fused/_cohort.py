"""A cohort: K members trained epoch by epoch as one stacked MLP, each one still its own trial.

Every member keeps what its own Lightning run would have: its data order (a generator seeded like the
datamodule's), its optimizer and schedule, its epoch count and budget, its early stopping, its
history and its objective epoch's weights. Members may join a cohort at any time (a freed slot is
refilled, a member goes on from its resume point: :mod:`tunebridge.fused._resume`), so they are at different
epochs; each one reads its own batch from the shared data.

A cohort trains on one ``device``: its data is moved there once, each member's data order is still drawn
on the CPU with its own generator (so it is the order the member gets alone) and moved there per epoch.
A step that runs out of device memory halves the members training (see :func:`tunebridge.fused._epoch.run_epoch`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from tunebridge.backends import EarlyStopRule, FollowsTrialEpochs, Reporter, TrialEpochs, TrialOutcome
from tunebridge.backends._epoch import N_PARAMS, count_params
from tunebridge.fused._epoch import device_data, run_epoch
from tunebridge.fused._mlp import FusedMLP, MemberShape, member_shape, paid_work, work
from tunebridge.fused._optim import scheduled_lr
from tunebridge.fused._resume import load_point, mlp_state, restore_mlp, save_point
from tunebridge.lightning import TrainingConfig
from tunebridge.schema import EarlyStoppingSpec, Scalar

__all__ = ["Cohort", "Member", "Signature", "signature_of"]


@dataclass(frozen=True)
class Signature:
    """What members of one cohort share: the data (and its batch size) and the input/output widths."""

    data: tuple[str, int, float]
    batch_size: int
    n_features: int
    n_classes: int


def signature_of(module: Any, datamodule: Any) -> Signature:
    """The cohort signature of a built ``(MLPClassifier, datamodule)`` pair."""
    hp = module.hparams
    n_features = int(hp["n_features"]) if "n_features" in hp else int(math.prod(hp["input_shape"]))
    return Signature(
        data=(type(datamodule).__name__.split("__")[0], int(datamodule.seed), float(datamodule.val_fraction)),
        batch_size=int(datamodule.batch_size),
        n_features=n_features,
        n_classes=int(hp["n_classes"]),
    )


@dataclass
class Member(FollowsTrialEpochs):
    """One trial inside a cohort.

    Its end-of-epoch decisions (metric check, history, kept epoch, early stopping, pruning) are its
    :class:`~tunebridge.backends._epoch.TrialEpochs`', the same object an unfused trial's report
    callback asks; ``history``, ``pruned`` and ``early_stopped`` read it.
    """

    config: dict[str, Scalar]
    module: Any  # the member's own MLPClassifier, built as the unfused trial builds it (its initial weights)
    datamodule: Any
    reporter: Reporter | None
    epochs: int  # its budget (the config's `epochs` can only lower the run's)
    metric: str
    mode: str
    rule: str = "best_epoch"
    early_stopping: EarlyStoppingSpec | None = None
    keep: bool = False
    handle: Any = None  # the backend's own (the claimed trial and its heartbeat)
    training: TrainingConfig = field(init=False)
    shape: MemberShape | None = field(init=False)  # an MLP's widths (None for other models)
    signature: Signature = field(init=False)
    generator: torch.Generator = field(init=False)
    trial_epochs: TrialEpochs = field(init=False)
    epoch: int = 0
    kept: dict[str, Tensor] | None = None
    error: BaseException | None = None
    train_loss: float | None = None
    resumed: dict[str, Any] | None = None  # its part of a cohort from a resume point, until a cohort takes it

    def __post_init__(self) -> None:
        self.training = TrainingConfig.from_config(self.config)
        self.shape = member_shape(self.module) if type(self.module).__name__.startswith("MLPClassifier") else None
        self.signature = signature_of(self.module, self.datamodule)
        # The datamodule's train loader draws one permutation per epoch from a generator seeded with its seed.
        self.generator = torch.Generator().manual_seed(int(self.datamodule.seed))
        self._start_early_stopping()

    def _start_early_stopping(self) -> None:
        """No epoch seen yet: a fresh :class:`TrialEpochs` (history, early stopping) for this member."""
        self.trial_epochs = TrialEpochs(
            self.metric,
            self.mode,
            rule=self.rule,
            budget=self.epochs,
            early_stopping=EarlyStopRule.of(self.early_stopping, metric=self.metric, mode=self.mode),
        )
        self.trial_epochs.constants = {N_PARAMS: count_params(self.module)}

    @property
    def done(self) -> bool:
        return self.error is not None or self.pruned or self.early_stopped or self.epoch >= self.epochs

    def outcome(self) -> TrialOutcome:
        """The trial's outcome, by the same rules as the Lightning runner's."""
        return self.trial_epochs.outcome()

    def load(self, path: str) -> None:
        """Go on from the resume point at ``path`` (before joining a cohort): see :mod:`tunebridge.fused._resume`."""
        load_point(self, path)

    def decide(
        self,
        metrics: dict[str, float],
        snapshot: Callable[[], dict[str, Tensor]],
        point: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """After one epoch: the decisions of :class:`TrialEpochs`, and what they ask for (snapshot, report).

        ``point()`` gives the member's part of its cohort: with it, the reporter may have a resume point written.
        """
        try:
            decision = self.trial_epochs.validated(self.epoch, metrics)
        except Exception as exc:  # the member fails; the others go on
            self.error = exc
            return
        metrics = self.trial_epochs.history[self.epoch]  # as reported: with n_params (its constants)
        if self.keep and decision.keep:
            self.kept = snapshot()
        save = functools.partial(save_point, self, point) if point is not None else None
        asked = self.reporter is not None and self.reporter.report(self.epoch, metrics, save)
        self.trial_epochs.reported(self.epoch, asked)


class Cohort:
    """Up to ``capacity`` members of one signature, trained together on ``device`` (default: the CPU)."""

    def __init__(
        self,
        signature: Signature,
        *,
        widths: tuple[int, ...],
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> None:
        self.signature = signature
        self.device = device or torch.device("cpu")
        self.net = FusedMLP(
            n_features=signature.n_features,
            n_classes=signature.n_classes,
            widths=widths,
            capacity=capacity,
            dtype=dtype,
            device=self.device,
        )
        self.optimizer = self.net.optimizer
        self.slots: list[Member | None] = [None] * capacity
        self.limit = capacity  # at most this many members (halved when a step runs out of memory)
        self.dtype = dtype
        self.useful = 0.0
        self.paid = 0.0
        self.requeue: list[Member] = []  # members taken out by an out-of-memory step, for the queue
        self._data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    @property
    def members(self) -> list[Member]:
        return [m for m in self.slots if m is not None]

    def free(self) -> int:
        return max(0, min(sum(m is None for m in self.slots), self.limit - len(self.members)))

    def accepts(self, member: Member) -> bool:
        """Same data and batch size, a shape that fits the stack's layers, and a free slot.

        Only MLP members (with a shape) are trained by this stacked MLP. Which members form a cohort is
        decided by :func:`tunebridge.fused._loop.group_members` (it bounds the padding); a member that
        comes later to refill a slot pays at most what the freed slot paid.
        """
        return (
            member.shape is not None  # stacked MLPs only (other models go to vmapped cohorts)
            and member.signature == self.signature
            and self.net.fits(member.shape)
            and self.free() > 0
        )

    def add(self, member: Member) -> None:
        slot = self.slots.index(None)
        self.slots[slot] = member
        assert member.shape is not None  # accepts() admits MLP members only
        self.net.load_member(slot, member.module, member.shape)
        lr = scheduled_lr(member.training, member.epoch, member.module.max_epochs)  # epoch > 0: a resumed member
        self.optimizer.set_member(slot, member.training, lr)
        if member.resumed is not None:
            restore_mlp(self.net, slot, member.resumed)
            member.resumed = None
        if self._data is None:
            self._data = device_data(member.datamodule, self.device, self.dtype)

    def remove(self, member: Member) -> None:
        slot = self.slots.index(member)
        self.slots[slot] = None
        self.net.clear(slot)
        self.optimizer.clear(slot)

    def train_epoch(self) -> None:
        """One epoch of every member, each with its own batches; then validation and its decisions."""
        assert self._data is not None
        active = [(i, m) for i, m in enumerate(self.slots) if m is not None and not m.done]
        if not active:
            return
        # Members of one activation side by side: the stack applies each activation to a range of rows.
        active.sort(key=lambda im: (im[1].shape.activation if im[1].shape else "", im[0]))
        sig, n = self.signature, len(self._data[1])
        self.useful += float(sum(work(m.shape, sig.n_features, sig.n_classes) for _, m in active if m.shape)) * n
        self.paid += float(paid_work(sig.n_features, sig.n_classes, self.net.widths)) * n * len(active)
        self.net.pack([i for i, _ in active])

        def shrink(kept: list[tuple[int, Member]]) -> list[Tensor]:
            self.net.restore_stats()  # the failed step's batch-norm updates
            self.net.pack([i for i, _ in kept])
            return self.net.parameters()

        dropped = run_epoch(
            active,
            self._data,
            batch_size=sig.batch_size,
            dtype=self.dtype,
            forward=lambda slots, x, train: self.net.forward(x, slots, train=train),
            l1=self.net.l1,
            params=self.net.parameters(),
            optimizer=self.optimizer,
            snapshot=lambda slot, m: self.net.member_state(slot, m.module),
            shrink=shrink,
            point=lambda slot, m: mlp_state(self.net, slot, m.shape.widths if m.shape else ()),
        )
        if dropped:
            self.limit = max(1, len(active) - len(dropped))
            for member in dropped:
                self.remove(member)
            self.requeue += dropped
