"""``tunebridge.tune``: the one entry point; the spec file and the CLI are thin layers over it."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tunebridge import _record
from tunebridge._compat import versions
from tunebridge._rules import check_backend, check_int, check_study_name
from tunebridge._setup import check_rules, early_stopping_spec, initial_configs, run_folder
from tunebridge._storage_url import is_memory
from tunebridge.backends import Objective, Progress, StudyLimits, silent
from tunebridge.backends.optuna import StudyOptions, WorkerOptions, open_study, run_trials
from tunebridge.errors import SchemaError
from tunebridge.lightning import (
    Builder,
    LightningObjective,
    TrialSettings,
    callback_factories,
    check_trainer_options,
    follower_trial,
    import_builder,
)
from tunebridge.results import TuneResult, make_result
from tunebridge.schema import EarlyStoppingSpec, PruningSpec, Space
from tunebridge.spec import objectives

__all__ = ["TuneResult", "make_result", "run_study", "study_options", "tune"]


def study_options(
    space: Space,
    *,
    metric: str | Sequence[str],
    mode: str | Sequence[str] = "min",
    backend: str = "optuna",
    search: str | Mapping[str, Any] | object = "tpe",
    pruner: PruningSpec | Mapping[str, Any] | str | object | None = None,
    max_epochs: int = 20,
    storage: str | None = None,
    study: str | None = None,
    seed: int | None = 0,
    spec_hash: str | None = None,
    force: bool = False,
) -> StudyOptions:
    """The one way to build a study's options: ``tune()``, ``run --jobs`` and workers all use it.

    It validates the objectives (:func:`tunebridge.spec.objectives`), the space, the budget, the
    backend and the search and pruner, and records the package versions and the backend on the study.

    Args:
        search: A search algorithm's name (``"tpe"``), or a mapping of its name and options
            (``{"name": "tpe", "n_startup_trials": 20}``), or your own object: an
            ``optuna.samplers.BaseSampler`` (either backend; on Ray it runs through ``OptunaSearch``)
            or a Ray Tune ``Searcher`` (Ray backend, flat spaces). An object is used as given, with
            its own seed; the study records its search as ``custom:<class name>``.
        pruner: A :class:`PruningSpec` (or its dict / policy name), or your own object: an
            ``optuna.pruners.BasePruner`` (Optuna backend) or a Ray Tune ``TrialScheduler`` (Ray
            backend) without a metric or mode of its own.

    Raises:
        SchemaError: An invalid option, named with the rule and the fix.
        ConversionError: An object the backend cannot use (e.g. a Ray scheduler with backend='optuna').
    """
    from tunebridge._search import check_object, object_kind, parse_search  # standard library only

    metrics, modes = objectives(metric, mode)
    if not isinstance(space, Space):
        raise SchemaError(
            "`space` must be a tunebridge Space",
            path="space",
            value=type(space).__name__,
            fix="Build it with Space(...), Space.from_yaml(...) or a preset.",
        )
    check_int(max_epochs, 1, path="max_epochs", fix="Pass the trial budget in epochs, e.g. max_epochs=20.")
    check_backend(backend, rule="`backend` must be optuna or ray", fix="Use backend='optuna' or backend='ray'.")
    if study is not None:
        check_study_name(study)
    check_object("search", search, backend)
    check_object("pruner", pruner, backend)
    sampler = search if object_kind(search) is not None else None
    name, search_options = ("tpe", {}) if sampler is not None else parse_search(search)
    scheduler = pruner if object_kind(pruner) is not None else None
    if scheduler is not None:
        pruning = PruningSpec()  # the user's object prunes; the spec keeps only the budget (max_epochs)
    else:
        pruning = pruner if isinstance(pruner, PruningSpec) else PruningSpec.from_dict(pruner)
    return StudyOptions(
        space=space,
        metrics=list(metrics),
        modes=list(modes),
        search=name,
        search_options=search_options,
        sampler=sampler,
        scheduler=scheduler,
        seed=seed,
        pruning=pruning,
        max_epochs=max_epochs,
        storage=storage,
        study=study,
        spec_hash=spec_hash,
        force=force,
        attrs={_record.VERSIONS: versions(), _record.BACKEND: backend},
    )


def tune(
    build: Builder | str,
    space: Space,
    *,
    metric: str | Sequence[str],
    mode: str | Sequence[str] = "min",
    backend: str = "optuna",
    trials: int = 20,
    search: str | Mapping[str, Any] | object = "tpe",
    pruner: PruningSpec | Mapping[str, Any] | str | object | None = None,
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
    trainer: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] | None = None,
    logger: str | None = None,
    log_dir: str | None = None,
    objective: str = "best_epoch",
    keep_checkpoints: int = 1,
    checkpoint_dir: str | None = None,
    timeout: float | None = None,
    target: float | None = None,
    patience_trials: int | None = None,
    enqueue: Sequence[Mapping[str, Any]] | None = None,
    warm_start: str | Mapping[str, Any] | None = None,
    fuse: int | str | None = None,
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
        search: ``grid``, ``random``, ``tpe``, ``gp``, ``cmaes``, ``qmc`` or ``nsga2``, or
            ``{"name": "tpe", **options}``, or your own ``optuna`` sampler (either backend) or Ray
            Tune searcher (Ray backend).
        pruner: A :class:`PruningSpec` (or its dict / policy name; epochs are the budget unit), or
            your own ``optuna`` pruner (Optuna backend) or Ray Tune scheduler (Ray backend).
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
        trainer: Any ``Trainer`` keyword (``precision``, ``gradient_clip_val``, ``devices``, ``strategy``, …);
            the ones tunebridge sets itself are refused with where to set them instead.
        callbacks: Your Lightning callbacks, fresh for every trial: instances (deep-copied), classes
            or factories, ``"module:Class"`` or ``{"class_path": ..., "init_args": {...}}``.
        logger: ``tensorboard``, ``csv`` or ``mlflow``: one run per trial, grouped by study, with the
            trial's config as hyperparameters, under ``log_dir`` (default: next to the study).
        objective: ``best_epoch`` (default: early stopping trains past the best epoch, whose weights
            are kept) or ``last_epoch``: which epoch's metrics are the trial's value.
        keep_checkpoints: Keep the weights of the reported epoch of this many best trials (0: none),
            in ``checkpoint_dir`` (default: next to the study); :meth:`TuneResult.load_best` loads them.
        timeout: Seconds of wall time for this run; no trial starts after it.
        target: Stop once the best value reaches it.
        patience_trials: Stop when the best value has not improved over this many finished trials.
        enqueue: Configs to evaluate first (each validated against the space).
        warm_start: A ``best.yaml`` path, an earlier study's name (its 5 best configs) or
            ``{"study": NAME, "storage": URL, "top_k": K}``: evaluated first.
        fuse: Train up to this many trials at once as one vectorized model (``"auto"``: from free
            device memory and the model's size): the built-in MLP and ConvNet, or your module with
            ``fused_loss``/``fused_metrics`` hooks; on the ``accelerator``'s device; with ``backend="ray"``
            as cohort workers on Ray (one per GPU). Each member is an ordinary trial and trains as it
            would alone (see :mod:`tunebridge.fused`).

    Returns:
        A :class:`TuneResult`.

    Raises:
        SchemaError: Bad options. ConversionError: the space cannot be expressed in the backend.
    """
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
    check_int(trials, 1, path="trials", fix="Pass how many trials to run, e.g. trials=20.")
    check_rules(objective=objective, logger=logger, keep_checkpoints=keep_checkpoints)
    limits = StudyLimits(timeout=timeout, target=target, patience_trials=patience_trials)
    if len(opts.metrics) > 1 and (target is not None or patience_trials is not None):
        raise SchemaError(
            "`stop` needs one objective (a best value)",
            path="stop",
            value=repr({"target": target, "patience_trials": patience_trials}),
            fix="Use timeout: for multi-objective studies.",
        )
    opts.enqueue = initial_configs(space, enqueue=enqueue, warm_start=warm_start, storage=storage)
    if isinstance(build, str):
        build = import_builder(build)
    # Files of a study without a name get a folder of their own (two such studies must not share trial_N.ckpt).
    folder = study if study is not None else f"unnamed-{uuid.uuid4().hex[:8]}"
    settings = TrialSettings(
        metric=opts.metrics[0],
        mode=opts.modes[0],
        # One budget for every backend: Ray's schedulers stop trials at pruning.max_budget too.
        max_epochs=min(max_epochs, opts.pruning.budget(max_epochs)),
        early_stopping=early_stopping_spec(early_stopping),
        seed=seed,
        accelerator=accelerator,
        threads=threads,
        trainer_kwargs=check_trainer_options(trainer),
        callbacks=callback_factories(callbacks),
        logger=logger,
        log_dir=os.path.abspath(log_dir) if log_dir else run_folder(storage, folder, "logs"),
        study=study,
        checkpoint_dir=None
        if keep_checkpoints == 0
        else os.path.abspath(checkpoint_dir or run_folder(storage, folder, "checkpoints")),
        objective=objective,
    )
    follower = follower_trial()
    if follower is not None:  # a DDP rank > 0 that Lightning launched for a trial of this run: train it, exit
        LightningObjective(build, settings)(*follower)
        raise SystemExit(0)
    worker = WorkerOptions(
        stop=stop,
        trial_timeout=trial_timeout,
        heartbeat=None if is_memory(storage) else heartbeat,  # nobody else can see an in-memory study
        heartbeat_timeout=heartbeat_timeout,
        max_retry=max_retry,
        join=join,
    )
    started = time.perf_counter()
    capacity = None
    if fuse is not None:
        from tunebridge.fused import fuse_capacity

        trainer_only = {"trainer": trainer, "callbacks": callbacks, "logger": logger, "trial_timeout": trial_timeout}
        capacity = fuse_capacity(fuse, backend, accelerator=accelerator, **trainer_only)
    if capacity is not None and backend == "ray":  # fused cohort workers as Ray tasks, sharing the study
        from tunebridge.fused import run_fused_on_ray

        optuna_study = run_fused_on_ray(
            opts,
            build,
            settings,
            n_trials=trials,
            capacity=capacity,
            ray=ray,
            worker=worker,
            limits=limits,
            keep_checkpoints=keep_checkpoints,
        )
    elif capacity is not None:  # fused cohorts: an execution engine in front of the same study and queue
        from tunebridge.fused import run_fused

        optuna_study = open_study(opts, n_trials=trials)
        run_fused(
            optuna_study,
            opts,
            build,
            settings,
            n_trials=trials,
            capacity=capacity,
            progress=_display(progress),
            worker=worker,
            limits=limits,
            keep_checkpoints=keep_checkpoints,
        )
    else:
        optuna_study = run_study(
            opts,
            LightningObjective(build, settings),
            backend=backend,
            n_trials=trials,
            progress=progress,
            ray=ray,
            resume=resume,
            worker=worker,
            limits=limits,
            keep_checkpoints=keep_checkpoints,
        )
    result = make_result(optuna_study, opts, wall_time=time.perf_counter() - started, backend=backend, trials=trials)
    result.build = build
    return result


