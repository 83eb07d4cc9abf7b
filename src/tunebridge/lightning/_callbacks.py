"""The Lightning callbacks a trial runs with, built for the module's own Lightning package.

``lightning.pytorch`` and ``pytorch_lightning`` are separate class trees: a Trainer only accepts
callbacks of its own package, so each class here is made once per package and cached.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, cast

from tunebridge._atomic import write_atomically
from tunebridge.backends import CHECKPOINT_FILE, KEPT_FILE, EarlyStopRule, FollowsTrialEpochs, Reporter, TrialEpochs
from tunebridge.backends._epoch import N_PARAMS, count_params
from tunebridge.lightning._seed import random_states, restore_random_states
from tunebridge.schema import EarlyStoppingSpec, Scalar

__all__ = ["apply_config", "early_stopping", "reapply_config_callback", "report_callback", "scalars"]

_REPORT: dict[str, type] = {}
_REAPPLY: dict[str, type] = {}


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of Lightning's ``callback_metrics`` as floats (non-scalar tensors are skipped)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
    return out


def report_callback(
    ns: ModuleType,
    reporter: Reporter | None,
    metric: str,
    *,
    mode: str = "min",
    rule: str = "best_epoch",
    keep: str | None = None,
) -> Any:
    """A callback that reports the validation metrics once per epoch and stops the trial when pruned.

    What to do is decided by its :class:`~tunebridge.backends._epoch.TrialEpochs` (the one a fused
    member asks too); the callback does it. ``history`` (epoch -> metrics; a second validation within
    an epoch replaces the first) and ``pruned`` (the reporter asked to stop) read it. With ``keep``, it
    saves a checkpoint there whenever this epoch becomes the trial's objective epoch (the best one,
    or the last one with ``rule="last_epoch"``), before reporting: the kept weights are always those
    of the reported value, even when the backend pauses the trial while it reports.

    Where nothing reads the file before the trial ends (one process, a reporter that does not hand
    checkpoints to its backend, as Optuna's does not) and the weights are not large
    (:data:`IN_MEMORY_LIMIT`), the checkpoint is taken in memory instead (its tensors copied to the
    CPU) and written once by ``write_kept(trainer)`` when the trial completes: a trial that improves on
    most epochs writes one file, not one per epoch, and a pruned trial writes none.
    """
    if ns.__name__ not in _REPORT:

        class ReportCallback(ns.Callback, FollowsTrialEpochs):  # type: ignore[misc,name-defined]
            def __init__(self, reporter: Reporter | None, metric: str, mode: str, rule: str, keep: str | None) -> None:
                self.reporter = reporter
                self.keep = keep
                # Early stopping is Lightning's own callback here (its state travels in the checkpoint).
                self.trial_epochs = TrialEpochs(metric, mode, rule=rule)
                self.pending: dict[str, Any] | None = None  # a checkpoint taken in memory, not yet written
                # The kept weights as a file of the latest resume point (or the kept file a resumed trial
                # was given), and whether the checkpoint taken in memory is in a point yet.
                self.kept_file: str | None = None
                self.pending_in_point = True
                self.restored_states: dict[str, Any] | None = None  # random states from a checkpoint

            # The random states travel in every checkpoint this trial writes: a trial resumed from one
            # draws (shuffles, dropout) what it would have drawn had it never stopped.
            def state_dict(self) -> dict[str, Any]:
                return {"random_states": random_states()}

            def load_state_dict(self, state_dict: dict[str, Any]) -> None:
                self.restored_states = state_dict.get("random_states")

            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                self.trial_epochs.constants = {N_PARAMS: count_params(pl_module)}
                if self.keep is not None and os.path.exists(self.keep):
                    self.kept_file = self.keep  # a resumed trial's kept weights, from its resume point
                if self.restored_states is not None:
                    restore_random_states(self.restored_states)
                    self.restored_states = None

            def write_kept(self, trainer: Any) -> None:
                """Write the checkpoint taken in memory (if any) to ``keep``."""
                if self.pending is not None and self.keep is not None:
                    _write_atomically(trainer, self.pending, self.keep)
                self.pending = None

            def kept_into_point(self, trainer: Any, folder: str, *, this_epoch: bool) -> None:
                """Put the kept weights into the resume point being written in ``folder`` (:data:`KEPT_FILE`):
                its checkpoint when this epoch is the kept one, else the checkpoint taken in memory if no
                point holds it yet, else a link to the previous point's file (no write)."""
                path = os.path.join(folder, KEPT_FILE)
                if this_epoch:
                    done = _link(os.path.join(folder, CHECKPOINT_FILE), path)
                elif self.pending is not None and not self.pending_in_point:
                    trainer.strategy.save_checkpoint(self.pending, path)
                    done = True
                else:
                    done = self.kept_file is not None and os.path.exists(self.kept_file) and _link(self.kept_file, path)
                if done:
                    self.kept_file, self.pending_in_point = path, True

            def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
                if trainer.sanity_checking:
                    return
                metrics = scalars(trainer.callback_metrics)
                epoch = int(trainer.current_epoch) + 1
                self.trial_epochs.budget = int(trainer.max_epochs or 0)
                # Epochs before a resume count too (the reporter of a resumed trial knows them).
                earlier = getattr(self.reporter, "history", None)
                decision = self.trial_epochs.validated(epoch, metrics, earlier=earlier)
                metrics = self.trial_epochs.history[epoch]  # as reported: with n_params (its constants)
                several = int(getattr(trainer, "world_size", 1)) > 1
                wrote_keep = best_now = defer = False
                if self.keep is not None:
                    best_now = decision.keep
                    if several:  # rank 0 decides; saving is collective, so every rank takes part
                        best_now = bool(trainer.strategy.broadcast(best_now, src=0))
                    defer = not several and not hasattr(self.reporter, "kept_checkpoint")
                    if best_now and defer and (taken := _checkpoint_in_memory(trainer)) is not None:
                        self.pending, self.pending_in_point = taken, False
                    elif best_now:
                        _save_atomically(trainer, self.keep)
                        wrote_keep = True
                        # Ray's reporter deletes a stopped trial's file; a DDP trial's point links it.
                        if self.reporter is not None and (several or hasattr(self.reporter, "kept_checkpoint")):
                            setattr(self.reporter, "kept_checkpoint", self.keep)  # noqa: B010
                written = self.keep if wrote_keep else None  # this epoch's weights, just written
                kept = written if written is not None and not several and os.path.exists(written) else None

                def save(folder: str) -> None:
                    target = os.path.join(folder, CHECKPOINT_FILE)
                    # This epoch's weights were just written: link them, don't save twice.
                    if kept is None or not _link(kept, target):
                        trainer.save_checkpoint(target)
                    if self.keep is not None and defer:
                        self.kept_into_point(trainer, folder, this_epoch=bool(best_now))

                # Saving is collective under DDP and only rank 0 reports: every rank saves the resume point's
                # state first (rank 0 writes), then rank 0's report completes the point.
                if several:
                    checkpoint = _save_point_collectively(trainer, self.reporter, epoch, written)
                else:
                    checkpoint = save
                asked = self.reporter is not None and self.reporter.report(epoch, metrics, checkpoint)
                if several:  # only rank 0 reports to the study: its decision stops every rank at once
                    asked = bool(trainer.strategy.broadcast(asked, src=0))
                if self.trial_epochs.reported(epoch, asked):
                    trainer.should_stop = True

        _REPORT[ns.__name__] = ReportCallback
    return _REPORT[ns.__name__](reporter, metric, mode, rule, keep)


def _save_point_collectively(
    trainer: Any, reporter: Reporter | None, epoch: int, kept: str | None
) -> Callable[[str], None] | None:
    """A DDP trial's resume point, its save shared by every rank: rank 0's reporter says whether one is due
    and which folder its state goes into (``point_due``); the folder is broadcast, every rank takes part
    in ``trainer.save_checkpoint`` (only rank 0 writes). Returns the ``checkpoint`` rank 0 reports (the
    state is already in the folder it is given), None when no point is due.

    ``kept``: this epoch's weights, just written by rank 0 (the same state): linked, not saved again.
    """
    due = getattr(reporter, "point_due", None)
    folder = due(epoch) if callable(due) else None  # rank 0's reporter decides; ranks 1..N-1 have none
    linked = False
    if folder is not None and kept is not None and os.path.exists(kept):
        linked = _link(kept, os.path.join(folder, CHECKPOINT_FILE))
    folder, linked = trainer.strategy.broadcast((folder, linked), src=0)
    if folder is None:
        return None
    if not linked:
        trainer.save_checkpoint(os.path.join(folder, CHECKPOINT_FILE))

    def saved(partial: str) -> None:
        if os.path.abspath(partial) != os.path.abspath(folder):
            raise RuntimeError(f"the resume point was saved into {folder}, not {partial}")

    return saved


def _link(source: str, target: str) -> bool:
    """Hard-link (else copy) a file; False when neither works."""
    try:
        os.link(source, target)
    except OSError:
        try:
            shutil.copyfile(source, target)
        except OSError:
            return False
    return True


#: Weights up to this size are checkpointed in memory and written once when the trial ends (with their
#: optimizer state, about three times this in host memory); larger ones are written at once, as before.
IN_MEMORY_LIMIT = 256 * 2**20


def _checkpoint_in_memory(trainer: Any) -> dict[str, Any] | None:
    """What ``trainer.save_checkpoint`` would write now, detached from training (tensors on the CPU);
    None for weights over :data:`IN_MEMORY_LIMIT`, or where this Lightning version has no way to take
    it (the caller then saves at once)."""
    connector = getattr(trainer, "_checkpoint_connector", None)
    dump = getattr(connector, "dump_checkpoint", None)
    module = getattr(trainer, "lightning_module", None)
    if dump is None or module is None:
        return None
    if sum(p.numel() * p.element_size() for p in module.parameters()) > IN_MEMORY_LIMIT:
        return None
    return cast(dict[str, Any], _detached(dump(weights_only=False)))


def _detached(value: Any) -> Any:
    """A copy of a checkpoint that training can no longer change: tensors copied to the CPU, the rest deep-copied."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        copied = copy.copy(value)  # keeps the mapping's own type (Lightning's AttributeDict for hparams)
        for key, item in value.items():
            copied[key] = _detached(item)
        return copied
    if isinstance(value, list | tuple) and type(value) in (list, tuple):
        return type(value)(_detached(v) for v in value)
    return copy.deepcopy(value)


def _write_atomically(trainer: Any, checkpoint: dict[str, Any], path: str) -> None:
    """Write a checkpoint taken earlier to ``path`` atomically, through the Trainer's own checkpoint I/O
    (a user's ``CheckpointIO`` plugin included)."""
    save = trainer.strategy.save_checkpoint
    write_atomically(path, lambda partial: save(checkpoint, partial), move=trainer.is_global_zero)


def _save_atomically(trainer: Any, path: str) -> None:
    """Write the checkpoint of this moment to ``path`` atomically."""
    # Collective under DDP: every rank calls it, only global rank 0 writes and moves the file.
    write_atomically(path, trainer.save_checkpoint, move=trainer.is_global_zero)


def early_stopping(ns: ModuleType, spec: EarlyStoppingSpec, *, metric: str, mode: str) -> Any:
    """Lightning's ``EarlyStopping`` for the spec: the :class:`~tunebridge.backends._epoch.EarlyStopRule`
    that fused trials follow (``tests/backends/test_epoch.py`` holds the two equal); its state travels
    in the trial's checkpoints, so a paused and resumed trial goes on counting."""
    rule = EarlyStopRule.of(spec, metric=metric, mode=mode)
    return ns.callbacks.EarlyStopping(
        monitor=rule.monitor,
        mode=rule.mode,
        patience=rule.patience,
        min_delta=rule.min_delta,
        # The reporter, which runs right after it, raises MetricNotFoundError for the run's metric.
        strict=rule.monitor != metric,
        check_finite=True,
        # Check after each validation (as EarlyStoppingSpec.patience counts them), not at the train
        # epoch's end: a trial resumed from a checkpoint taken at validation end (Ray's
        # ASHA/HyperBand/PBT, --resume) replays on_train_epoch_end before validating again, and a
        # strict check there fails on the empty metrics.
        check_on_train_epoch_end=False,
    )


def reapply_config_callback(ns: ModuleType, config: Mapping[str, Scalar]) -> Any:
    """A callback that re-applies the config's optimizer hyperparameters after a restore.

    Lightning restores the optimizer's ``param_groups`` (and the LR scheduler's ``base_lrs``) from a
    checkpoint, which would silently undo PBT's mutation of ``lr``, ``momentum`` or ``weight_decay``.
    """
    if ns.__name__ not in _REAPPLY:

        class ReapplyConfig(ns.Callback):  # type: ignore[misc,name-defined]
            def __init__(self, config: Mapping[str, Scalar]) -> None:
                self.config = dict(config)

            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                self.trial_epochs.constants = {N_PARAMS: count_params(pl_module)}
                apply_config(trainer, self.config)

        _REAPPLY[ns.__name__] = ReapplyConfig
    return _REAPPLY[ns.__name__](config)


def apply_config(trainer: Any, config: Mapping[str, Scalar]) -> None:
    """Set ``lr``/``momentum``/``weight_decay`` of every optimizer from ``config``, keeping the schedule's progress."""
    lr = config.get("lr")
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            if isinstance(lr, (int, float)):
                initial = group.get("initial_lr")
                group["lr"] = group["lr"] * lr / initial if initial else lr
                if initial:
                    group["initial_lr"] = lr
            for key in ("momentum", "weight_decay"):
                if key in config and key in group:
                    group[key] = config[key]
    if isinstance(lr, (int, float)):
        for scheduler_config in getattr(trainer, "lr_scheduler_configs", []):
            scheduler = scheduler_config.scheduler
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [lr for _ in scheduler.base_lrs]
