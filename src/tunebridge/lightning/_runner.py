"""Run one trial: build the user's module from a config, fit it quietly, report every epoch.

The same code runs under every backend; only the :class:`~tunebridge.backends._base.Reporter` differs.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import signal
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from tunebridge._compat import lightning_namespace_of
from tunebridge.backends._base import Reporter, TrialOutcome
from tunebridge.errors import MetricNotFoundError, TrialOutOfMemoryError, TunebridgeError
from tunebridge.schema import EarlyStoppingSpec, Scalar

__all__ = ["Builder", "LightningObjective", "NonFiniteMetricError", "TrialSettings", "fit_trial", "quiet_lightning"]

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


class NonFiniteMetricError(TunebridgeError, ArithmeticError):
    """A monitored metric or a loss became NaN or infinite; the trial fails with this reason."""


@dataclass(frozen=True)
class TrialSettings:
    """How every trial of a run is trained.

    Attributes:
        metric: The monitored validation metric (the first objective).
        mode: ``min`` or ``max``.
        max_epochs: The budget; a config's ``epochs`` value can only lower it.
        early_stopping: Lightning ``EarlyStopping`` settings, or None for none.
        seed: Seeds torch/numpy/random before each build (``seed + trial index`` is up to the caller).
        accelerator: Passed to the Trainer (``"cpu"``, ``"gpu"``, ``"auto"``).
        threads: ``torch.set_num_threads`` for the trial (None keeps torch's default).
        trainer_kwargs: Extra keyword arguments for ``Trainer``.
    """

    metric: str
    mode: str
    max_epochs: int
    early_stopping: EarlyStoppingSpec | None = None
    seed: int | None = None
    accelerator: str = "auto"
    threads: int | None = None
    trainer_kwargs: Mapping[str, Any] | None = None


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


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError, RuntimeError):  # non-scalar tensors are skipped
            continue
    return out


_CALLBACKS: dict[str, type] = {}


def _report_callback(ns: ModuleType) -> type:
    """A reporting callback class for one Lightning package (the two are separate class trees)."""
    if ns.__name__ in _CALLBACKS:
        return _CALLBACKS[ns.__name__]

    class ReportCallback(ns.Callback):  # type: ignore[misc,name-defined]
        """Reports the validation metrics once per epoch and stops the trial when pruned."""

        def __init__(self, reporter: Reporter | None, metric: str, mode: str) -> None:
            self.reporter = reporter
            self.metric = metric
            self.mode = mode
            self.history: list[tuple[int, dict[str, float]]] = []
            self.pruned = False

        def decide(self, epoch: int, metrics: dict[str, float]) -> None:
            """Raise when the monitored metric is missing or a monitored/loss value is not finite."""
            if self.metric not in metrics:
                raise MetricNotFoundError(self.metric, list(metrics))
            for key, value in metrics.items():
                if (key == self.metric or "loss" in key) and not math.isfinite(value):
                    raise NonFiniteMetricError(f"metric {key!r} is {value} at epoch {epoch}")

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            metrics = _scalars(trainer.callback_metrics)
            epoch = int(trainer.current_epoch) + 1
            self.decide(epoch, metrics)
            if self.history and self.history[-1][0] == epoch:
                self.history[-1] = (epoch, metrics)
            else:
                self.history.append((epoch, metrics))

            def save(folder: str) -> None:
                trainer.save_checkpoint(os.path.join(folder, "checkpoint.ckpt"))

            stop = self.reporter is not None and self.reporter.report(epoch, metrics, save)
            # A trial that has just trained its last epoch is complete, whatever the pruner says
            # (Optuna's successive halving would otherwise prune it at the top rung).
            if stop and epoch < int(trainer.max_epochs or 0):
                self.pruned = True
                trainer.should_stop = True

    _CALLBACKS[ns.__name__] = ReportCallback
    return ReportCallback


def _check_datamodule(ns: ModuleType, module: Any, datamodule: Any) -> None:
    if datamodule is None:
        return
    own = ns.LightningDataModule
    if not isinstance(datamodule, own):
        raise TypeError(
            f"the datamodule {type(datamodule).__name__} is not a {ns.__name__}.LightningDataModule, but the "
            f"module {type(module).__name__} is a {ns.__name__} module: lightning.pytorch and pytorch_lightning "
            "are separate class trees, so build both from the same package."
        )


def fit_trial(
    build: Builder,
    config: dict[str, Scalar],
    reporter: Reporter | None,
    settings: TrialSettings,
    *,
    ckpt_path: str | None = None,
    extra_callbacks: list[Any] | None = None,
) -> TrialOutcome:
    """Build, fit and evaluate one config.

    Args:
        build: ``build(config) -> (LightningModule, LightningDataModule)``; the module may come from
            ``lightning.pytorch`` or ``pytorch_lightning`` and runs under a Trainer of its own package.
        config: The sampled config.
        reporter: Receives the metrics of every epoch; returning True prunes the trial.
        settings: How to train.
        ckpt_path: Resume training from this Lightning checkpoint.

    Raises:
        MetricNotFoundError: The monitored metric is never logged (lists those that are).
        NonFiniteMetricError: The monitored metric or a loss became NaN/inf.
    """
    import torch

    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _fit(build, config, reporter, settings, ckpt_path=ckpt_path, extra_callbacks=extra_callbacks)
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
    ckpt_path: str | None,
    extra_callbacks: list[Any] | None,
) -> TrialOutcome:
    with quiet_lightning():
        module, datamodule = build(dict(config))
        _silence_loggers()  # again: the first import of a Lightning package resets its logger to INFO
        ns = lightning_namespace_of(module)
        _check_datamodule(ns, module, datamodule)
        if settings.seed is not None:
            ns.seed_everything(settings.seed, workers=True, verbose=False)
        epochs = min(int(config.get("epochs", settings.max_epochs)), settings.max_epochs)  # type: ignore[arg-type]
        reporting = _report_callback(ns)(reporter, settings.metric, settings.mode)
        callbacks: list[Any] = [reporting]
        stopper = None
        es = settings.early_stopping
        if es is not None:
            stopper = ns.callbacks.EarlyStopping(
                monitor=es.monitor or settings.metric,
                mode=es.mode or settings.mode,
                patience=es.patience,
                min_delta=es.min_delta,
                # The reporter, which runs right after it, raises MetricNotFoundError for the run's metric.
                strict=bool(es.monitor and es.monitor != settings.metric),
                check_finite=True,
                # Check after each validation (as EarlyStoppingSpec.patience counts them), not at the
                # train epoch's end: a trial resumed from a checkpoint taken at validation end (Ray's
                # ASHA/HyperBand/PBT, --resume) replays on_train_epoch_end before validating again,
                # and a strict check there fails on the empty metrics.
                check_on_train_epoch_end=False,
            )
            # Before the reporter: a checkpoint taken while reporting then holds this epoch's stopping state.
            callbacks.insert(0, stopper)
        callbacks.extend(extra_callbacks or [])
        kwargs: dict[str, Any] = {
            "max_epochs": epochs,
            "accelerator": settings.accelerator,
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "callbacks": callbacks,
        }
        kwargs.update(settings.trainer_kwargs or {})
        trainer = ns.Trainer(**kwargs)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) and ignores SIGINT from then on; give the
            # interrupt back to the caller so the study can record it and stop cleanly.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if getattr(trainer, "interrupted", False):
                raise KeyboardInterrupt from None
            raise
    if not reporting.history:
        raise MetricNotFoundError(settings.metric, list(_scalars(trainer.callback_metrics)))
    history = reporting.history
    sign = 1.0 if settings.mode == "min" else -1.0
    best_epoch, best = min(history, key=lambda item: sign * item[1][settings.metric])
    last_epoch, final = history[-1]
    n_params = float(sum(p.numel() for p in module.parameters() if p.requires_grad))
    final = {**final, "n_params": n_params}
    best = {**best, "n_params": n_params}
    early = stopper is not None and int(getattr(stopper, "stopped_epoch", 0)) > 0 and not reporting.pruned
    return TrialOutcome(
        metrics=final, best=best, epochs=last_epoch, best_epoch=best_epoch, pruned=reporting.pruned, early_stopped=early
    )


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
        ckpt_path: str | None = None,
        extra_callbacks: list[Any] | None = None,
    ) -> TrialOutcome:
        settings = self.settings
        if settings.seed is not None:
            digest = zlib.crc32(json.dumps(config, sort_keys=True).encode())
            settings = replace(settings, seed=(settings.seed + digest) % (2**31 - 1))
        return fit_trial(self.build, config, reporter, settings, ckpt_path=ckpt_path, extra_callbacks=extra_callbacks)
