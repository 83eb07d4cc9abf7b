"""Run one trial: build the user's module from a config, fit it quietly, report every epoch.

The same code runs under every backend; only the :class:`~tunebridge.backends._base.Reporter` differs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from tunebridge import _record
from tunebridge._atomic import write_atomically
from tunebridge._compat import lightning_namespace_of
from tunebridge.backends import (
    KEPT_FILE,
    Reporter,
    Resume,
    TrialEpochs,
    TrialOutcome,
    checkpoint_path,
    discard_checkpoint,
    trial_epochs,
    trial_label,
)
from tunebridge.errors import MetricNotFoundError, NonFiniteMetricError, TrialOutOfMemoryError
from tunebridge.lightning._callbacks import early_stopping, reapply_config_callback, report_callback, scalars
from tunebridge.lightning._ddp import FollowerReporter, trial_environment
from tunebridge.lightning._seed import seed_process, trial_seed
from tunebridge.lightning._trainer import make_callbacks, make_logger
from tunebridge.schema import EarlyStoppingSpec, Scalar

__all__ = [
    "Builder",
    "LightningObjective",
    "NonFiniteMetricError",
    "TrialSettings",
    "fit_trial",
    "quiet_lightning",
    "trial_seed",
]

Builder = Callable[[dict[str, Scalar]], tuple[Any, Any]]

_QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
_NOISY_WARNINGS = (
    r".*does not have many workers.*",
    r".*GPU available but not used.*",
    r".*smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*LeafSpec.*",
    r".*Consider setting `persistent_workers=True`.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
)


@dataclass(frozen=True)
class TrialSettings:
    """How every trial of a run is trained.

    Attributes:
        metric: The monitored validation metric (the first objective).
        mode: ``min`` or ``max``.
        max_epochs: The budget; a config's ``epochs`` value can only lower it.
        early_stopping: Lightning ``EarlyStopping`` settings, or None for none.
        seed: Seeds python, numpy, torch and the dataloader workers before each ``build`` (so layers
            made in a module's ``__init__`` get the same weights every time).
        accelerator: Passed to the Trainer (``"cpu"``, ``"gpu"``, ``"auto"``).
        threads: ``torch.set_num_threads`` for the trial (None keeps torch's default).
        trainer_kwargs: The user's ``Trainer`` keywords (checked by
            :func:`~tunebridge.lightning._trainer.check_trainer_options`).
        callbacks: Factories of the user's callbacks (fresh ones for every trial).
        logger: ``tensorboard``, ``csv`` or ``mlflow``: one run per trial in ``log_dir``, grouped by ``study``.
        log_dir: Where per-trial logs go.
        study: The study name (groups the per-trial logs).
        checkpoint_dir: Keep the objective epoch's weights of every trial there (the backend keeps the
            best trials' and deletes the rest); None keeps nothing.
        objective: ``best_epoch`` or ``last_epoch``: which epoch gives the trial its value and weights.
    """

    metric: str
    mode: str
    max_epochs: int
    early_stopping: EarlyStoppingSpec | None = None
    seed: int | None = None
    accelerator: str = "auto"
    threads: int | None = None
    trainer_kwargs: Mapping[str, Any] | None = None
    callbacks: tuple[Callable[[], Any], ...] = ()
    logger: str | None = None
    log_dir: str | None = None
    study: str | None = None
    checkpoint_dir: str | None = None
    objective: str = "best_epoch"


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """No banners, tips or worker warnings from Lightning while a trial trains."""
    saved = [(name, logging.getLogger(name).level) for name in _QUIET_LOGGERS]
    _silence_loggers()
    try:
        with warnings.catch_warnings():
            for pattern in _NOISY_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)


def _silence_loggers() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def fit_trial(
    build: Builder,
    config: dict[str, Scalar],
    reporter: Reporter | None,
    settings: TrialSettings,
    *,
    resume: Resume | None = None,
    callbacks: Sequence[Any] = (),
    loggers: Sequence[Any] = (),
) -> TrialOutcome:
    """Build, fit and evaluate one config.

    Args:
        build: ``build(config) -> (LightningModule, LightningDataModule)``; the module may come from
            ``lightning.pytorch`` or ``pytorch_lightning`` and runs under a Trainer of its own package.
        config: The sampled config.
        reporter: Receives the metrics of every epoch; returning True prunes the trial.
        settings: How to train.
        resume: Go on from a checkpoint the reporter's ``checkpoint(folder)`` wrote.
        callbacks: More Lightning callbacks (of the module's package) for this trial.
        loggers: More Lightning loggers for this trial, next to the spec's ``logger`` (a Hydra config's).

    Raises:
        MetricNotFoundError: The monitored metric is never logged (lists those that are).
        NonFiniteMetricError: The monitored metric or a loss became NaN/inf.
        TrialOutOfMemoryError: The trial ran out of memory (the batch size is in the message).
    """
    import torch

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        with quiet_lightning():
            return _fit(build, config, reporter, settings, resume=resume, callbacks=callbacks, loggers=loggers)
    except Exception as exc:
        if not _is_oom(exc):
            raise
        gc.collect()  # the failed trial's tensors sit in reference cycles (trainer <-> module)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise TrialOutOfMemoryError(
            f"out of memory at batch_size={config.get('batch_size', 'default')}: {first}"
        ) from exc
    finally:
        # Give CUDA memory back before the next trial (the caching allocator keeps freed blocks).
        # A full gc.collect() costs ~0.25 s here, so it runs only when a GPU holds memory.
        if torch.cuda.is_available() and torch.cuda.memory_allocated() > 0:
            gc.collect()
            torch.cuda.empty_cache()


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


def _fit(
    build: Builder,
    config: dict[str, Scalar],
    reporter: Reporter | None,
    settings: TrialSettings,
    *,
    resume: Resume | None,
    callbacks: Sequence[Any],
    loggers: Sequence[Any] = (),
) -> TrialOutcome:
    """One trial, step by step; each step is one small function below."""
    seed_process(settings.seed)  # before build: layers made in the module's __init__ get seeded weights
    module, datamodule, ns = _build(build, config)
    label = trial_label(reporter, config)
    keep = None if settings.checkpoint_dir is None else checkpoint_path(settings.checkpoint_dir, label)
    if keep is not None and resume is not None and not isinstance(reporter, FollowerReporter):
        carry_kept(resume, keep)  # the best epoch so far may be one trained before the resume (rank 0 writes)
    reporting = report_callback(ns, reporter, settings.metric, mode=settings.mode, rule=settings.objective, keep=keep)
    stopper = (
        None
        if settings.early_stopping is None
        else early_stopping(ns, settings.early_stopping, metric=settings.metric, mode=settings.mode)
    )
    # The stopper before the reporter: a checkpoint taken while reporting then holds this epoch's stopping state.
    trial_callbacks = [c for c in (stopper, reporting) if c is not None]
    if resume is not None and resume.reapply_config:
        trial_callbacks.append(reapply_config_callback(ns, config))
    trial_callbacks.extend(make_callbacks(ns, settings.callbacks))
    trial_callbacks.extend(callbacks)
    logger = _logger(ns, settings, label, config, loggers)
    trainer = ns.Trainer(
        **_trainer_kwargs(settings, trial_epochs(config, settings.max_epochs), trial_callbacks, logger)
    )
    try:
        # Ranks that DDP launches learn which trial they follow, and the point they go on from with rank 0.
        with trial_environment(config, label, resume):
            _interruptible_fit(trainer, module, datamodule, None if resume is None else resume.checkpoint)
        outcome = _outcome(reporting, stopper, module, trainer)
        if keep is not None and not outcome.pruned:
            reporting.write_kept(trainer)  # the weights of the reported epoch, if taken in memory: one write
    except (Exception, KeyboardInterrupt):
        # A failed or interrupted trial keeps nothing (a retry starts afresh). A trial that its backend
        # pauses (Ray's TrialStopped, a BaseException) keeps its weights: it goes on from a checkpoint.
        discard_checkpoint(keep)
        _stop_launched_ranks(trainer)
        raise
    if keep is not None and not outcome.pruned and os.path.exists(keep):
        outcome.extra.update(_record.checkpoint_attrs(keep, module))
    else:
        discard_checkpoint(keep)
    return outcome


def carry_kept(resume: Resume, keep: str) -> None:
    """The weights a resume point kept (its trial's best epoch so far) become this trial's kept weights."""
    kept = os.path.join(resume.folder, KEPT_FILE)
    if not os.path.exists(kept):
        return

    def link(partial: str) -> None:
        try:
            os.link(kept, partial)
        except OSError:  # another file system, or no hard links: a copy
            shutil.copyfile(kept, partial)

    write_atomically(keep, link)


def _stop_launched_ranks(trainer: Any) -> None:
    """A DDP trial that failed on rank 0 alone (a timeout, a storage error) must not leave the ranks
    Lightning launched waiting in a collective until the process group times out: end them."""
    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    for proc in getattr(launcher, "procs", None) or []:
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                proc.kill()


def _logger(
    ns: ModuleType, settings: TrialSettings, label: str, config: Mapping[str, Scalar], loggers: Sequence[Any] = ()
) -> Any:
    ours = (
        None
        if settings.logger is None
        else make_logger(
            ns,
            settings.logger,
            save_dir=settings.log_dir or "tunebridge-logs",
            study=settings.study or "tunebridge",
            label=label,
            config=config,
        )
    )
    made = [x for x in (ours, *loggers) if x is not None]
    return made if len(made) > 1 else made[0] if made else False


def _build(build: Builder, config: dict[str, Scalar]) -> tuple[Any, Any, ModuleType]:
    """The user's module and datamodule, and the Lightning package they belong to (both the same one)."""
    module, datamodule = build(dict(config))
    _silence_loggers()  # again: the first import of a Lightning package resets its logger to INFO
    ns = lightning_namespace_of(module)
    if datamodule is not None and not isinstance(datamodule, ns.LightningDataModule):
        raise TypeError(
            f"the datamodule {type(datamodule).__name__} is not a {ns.__name__}.LightningDataModule, but the "
            f"module {type(module).__name__} is a {ns.__name__} module: lightning.pytorch and pytorch_lightning "
            "are separate class trees, so build both from the same package."
        )
    return module, datamodule, ns


def _trainer_kwargs(settings: TrialSettings, epochs: int, callbacks: list[Any], logger: Any) -> dict[str, Any]:
    """The Trainer's arguments: quiet, one device unless the user says otherwise, their options on top."""
    kwargs: dict[str, Any] = {
        "devices": 1,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **(settings.trainer_kwargs or {}),
        # What tunebridge owns (check_trainer_options refuses these keys from the user):
        "max_epochs": epochs,
        "accelerator": settings.accelerator,
        "logger": logger,
        # Lightning refuses a ModelCheckpoint callback with checkpointing off: a user's turns it on.
        "enable_checkpointing": any(type(c).__name__ == "ModelCheckpoint" for c in callbacks),
        "enable_progress_bar": False,
        "callbacks": callbacks,
    }
    return kwargs


def _interruptible_fit(trainer: Any, module: Any, datamodule: Any, ckpt_path: str | None) -> None:
    """``trainer.fit`` that gives Ctrl-C back to the caller as ``KeyboardInterrupt``."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        # Lightning turns Ctrl-C into sys.exit(1) and ignores SIGINT from then on; give the
        # interrupt back to the caller so the study can record it and stop cleanly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if getattr(trainer, "interrupted", False):
            raise KeyboardInterrupt from None
        raise


def _outcome(reporting: Any, stopper: Any, module: Any, trainer: Any) -> TrialOutcome:
    """The trial's outcome by the backends' one rule (:meth:`~tunebridge.backends._epoch.TrialEpochs.outcome`)."""
    trial: TrialEpochs = reporting.trial_epochs
    if not trial.history:
        raise MetricNotFoundError(trial.metric, list(scalars(trainer.callback_metrics)))
    # Early stopping is Lightning's own callback here: it says whether it stopped the trial.
    trial.early_stopped = stopper is not None and int(getattr(stopper, "stopped_epoch", 0)) > 0
    return trial.outcome()  # n_params is one of its constants (counted when training started)


@dataclass(frozen=True)
class LightningObjective:
    """The objective every backend calls: ``objective(config, reporter) -> TrialOutcome``.

    Picklable (for worker processes and Ray actors) when ``build`` is a module-level function.
    Each config gets its own seed, derived from the run's seed and the config itself, so the same
    config trains the same model under every backend and in every worker.
    """

    build: Builder
    settings: TrialSettings

    def __call__(
        self,
        config: dict[str, Scalar],
        reporter: Reporter | None,
        *,
        resume: Resume | None = None,
    ) -> TrialOutcome:
        settings = self.settings
        if settings.seed is not None:
            settings = replace(settings, seed=trial_seed(settings.seed, config))
        options = getattr(self.build, "trainer_options", None)  # a LightningCLI config's Trainer section
        if callable(options):
            # Parsing a LightningCLI config may build (and cache) the model: seed first, as before any build.
            seed_process(settings.seed)
            base, trial = options(config)  # the spec's `trainer:` wins over the base config, the trial over both
            settings = replace(settings, trainer_kwargs={**base, **(settings.trainer_kwargs or {}), **trial})
        made = getattr(self.build, "trial_callbacks", None)  # a Hydra config's callbacks and loggers, fresh per trial
        callbacks, loggers = made(config) if callable(made) else ((), ())
        return fit_trial(self.build, config, reporter, settings, resume=resume, callbacks=callbacks, loggers=loggers)