def _display(progress: bool) -> Progress:
    """The progress display a backend tells its events to: the study's bar, or nothing."""
    if not progress:
        return silent
    from tunebridge._progress import study_progress

    return study_progress


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
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
) -> Any:
    """Run ``objective`` over ``opts.space`` with a backend; returns the Optuna study holding every trial.

    This is the backend-neutral seam the conformance suite tests: ``objective(config, reporter)``
    may be any :class:`~tunebridge.backends._base.Objective`.

    Args:
        worker: Optuna backend: how this process runs its trials (stop event, trial timeout,
            heartbeats, joining a shared study).
        limits: Stop before the budget (wall time, target value, no improvement).
        keep_checkpoints: Keep the weights of this many best trials (those the objective wrote).
    """
    if backend == "optuna":
        study = open_study(opts, n_trials=n_trials)
        run_trials(
            study,
            opts,
            objective,
            n_trials=n_trials,
            progress=_display(progress),
            worker=worker,
            limits=limits,
            keep_checkpoints=keep_checkpoints,
        )
        return study
    if backend == "ray":
        from tunebridge.backends.ray import run_ray

        return run_ray(
            opts,
            objective,
            n_trials=n_trials,
            options=dict(ray or {}),
            resume=resume,
            progress=_display(progress),
            limits=limits,
            keep_checkpoints=keep_checkpoints,
        )
    raise SchemaError(
        "`backend` must be optuna or ray",
        path="backend",
        value=repr(backend),
        fix="Use backend='optuna' or backend='ray'.",
    )
