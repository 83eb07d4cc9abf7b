"""``tunebridge.tune``: the one entry point; the spec file and the CLI are thin layers over it."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from tunebridge import _record
from tunebridge._compat import versions
from tunebridge._rules import check_backend, check_int, check_study_name
from tunebridge._setup import early_stopping_spec, initial_configs, run_folder
from tunebridge._storage_url import is_memory
from tunebridge.backends import Objective, Progress, ResumeOptions, ResumePlan, StudyLimits, silent
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
from tunebridge.options import RunOptions, TrainerOptions
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
    max_epochs: int = 20,
    search: str | Mapping[str, Any] | object = "tpe",
    pruner: PruningSpec | Mapping[str, Any] | str | object | None = None,
    early_stopping: EarlyStoppingSpec | Mapping[str, Any] | bool | None = None,
    storage: str | None = None,
    study: str | None = None,
    seed: int | None = 0,
    trainer: TrainerOptions | Mapping[str, Any] | None = None,
    run: RunOptions | Mapping[str, Any] | None = None,
) -> TuneResult:
    """Tune a LightningModule over ``space``.

    >>> import tunebridge
    >>> from tunebridge.lightning import builtin
    >>> space = tunebridge.Space({"lr": tunebridge.Float(1e-3, 1e-1, log=True)})
    >>> result = tunebridge.tune(builtin.mlp_builder("digits"), space, metric="val_loss", trials=2,
    ...     max_epochs=1, trainer={"accelerator": "cpu"}, run={"progress": False})  # doctest: +SKIP

    Args:
        build: ``build(config) -> (LightningModule, LightningDataModule)``, or ``"module:function"``.
        space: The search space.
        metric: The validation metric(s) to optimise; several make a multi-objective study
            (``n_params``, the trainable parameter count, is always available).
        mode: ``min`` or ``max`` (one per metric).
        backend: ``optuna`` or ``ray``.
        trials: The trial budget, counted across every worker of the study.
        max_epochs: The most epochs a trial trains.
        search: ``grid``, ``random``, ``tpe``, ``gp``, ``cmaes``, ``qmc`` or ``nsga2``, or
            ``{"name": "tpe", **options}``, or your own ``optuna`` sampler (either backend) or Ray
            Tune searcher (Ray backend).
        pruner: A :class:`PruningSpec` (or its dict / policy name; epochs are the budget unit), or
            your own ``optuna`` pruner (Optuna backend) or Ray Tune scheduler (Ray backend).
        early_stopping: Lightning ``EarlyStopping`` settings within a trial (True for defaults).
        storage: Where the study lives: None (memory), ``sqlite:///file.db``, a database URL,
            ``redis://…`` or a journal file path. Resume = same ``study`` + same ``storage``.
        study: The study name.
        seed: Seeds the search algorithm and every trial's model.
        trainer: How every trial's ``Trainer`` runs: :class:`~tunebridge.options.TrainerOptions`
            (``accelerator``, ``threads``, ``callbacks``, ``logger``, ``log_dir``) or a mapping of
            those and any other ``Trainer`` keyword, e.g. ``{"accelerator": "cpu", "precision": "bf16-mixed"}``.
        run: What the study keeps and how it runs: :class:`~tunebridge.options.RunOptions`
            (``objective``, ``fuse``, ``progress``, ``checkpoints``, ``stop``, ``enqueue``,
            ``warm_start``, ``workers``, ``ray``, ``spec_hash``, ``force``) or a mapping of them,
            e.g. ``{"fuse": 8, "stop": {"timeout": 3600}, "ray": {"address": "auto"}}``. An option
            the backend would ignore is refused with the reason.

    Returns:
        A :class:`TuneResult`.

    Raises:
        SchemaError: Bad options. ConversionError: the space cannot be expressed in the backend.
    """
    trial_opts = TrainerOptions.of(trainer)
    run = RunOptions.of(run)
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
        spec_hash=run.spec_hash,
        force=run.force,
    )
    check_int(trials, 1, path="trials", fix="Pass how many trials to run, e.g. trials=20.")
    run.check_backend(backend)
    limits = run.stop
    if len(opts.metrics) > 1 and (limits.target is not None or limits.patience_trials is not None):
        raise SchemaError(
            "`stop` needs one objective (a best value)",
            path="stop",
            value=repr({"target": limits.target, "patience_trials": limits.patience_trials}),
            fix="Use timeout: for multi-objective studies.",
        )
    opts.enqueue = initial_configs(space, enqueue=run.enqueue or None, warm_start=run.warm_start, storage=storage)
    if isinstance(build, str):
        build = import_builder(build)
    # Files of a study without a name get a folder of their own (two such studies must not share trial_N.ckpt).
    folder = study if study is not None else f"unnamed-{uuid.uuid4().hex[:8]}"
    keep = run.checkpoints.keep
    settings = TrialSettings(
        metric=opts.metrics[0],
        mode=opts.modes[0],
        # One budget for every backend: Ray's schedulers stop trials at pruning.max_budget too.
        max_epochs=min(max_epochs, opts.pruning.budget(max_epochs)),
        early_stopping=early_stopping_spec(early_stopping, metric=opts.metrics[0], mode=opts.modes[0]),
        seed=seed,
        accelerator=trial_opts.accelerator,
        threads=trial_opts.threads,
        trainer_kwargs=check_trainer_options(trial_opts.options),
        callbacks=callback_factories(trial_opts.callbacks),
        logger=trial_opts.logger,
        log_dir=os.path.abspath(trial_opts.log_dir) if trial_opts.log_dir else run_folder(storage, folder, "logs"),
        study=study,
        checkpoint_dir=None
        if keep == 0
        else os.path.abspath(run.checkpoints.dir or run_folder(storage, folder, "checkpoints")),
        objective=run.objective,
    )
    follower = follower_trial()
    if follower is not None:  # a DDP rank > 0 that Lightning launched for a trial of this run: train it, exit
        config, reporter, resume = follower
        LightningObjective(build, settings)(config, reporter, resume=resume)
        raise SystemExit(0)
    worker = run.worker_options(in_memory=is_memory(storage))
    plan = _resume_plan(run, storage, folder, opts.spec_hash)
    started = time.perf_counter()
    capacity = None
    if run.fuse is not None:
        from tunebridge.fused import fuse_capacity

        trainer_only = {
            "trainer": dict(trial_opts.options),
            "callbacks": trial_opts.callbacks,
            "logger": trial_opts.logger,
            "trial_timeout": worker.trial_timeout,
        }
        capacity = fuse_capacity(run.fuse, backend, accelerator=trial_opts.accelerator, **trainer_only)
    if capacity is not None and backend == "ray":  # fused cohort workers as Ray tasks, sharing the study
        from tunebridge.fused import run_fused_on_ray

        optuna_study = run_fused_on_ray(
            opts,
            build,
            settings,
            n_trials=trials,
            capacity=capacity,
            ray=run.ray,
            worker=worker,
            limits=limits,
            keep_checkpoints=keep,
            resume=plan,
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
            progress=_display(run.progress),
            worker=worker,
            limits=limits,
            keep_checkpoints=keep,
            resume=plan,
        )
    else:
        optuna_study = run_study(
            opts,
            LightningObjective(build, settings),
            backend=backend,
            n_trials=trials,
            progress=run.progress,
            ray=_ray_checkpoints(run) if backend == "ray" else run.ray,
            worker=worker,
            limits=limits,
            keep_checkpoints=keep,
            resume=plan,
        )
    result = make_result(optuna_study, opts, wall_time=time.perf_counter() - started, backend=backend, trials=trials)
    result.build = build
    return result


def _resume_plan(run: RunOptions, storage: str | None, folder: str, spec_hash: str | None) -> ResumePlan | None:
    """Where this study's resume points go: ``resume`` next to its checkpoints (None: off, or an
    in-memory study, which no other process can resume)."""
    if not isinstance(run.resume, ResumeOptions) or is_memory(storage):
        return None
    if run.checkpoints.dir:
        root = os.path.join(os.path.dirname(os.path.abspath(run.checkpoints.dir)), "resume")
    else:
        root = run_folder(storage, folder, "resume")
    known = versions()
    # What decides whether a checkpoint loads and trains on the same way; the other packages may differ.
    wanted = {k: known[k] for k in ("tunebridge", "torch", "lightning", "pytorch-lightning") if k in known}
    # A fused member's point is not a Lightning checkpoint, and the reverse: `fuse` is not in the spec hash.
    meta = {"spec_hash": spec_hash, "versions": wanted, "fused": run.fuse is not None}
    return ResumePlan(root, run.resume, meta=meta)


def _ray_checkpoints(run: RunOptions) -> Mapping[str, Any] | Any:
    """Ray's options with resume points on: a checkpoint every ``resume.every_epochs`` epochs (unless
    ``checkpoint_frequency`` or PBT says otherwise), so that a trial whose actor or node dies, or a run
    rerun with ``restore``, goes on from its last epoch (Ray's own restore)."""
    ray = run.ray or {}
    if not isinstance(run.resume, ResumeOptions):
        return ray
    data = dict(ray) if isinstance(ray, Mapping) else dataclasses.asdict(ray)
    if data.get("checkpoint_frequency") is None and data.get("scheduler") != "pbt":
        data["checkpoint_frequency"] = run.resume.every_epochs or 1
    return data


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
    ray: Mapping[str, Any] | Any | None = None,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    resume: ResumePlan | None = None,
) -> Any:
    """Run ``objective`` over ``opts.space`` with a backend; returns the Optuna study holding every trial.

    This is the backend-neutral seam the conformance suite tests: ``objective(config, reporter)``
    may be any :class:`~tunebridge.backends._base.Objective`.

    Args:
        worker: Optuna backend: how this process runs its trials (stop event, trial timeout,
            heartbeats, joining a shared study).
        limits: Stop before the budget (wall time, target value, no improvement).
        keep_checkpoints: Keep the weights of this many best trials (those the objective wrote).
        resume: Optuna backend: the study's resume points (None: none).
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
            resume=resume,
        )
        return study
    if backend == "ray":
        from tunebridge.backends.ray import RayOptions, run_ray

        return run_ray(
            opts,
            objective,
            n_trials=n_trials,
            options=ray,
            resume=RayOptions.from_dict(ray).restore,
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
