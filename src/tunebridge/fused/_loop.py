"""The Optuna backend's trial loop with fused cohorts: claim many trials, train them as cohorts, settle each.

Each member is an ordinary trial of the study, claimed from the same queue (so budgets, grids and
workers behave as without fusion), started, reported per epoch and pruned by the study's pruner, and
settled or failed on its own with :mod:`tunebridge.backends.optuna`'s steps. A member that finishes
frees its slot, and the slot is refilled with the next claimed trial, so cohorts stay full until the
queue is empty. An interrupt abandons every claimed trial (their configs go back in the queue).

Cohorts train on the run's device (``settings.accelerator``: see :func:`fused_device`). A step that runs
out of device memory halves its cohort: the members it stops are abandoned like an interrupt's (their
configs go back in the queue, outside the budget), finished members are untouched, and the run's K halves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.backends._base import checkpoint_path
from tunebridge.backends._options import StudyLimits, StudyOptions, WorkerOptions
from tunebridge.backends.optuna._checkpoints import keep_best_checkpoints
from tunebridge.backends.optuna._limits import limit_reached
from tunebridge.backends.optuna._liveness import HEARTBEAT_ATTR, Heartbeat
from tunebridge.backends.optuna._queue import claim, ensure_budget, fail_stale
from tunebridge.backends.optuna._study import (
    OptunaReporter,
    abandon_trial,
    fail_trial,
    settle_trial,
    start_trial,
    study_progress,
)
from tunebridge.fused._cohort import Cohort, Member
from tunebridge.fused._export import save_member_checkpoint
from tunebridge.fused._memory import default_capacity, fused_device, member_bytes
from tunebridge.fused._mlp import MemberShape, paid_work, stack_widths, work
from tunebridge.fused._user import UserCohort, UserMember, is_user_module
from tunebridge.fused._vmap import VmapCohort, architecture
from tunebridge.lightning._runner import TrialSettings, trial_seed

__all__ = ["FuseStats", "auto_capacity", "default_capacity", "run_fused"]

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


@dataclass
class _Handle:
    trial: optuna.Trial
    heartbeat: Heartbeat


def _seed_before_build(settings: TrialSettings, config: dict[str, Any]) -> None:
    """The per-config seed the unfused objective sets before ``build`` (the same initial weights)."""
    if settings.seed is not None:
        torch.manual_seed(trial_seed(settings.seed, config))


def run_fused(
    study: optuna.Study,
    opts: StudyOptions,
    build: Builder,
    settings: TrialSettings,
    *,
    n_trials: int,
    capacity: int | str,
    progress: bool = True,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> FuseStats:
    """Run the study's queue in fused cohorts of at most ``capacity`` members in all.

    Args:
        capacity: K, or ``"auto"``: sized from the first member built (:func:`auto_capacity`).
        device: Where the cohorts train; default: from ``settings.accelerator`` (:func:`fused_device`).

    Raises:
        NotFusableError: A config builds a model fusion cannot train (it is failed with the reason,
            and the run goes on); see :func:`tunebridge.fused.check_fusable`.
    """
    from tunebridge.fused import check_fusable

    worker = worker or WorkerOptions()
    if not worker.join:
        ensure_budget(study, n_trials)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    device = device if device is not None else fused_device(settings.accelerator)
    auto = capacity == "auto"
    limit = 1 if auto else int(capacity)  # "auto": one member, then as many as fit beside it
    stats = FuseStats(capacity=0 if auto else limit)
    cohorts: list[Any] = []  # Cohort (stacked MLPs) or VmapCohort (one architecture)
    started = time.monotonic()
    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    budget = opts.pruning.budget(opts.max_epochs)
    queue_empty = False
    claimed: dict[int, _Handle] = {}  # trial number -> handle, until the trial is settled
    fresh: list[Member] = []  # members claimed in this round, placed together
    began = datetime.now()
    if study.user_attrs.get("stopped_by") and not worker.join:
        study.set_user_attr("stopped_by", None)  # a reason belongs to the run it stopped
    with study_progress(study, opts, n_trials, enabled=progress) as bar, contextlib.ExitStack() as beats:
        try:
            while True:
                active = sum(len(c.members) for c in cohorts)
                reason = limit_reached(study, limits, started=started, mode=mode)
                if reason is not None and study.user_attrs.get("stopped_by") != reason:
                    study.set_user_attr("stopped_by", reason)
                stopped = worker.stopped or reason is not None
                while not stopped and not queue_empty and active < limit:
                    trial = claim(study)
                    if trial is None:
                        queue_empty = True
                        break
                    handle = _Handle(trial, Heartbeat(study, trial, worker.heartbeat))
                    beats.enter_context(handle.heartbeat)
                    claimed[trial.number] = handle
                    config = start_trial(study, trial, opts, worker)
                    if config is None:
                        claimed.pop(trial.number, None)
                        bar.update("failed")
                        continue
                    try:
                        _seed_before_build(settings, config)
                        module, datamodule = build(dict(config))
                        check_fusable(module, datamodule)
                        member = (UserMember if is_user_module(module) else Member)(
                            config=dict(config),
                            module=module,
                            datamodule=datamodule,
                            reporter=OptunaReporter(trial, opts.metrics[0], len(opts.metrics), budget),
                            epochs=min(int(config.get("epochs", settings.max_epochs)), settings.max_epochs),  # type: ignore[arg-type]
                            metric=settings.metric,
                            mode=settings.mode,
                            rule=settings.objective,
                            early_stopping=settings.early_stopping,
                            keep=settings.checkpoint_dir is not None,
                            handle=handle,
                        )
                    except Exception as exc:
                        claimed.pop(trial.number, None)
                        bar.update(*fail_trial(study, trial, exc))
                        continue
                    if auto and not stats.capacity:
                        limit = stats.capacity = auto_capacity(member, device, dtype)
                    fresh.append(member)
                    active += 1
                _place_all(fresh, cohorts, limit, dtype, stats, device=device)
                fresh.clear()
                if active == 0:
                    if stopped or _queue_done(study, worker, None if worker.join else began):
                        break
                    queue_empty = False
                    continue
                for cohort in list(cohorts):
                    training = sum(not m.done for m in cohort.members)
                    cohort.train_epoch()
                    if cohort.requeue:  # out of device memory: K halves, the stopped members go back
                        limit = max(1, min(limit, training) // 2)
                        stats.halvings += 1
                        queue_empty = False
                        for member in cohort.requeue:
                            _requeue(study, member)
                            claimed.pop(member.handle.trial.number, None)
                        cohort.requeue = []
                    for member in [m for m in cohort.members if m.done]:
                        cohort.remove(member)
                        state, value = _settle(study, opts, settings, member)
                        claimed.pop(member.handle.trial.number, None)
                        stats.members += 1
                        if keep_checkpoints > 0:
                            keep_best_checkpoints(study, keep_checkpoints)
                        bar.update(state, value)
                    if not cohort.members:
                        stats.useful += cohort.useful
                        stats.paid += cohort.paid
                        cohorts.remove(cohort)
        except (KeyboardInterrupt, SystemExit) as exc:
            # Every claimed trial not yet settled (in a cohort, or still being started or built) goes back.
            for handle in claimed.values():
                with contextlib.suppress(Exception):
                    abandon_trial(study, handle.trial, exc)
            raise
    for cohort in cohorts:
        stats.useful += cohort.useful
        stats.paid += cohort.paid
    if stats.paid:
        study.set_user_attr("fused_efficiency", round(stats.efficiency, 4))
    if stats.capacity:
        study.set_user_attr("fused_capacity", int(stats.capacity))  # K (what fuse: auto chose)
    return stats


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


def _requeue(study: optuna.Study, member: Member) -> None:
    """A member stopped by an out-of-memory step: its trial is abandoned as an interrupt's (config re-queued)."""
    try:
        with contextlib.suppress(Exception):
            abandon_trial(study, member.handle.trial, torch.OutOfMemoryError("out of device memory: K was halved"))
    finally:
        member.handle.heartbeat.__exit__(None, None, None)


