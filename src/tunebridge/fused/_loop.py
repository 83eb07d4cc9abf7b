"""Fused cohorts as an executor of the one trial loop (:func:`tunebridge.backends.optuna.run_loop`).

The loop claims and starts trials, fails, settles or re-queues each one, keeps checkpoints, checks limits
and shows progress, as for any executor; :class:`FusedExecutor` builds each started trial's model, places
the members in cohorts and trains every cohort one epoch per step. Each member is an ordinary trial of
the study, reported per epoch and pruned by the study's pruner. A member that ends frees its slot, and
the loop refills it with the next claimed trial, so cohorts stay full until the queue is empty.

Cohorts train on the run's device (``settings.accelerator``: see :func:`fused_device`). A step that runs
out of device memory halves its cohort: the members it stops go back in the queue (outside the budget),
finished members are untouched, and the run's K halves. The members of a cohort report an epoch in one
pass over the study (:func:`tunebridge.backends.optuna.one_read_per_pass`), and members that share data
share its tensors.

With resume points on, each member writes its own at the end of its epochs (its whole training state,
:mod:`tunebridge.fused._resume`), and a re-queued member goes on from it in whatever cohort it joins next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from tunebridge import _record
from tunebridge.backends import (
    Progress,
    ResumePlan,
    StudyLimits,
    StudyOptions,
    WorkerOptions,
    checkpoint_path,
    silent,
    trial_epochs,
)
from tunebridge.backends._preempt import Preempted
from tunebridge.backends.optuna import Finished, Slot, one_read_per_pass, run_loop
from tunebridge.fused._cohort import Cohort, Member
from tunebridge.fused._export import save_member_checkpoint
from tunebridge.fused._memory import auto_capacity, default_capacity, fused_device
from tunebridge.fused._mlp import MemberShape, paid_work, stack_widths, work
from tunebridge.fused._resume import fused_plan
from tunebridge.fused._user import UserCohort, UserMember, is_user_module
from tunebridge.fused._vmap import VmapCohort, architecture
from tunebridge.lightning import TrialSettings, seed_trial

__all__ = ["FuseStats", "FusedExecutor", "auto_capacity", "default_capacity", "run_fused"]

Builder = Callable[[dict[str, Any]], tuple[Any, Any]]


@dataclass
class FuseStats:
    """What fusion did in one run: members trained, cohorts formed, useful work over work paid."""

    members: int = 0
    cohorts: int = 0
    useful: float = 0.0
    paid: float = 0.0
    capacity: int = 0
    singles: list[str] = field(default_factory=list)
    halvings: int = 0  # steps that ran out of device memory (each halved K)

    @property
    def efficiency(self) -> float:
        return self.useful / self.paid if self.paid else float("nan")


def _seed_before_build(settings: TrialSettings, config: dict[str, Any]) -> None:
    """The seeding the unfused objective does before ``build`` (python, numpy, torch, Lightning's env)."""
    seed_trial(settings.seed, config)


class FusedExecutor:
    """Trains the loop's trials in fused cohorts of at most ``capacity`` members in all.

    Args:
        capacity: K, or ``"auto"``: sized from the first member built (:func:`auto_capacity`).
        device: Where the cohorts train.
    """

    def __init__(
        self,
        study: optuna.Study,
        build: Builder,
        settings: TrialSettings,
        *,
        capacity: int | str,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.study, self.build, self.settings = study, build, settings
        self.dtype, self.device = dtype, device
        self.auto = capacity == "auto"
        self.limit = 1 if self.auto else int(capacity)  # "auto": one member, then as many as fit beside it
        self.stats = FuseStats(capacity=0 if self.auto else self.limit)
        self.cohorts: list[Any] = []  # Cohort (stacked MLPs), VmapCohort (one architecture), UserCohort
        self.fresh: list[Member] = []  # members started since the last step, placed together
        self.datamodules: dict[Any, Any] = {}  # members of the same built-in data share its datamodule

    @property
    def active(self) -> int:
        return len(self.fresh) + sum(len(c.members) for c in self.cohorts)

    def free(self) -> int:
        return max(0, self.limit - self.active)

    def held(self) -> list[Slot]:
        return [m.handle for m in self.fresh] + [m.handle for c in self.cohorts for m in c.members]

    def start(self, slot: Slot) -> None:
        """Build the trial's model as the unfused trial would (same seed) and wait for the next step; a
        trial that goes on from a resume point (``slot.resume``) takes its state first."""
        from tunebridge.fused import check_fusable

        settings, config = self.settings, dict(slot.config)
        _seed_before_build(settings, config)
        module, datamodule = self.build(config)
        check_fusable(module, datamodule)
        member = (UserMember if is_user_module(module) else Member)(
            config=config,
            module=module,
            datamodule=datamodule,
            reporter=slot.reporter,
            epochs=trial_epochs(config, settings.max_epochs),
            metric=settings.metric,
            mode=settings.mode,
            rule=settings.objective,
            early_stopping=settings.early_stopping,
            keep=settings.checkpoint_dir is not None,
            handle=slot,
        )
        if slot.resume is not None:
            member.load(slot.resume.checkpoint)
        if not isinstance(member, UserMember):  # built-in data: one datamodule (one split, one copy) per data
            member.datamodule = self.datamodules.setdefault(
                (member.signature.data, member.signature.batch_size), member.datamodule
            )
        slot.attrs[_record.FUSED] = True
        if self.auto and not self.stats.capacity:
            self.limit = self.stats.capacity = auto_capacity(member, self.device, self.dtype)
        self.fresh.append(member)

    def step(self) -> list[Finished]:
        """Place the members started since the last step, then one epoch of every cohort.

        Every member's report and prune decision of the epoch is made in one pass over the study (one
        read, not one per member or per cohort). Preempted (SIGTERM), every cohort still trains its epoch
        and its members write their resume points; then the preemption goes on.
        """
        _place_all(self.fresh, self.cohorts, self.limit, self.dtype, self.stats, device=self.device)
        self.fresh.clear()
        ended: list[Finished] = []
        preempted: Preempted | None = None
        trials = [m.handle.trial for c in self.cohorts for m in c.members]
        with one_read_per_pass(self.study, trials):
            for cohort in list(self.cohorts):
                try:
                    ended += self._epoch(cohort)
                except Preempted as exc:
                    preempted = preempted or exc
        if preempted is not None:
            raise preempted
        return ended

    def _epoch(self, cohort: Any) -> list[Finished]:
        """One epoch of ``cohort``; the members that ended (or went back in the queue)."""
        training = sum(not m.done for m in cohort.members)
        ended: list[Finished] = []
        try:
            cohort.train_epoch()
        except Exception as exc:
            reason = _isolate(cohort, exc)
        else:
            reason = torch.OutOfMemoryError("out of device memory: K was halved")
        if cohort.requeue:  # K halves, the stopped members go back in the queue
            self.limit = max(1, min(self.limit, training) // 2)
            self.stats.halvings += 1
            ended += [Finished(m.handle, requeue=reason) for m in cohort.requeue]
            cohort.requeue = []
        for member in [m for m in cohort.members if m.done]:
            cohort.remove(member)
            self.stats.members += 1
            ended.append(self._finished(member))
        if not cohort.members:
            self.stats.useful += cohort.useful
            self.stats.paid += cohort.paid
            self.cohorts.remove(cohort)
        return ended

    def _finished(self, member: Member) -> Finished:
        """A member that ended: its outcome, with its kept weights written as its own module's checkpoint."""
        if member.error is not None:
            return Finished(member.handle, error=member.error)
        try:
            outcome = member.outcome()
            checkpoint_dir = self.settings.checkpoint_dir
            if member.kept is not None and checkpoint_dir is not None and not outcome.pruned:
                path = checkpoint_path(checkpoint_dir, member.handle.reporter.label)
                save_member_checkpoint(member.module, member.kept, path, epoch=outcome.best_epoch)
                outcome.extra.update(_record.checkpoint_attrs(path, member.module))
        except Exception as exc:
            return Finished(member.handle, error=exc)
        return Finished(member.handle, outcome=outcome)

    def close(self) -> None:
        """Record what fusion did on the study (the cohorts still open count too)."""
        for cohort in self.cohorts:
            self.stats.useful += cohort.useful
            self.stats.paid += cohort.paid
        self.cohorts = []
        if self.stats.paid:
            self.study.set_user_attr(_record.FUSED_EFFICIENCY, round(self.stats.efficiency, 4))
        if self.stats.capacity:
            self.study.set_user_attr(_record.FUSED_CAPACITY, int(self.stats.capacity))  # K (what fuse: auto chose)


def _isolate(cohort: Any, exc: Exception) -> Exception:
    """A cohort's step raised: which member's error it is cannot be told (vmapped code runs once for all).

    A member training alone fails with it (its reason and traceback). Members training together all go
    back in the queue and K halves, as for an out-of-memory step: a member whose training raises ends up
    alone and fails with its own error, the others train again and finish.
    """
    stopped = [m for m in cohort.members if not m.done]
    if len(stopped) == 1:
        stopped[0].error = exc
        return exc
    for member in stopped:
        cohort.remove(member)
    cohort.requeue += stopped
    return exc


def run_fused(
    study: optuna.Study,
    opts: StudyOptions,
    build: Builder,
    settings: TrialSettings,
    *,
    n_trials: int,
    capacity: int | str,
    progress: Progress = silent,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
    resume: ResumePlan | None = None,
) -> FuseStats:
    """Run the study's queue in fused cohorts of at most ``capacity`` members in all (the one trial loop).

    Args:
        capacity: K, or ``"auto"``: sized from the first member built (:func:`auto_capacity`).
        device: Where the cohorts train; default: from ``settings.accelerator`` (:func:`fused_device`).
        resume: The study's resume points (None: none): every member writes its own, a re-queued one goes on.

    A config whose model fusion cannot train (see :func:`tunebridge.fused.check_fusable`) fails with
    the reason, and the run goes on.
    """
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = device if device is not None else fused_device(settings.accelerator)
    executor = FusedExecutor(study, build, settings, capacity=capacity, dtype=dtype, device=device)
    try:
        run_loop(
            study,
            opts,
            executor,
            n_trials=n_trials,
            progress=progress,
            worker=worker,
            limits=limits,
            keep_checkpoints=keep_checkpoints,
            resume=fused_plan(resume),
            rule=settings.objective,
        )
    finally:
        executor.close()
    return executor.stats


#: The least useful work over work paid that a stacked MLP cohort may have when it is formed (padding bound),
#: on an accelerator: there a step's cost is mostly fixed (kernel launches), so padding costs less than
#: running one more cohort.
MIN_EFFICIENCY = 0.5
#: The same bound on the CPU, where a step of the recipe's members is compute-bound: padded arithmetic is
#: paid in full. Measured with ``benchmarks/bench_fused_floor.py`` (the digits_mlp recipe, 10 runs each):
#: fused time over the plain-loop floor of the same trials, median 1.16 at 0.5 and 1.02 at 0.8.
MIN_EFFICIENCY_CPU = 0.8


def min_efficiency(device: torch.device | None) -> float:
    """The padding bound for cohorts formed on ``device`` (the CPU when None)."""
    return MIN_EFFICIENCY_CPU if device is None or device.type == "cpu" else MIN_EFFICIENCY


def group_members(
    shapes: list[MemberShape],
    n_features: int,
    n_classes: int,
    capacity: int,
    *,
    bound: float = MIN_EFFICIENCY,
) -> list[list[int]]:
    """Cohorts for MLP members of one signature (indices into ``shapes``): as few as the padding bound allows.

    Members are taken deepest and widest first; each joins the first cohort that has room and whose
    efficiency (useful work over work paid, :func:`work` / :func:`paid_work` at the stack's per-layer
    widths) stays at least ``bound`` with it (:func:`min_efficiency` of the cohort's device), else it
    starts a cohort.
    """
    order = sorted(range(len(shapes)), key=lambda i: (-len(shapes[i].widths), -work(shapes[i], n_features, n_classes)))
    groups: list[list[int]] = []
    for i in order:
        for group in groups:
            if len(group) >= capacity:
                continue
            members = [shapes[j] for j in (*group, i)]
            useful = sum(work(m, n_features, n_classes) for m in members)
            paid = paid_work(n_features, n_classes, stack_widths(members)) * len(members)
            if useful >= bound * paid:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def _place_all(
    members: list[Member],
    cohorts: list[Any],
    capacity: int,
    dtype: torch.dtype,
    stats: FuseStats,
    *,
    device: torch.device | None = None,
) -> None:
    """Place the members claimed in one round: into running cohorts they fit, else into new cohorts.

    MLPs form stacked cohorts per signature (data, batch size), grouped by :func:`group_members` (padded
    to each layer's widest member, with the padding bounded); other models (the ConvNet) form vmapped
    cohorts per signature and architecture, and a user's own modules vmapped cohorts per
    :func:`~tunebridge.fused._user.user_key`. Full cohorts are what makes fusion pay, padding is what it
    costs: the run records both.
    """
    waiting: dict[Any, list[Member]] = {}
    for member in members:
        target = next((c for c in cohorts if c.accepts(member)), None)
        if target is not None:
            target.add(member)
        elif isinstance(member, UserMember):
            waiting.setdefault(("user", member.signature), []).append(member)
        elif member.shape is not None:
            waiting.setdefault(("mlp", member.signature), []).append(member)
        else:
            waiting.setdefault(("vmap", member.signature, architecture(member.module)), []).append(member)
    for key, group in waiting.items():
        if key[0] == "user":
            for start in range(0, len(group), capacity):
                stats.cohorts += 1
                cohorts.append(UserCohort(group[start : start + capacity], dtype=dtype, device=device))
            continue
        if key[0] == "vmap":
            for start in range(0, len(group), capacity):
                stats.cohorts += 1
                cohorts.append(VmapCohort(group[start : start + capacity], dtype=dtype, device=device))
            continue
        sig = key[1]
        shapes = [m.shape for m in group if m.shape is not None]
        for indices in group_members(shapes, sig.n_features, sig.n_classes, capacity, bound=min_efficiency(device)):
            chunk = [group[i] for i in indices]
            stats.cohorts += 1
            # As many slots as members: every slot is computed at every step (a freed slot is refilled
            # by a later member that fits).
            widths = stack_widths(shapes_of(chunk))
            cohort = Cohort(sig, widths=widths, capacity=len(chunk), dtype=dtype, device=device)
            cohorts.append(cohort)
            for member in chunk:
                cohort.add(member)


def shapes_of(members: list[Member]) -> list[MemberShape]:
    return [m.shape for m in members if m.shape is not None]


def _place(
    member: Member,
    cohorts: list[Any],
    capacity: int,
    dtype: torch.dtype,
    stats: FuseStats,
    *,
    device: torch.device | None = None,
) -> None:
    """Place one member (see :func:`_place_all`)."""
    _place_all([member], cohorts, capacity, dtype, stats, device=device)
