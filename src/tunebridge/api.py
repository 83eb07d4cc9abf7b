"""``tunebridge.tune``: the one entry point; the spec file and the CLI are thin layers over it."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from tunebridge import _record
from tunebridge._compat import versions
from tunebridge._storage_url import is_memory
from tunebridge._vocab import BACKENDS
from tunebridge.backends._base import Objective
from tunebridge.backends.optuna import StudyOptions, WorkerOptions, open_study, run_trials, trial_config
from tunebridge.errors import SchemaError
from tunebridge.lightning import Builder, LightningObjective, TrialSettings, import_builder
from tunebridge.results import TuneResult, counts, trials_table
from tunebridge.schema import EarlyStoppingSpec, PruningSpec, Space
from tunebridge.spec import objectives

__all__ = ["TuneResult", "make_result", "run_study", "study_options", "tune"]


def study_options(
    space: Space,
    *,
    metric: str | Sequence[str],
    mode: str | Sequence[str] = "min",
    backend: str = "optuna",
    search: str = "tpe",
    pruner: PruningSpec | Mapping[str, Any] | str | None = None,
    max_epochs: int = 20,
    storage: str | None = None,
    study: str | None = None,
    seed: int | None = 0,
    spec_hash: str | None = None,
    force: bool = False,
) -> StudyOptions:
    """The one way to build a study's options: ``tune()``, ``run --jobs`` and workers all use it.

    It validates the objectives (:func:`tunebridge.spec.objectives`), the space, the budget and the
    backend, and records the package versions and the backend on the study.

    Raises:
        SchemaError: An invalid option, named with the rule and the fix.
    """
    metrics, modes = objectives(metric, mode)
    if not isinstance(space, Space):
        raise SchemaError(
            "`space` must be a tunebridge Space",
            path="space",
            value=type(space).__name__,
            fix="Build it with Space(...), Space.from_yaml(...) or a preset.",
        )
    if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
        raise SchemaError("`max_epochs` must be an integer >= 1", path="max_epochs", value=repr(max_epochs))
    if backend not in BACKENDS:
        raise SchemaError(
            "`backend` must be optuna or ray",
            path="backend",
            value=repr(backend),
            fix="Use backend='optuna' or backend='ray'.",
        )
    return StudyOptions(
        space=space,
        metrics=list(metrics),
        modes=list(modes),
        search=search,
        seed=seed,
        pruning=pruner if isinstance(pruner, PruningSpec) else PruningSpec.from_dict(pruner),
        max_epochs=max_epochs,
        storage=storage,
        study=study,
        spec_hash=spec_hash,
        force=force,
        attrs={"versions": versions(), "backend": backend},
    )


def tune(
    build: Builder | str,
    space: Space,
    *,
    metric: str | Sequence[str],
    mode: str | Sequence[str] = "min",
    backend: str = "optuna",
    trials: int = 20,
    search: str = "tpe",
    pruner: PruningSpec | Mapping[str, Any] | str | None = None,
    early_stopping: EarlyStoppingSpec | Mapping[str, Any] | bool | None = None,
    max_epochs: int = 20,
    storage: str | None = None,
    study: str | None = None,
    seed: int | None = 0,
    progress: bool = True,
    accelerator: str = "auto",
    threads: int | None = None,
    spec_hash: str | None = None,
    force: bool = False,
    ray: Mapping[str, Any] | None = None,
    resume: bool = False,
    stop: threading.Event | None = None,
    trial_timeout: float | None = None,
    heartbeat: float | None = 10.0,
    heartbeat_timeout: float | None = None,
    max_retry: int | None = 3,
    join: bool = False,
    grace_period: float | None = None,
) -> TuneResult:
    """Tune a LightningModule over ``space``.

    Args:
        build: ``build(config) -> (LightningModule, LightningDataModule)``, or ``"module:function"``.
        space: The search space.
        metric: The validation metric(s) to optimise; several make a multi-objective study
            (``n_params``, the trainable parameter count, is always available).
        mode: ``min`` or ``max`` (one per metric).
        backend: ``optuna`` or ``ray``.
        trials: The trial budget, counted across every worker of the study.
        search: ``grid``, ``random``, ``tpe``, ``gp``, ``cmaes``, ``qmc`` or ``nsga2``.
        pruner: A :class:`PruningSpec` (or its dict / policy name); epochs are the budget unit.
        early_stopping: Lightning ``EarlyStopping`` settings within a trial (True for defaults).
        max_epochs: The most epochs a trial trains.
        storage: Where the study lives: None (memory), ``sqlite:///file.db``, a database URL,
            ``redis://…`` or a journal file path. Resume = same ``study`` + same ``storage``.
        study: The study name.
        seed: Seeds the search algorithm and every trial's model.
        progress: Show one progress bar for the study.
        accelerator: Lightning accelerator for every trial.
        threads: ``torch.set_num_threads`` inside trials.
        spec_hash: Recorded on the study; a resume with another hash is refused unless ``force``.
        ray: Ray options (``address``, ``cpus_per_trial``, ``gpus_per_trial``, ``max_concurrent``, …).
        resume: Ray backend only: restore an interrupted Ray run.
        stop: Set this event to stop after the running trial.
        trial_timeout: Seconds after which a trial is stopped and marked failed.
        heartbeat: Seconds between heartbeats of the running trial (None or 0: off; always off for
            in-memory studies); a trial whose worker died (no heartbeat for ``heartbeat_timeout`` s,
            default 3 intervals) is marked failed and its config re-queued (at most ``max_retry``
            times) by the other workers.
        join: Join a study another process started, following its queue (``tunebridge worker``):
            the budget is the one the study was created with.
        grace_period: Deprecated name of ``heartbeat_timeout`` (a ``DeprecationWarning``); the
            pruning spec's ``grace_period`` (epochs) is unrelated.

    Returns:
        A :class:`TuneResult`.

    Raises:
        SchemaError: Bad options. ConversionError: the space cannot be expressed in the backend.
    """
    if grace_period is not None:
        warnings.warn(
            "tune(grace_period=...) is deprecated: it means seconds without a heartbeat, not the pruning "
            "spec's grace_period (epochs); pass heartbeat_timeout= instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        heartbeat_timeout = grace_period if heartbeat_timeout is None else heartbeat_timeout
    opts = study_options(
        space,
        metric=metric,
        mode=mode,
        backend=backend,
        search=search,
        pruner=pruner,
        max_epochs=max_epochs,
        storage=storage,
        study=study,
        seed=seed,
        spec_hash=spec_hash,
        force=force,
    )
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SchemaError("`trials` must be an integer >= 1", path="trials", value=repr(trials))
    es = (
        early_stopping
        if isinstance(early_stopping, EarlyStoppingSpec) or early_stopping is None
        else EarlyStoppingSpec.from_dict(early_stopping)
    )
    if isinstance(build, str):
        build = import_builder(build)
    settings = TrialSettings(
        metric=opts.metrics[0],
        mode=opts.modes[0],
        # One budget for every backend: Ray's schedulers stop trials at pruning.max_budget too.
        max_epochs=min(max_epochs, opts.pruning.budget(max_epochs)),
        early_stopping=es,
        seed=seed,
        accelerator=accelerator,
        threads=threads,
    )
    worker = WorkerOptions(
        stop=stop,
        trial_timeout=trial_timeout,
        heartbeat=None if is_memory(storage) else heartbeat,  # nobody else can see an in-memory study
        heartbeat_timeout=heartbeat_timeout,
        max_retry=max_retry,
        join=join,
    )
    started = time.perf_counter()
    optuna_study = run_study(
        opts,
        LightningObjective(build, settings),
        backend=backend,
        n_trials=trials,
        progress=progress,
        ray=ray,
        resume=resume,
        worker=worker,
    )
    return make_result(optuna_study, opts, wall_time=time.perf_counter() - started, backend=backend, trials=trials)


def run_study(
    opts: StudyOptions,
    objective: Objective,
    *,
    backend: str = "optuna",
    n_trials: int,
    progress: bool = False,
    ray: Mapping[str, Any] | None = None,
    resume: bool = False,
    worker: WorkerOptions | None = None,
) -> Any:
    """Run ``objective`` over ``opts.space`` with a backend; returns the Optuna study holding every trial.

    This is the backend-neutral seam the conformance suite tests: ``objective(config, reporter)``
    may be any :class:`~tunebridge.backends._base.Objective`.

    Args:
        worker: Optuna backend: how this process runs its trials (stop event, trial timeout,
            heartbeats, joining a shared study).
    """
    if backend == "optuna":
        study = open_study(opts, n_trials=n_trials)
        run_trials(study, opts, objective, n_trials=n_trials, progress=progress, worker=worker)
        return study
    if backend == "ray":
        from tunebridge.backends.ray import run_ray

        return run_ray(opts, objective, n_trials=n_trials, options=dict(ray or {}), resume=resume, progress=progress)
    raise SchemaError(
        "`backend` must be optuna or ray",
        path="backend",
        value=repr(backend),
        fix="Use backend='optuna' or backend='ray'.",
    )


def make_result(study: Any, opts: StudyOptions, *, wall_time: float, backend: str, trials: int) -> TuneResult:
    """The :class:`TuneResult` of a finished study (any backend writes its trials into an Optuna study)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_config = best_value = None
    best_metrics: dict[str, Any] = {}
    front: list[dict[str, Any]] = []
    if complete:
        if len(opts.metrics) == 1:
            best = study.best_trial
            best_value = best.value
        else:
            pareto = study.best_trials
            best = pareto[0]
            best_value = list(best.values)
            front = [
                {"number": t.number, "values": list(t.values), "config": trial_config(opts.space, t)} for t in pareto
            ]
        best_config = trial_config(opts.space, best)
        best_metrics = _record.final_metrics(best.user_attrs)
        best_metrics["epochs"] = best.user_attrs.get(_record.EPOCHS)
    record = {
        "study": study.study_name,
        "storage": opts.storage,
        "backend": backend,
        "search": opts.search,
        "seed": opts.seed,
        "spec_hash": opts.spec_hash,
        "metrics": opts.metrics,
        "modes": opts.modes,
        "trials_budget": trials,
        "wall_time_s": round(wall_time, 3),
        "counts": counts(study),
        "versions": versions(),
    }
    return TuneResult(
        best_config=best_config,
        best_value=best_value,
        best_metrics=best_metrics,
        trials=trials_table(study, opts.space),
        record=record,
        study=study,
        best_trials=front,
    )