def _settle(
    study: optuna.Study, opts: StudyOptions, settings: TrialSettings, member: Member
) -> tuple[str, float | None]:
    trial = member.handle.trial
    try:
        if member.error is not None:
            return fail_trial(study, trial, member.error)
        outcome = member.outcome()
        if member.kept is not None and settings.checkpoint_dir is not None and not outcome.pruned:
            path = checkpoint_path(settings.checkpoint_dir, f"trial_{trial.number}")
            save_member_checkpoint(member.module, member.kept, path, epoch=outcome.best_epoch)
            cls = type(member.module)
            outcome.extra.update(
                {_record.CHECKPOINT: path, _record.MODULE_CLASS: f"{cls.__module__}:{cls.__qualname__}"}
            )
        outcome.extra["fused"] = True
        return settle_trial(study, trial, outcome, opts)
    except Exception as exc:
        return fail_trial(study, trial, exc)
    finally:
        member.handle.heartbeat.__exit__(None, None, None)


def _queue_done(study: optuna.Study, worker: WorkerOptions, orphaned_before: datetime | None) -> bool:
    """Nothing claimed and nothing to claim: done, unless other workers hold trials that may come back."""
    if fail_stale(study, worker.dead_after, worker.max_retry, orphaned_before=orphaned_before):
        return False
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not any(HEARTBEAT_ATTR in t.system_attrs for t in running):
        return True
    time.sleep(worker.poll)
    return False


def auto_capacity(member: Member, device: torch.device, dtype: torch.dtype) -> int:
    """``fuse: auto`` for a run whose first member is ``member``: :func:`default_capacity` on ``device``.

    On a CUDA device, from its free memory, the data's size and :func:`member_bytes` of ``member`` (its
    parameter count, optimizer state, and activations for one batch and for validation).
    """
    if device.type != "cuda":
        return default_capacity(device)
    dm = member.datamodule
    dm.setup()
    x, x_val = dm.train_set.x, dm.val_set.x
    size = torch.empty((), dtype=dtype).element_size()
    data = size * (x.numel() + x_val.numel()) + 8 * (len(x) + len(x_val))
    per = member_bytes(member.module, x, batch_size=member.signature.batch_size, n_val=len(x_val), dtype=dtype)
    return default_capacity(device, per_member=per, data_bytes=data)
