"""``run_ray``: one study run on a local Ray instance or a Ray cluster, mirrored into an Optuna study."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge._setup import check_choice
from tunebridge._vocab import OBJECTIVE_RULES
from tunebridge.backends._base import Objective, Progress, declared_rule, silent
from tunebridge.backends._options import StudyLimits
from tunebridge.backends.optuna import (
    StudyOptions,
    count_finished,
    limit_reached,
    open_study,
    trial_config,
)
from tunebridge.backends.ray._convert import config_key
from tunebridge.backends.ray._mirror import MIRRORS, Mirror, MirrorCallback, finished
from tunebridge.backends.ray._options import RayOptions, storage_root
from tunebridge.backends.ray._plan import RayPlan, plan_run
from tunebridge.backends.ray._trainable import train_config

__all__ = ["ensure_ray", "run_ray", "trial_dirname"]

_QUIET = ("ray.tune", "ray.train", "ray.air", "ray.data")
_STRICT = "TUNE_DISABLE_STRICT_METRIC_CHECKING"


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start an in-process local Ray (or connect to ``address``) unless Ray is already initialised.

    Quiet: no dashboard, workers' output stays in their log files, Ray logs errors only (this also
    hides the token-authentication notice Ray 2.60 prints on every start).

    Args:
        address: None for a local instance, ``"auto"`` or ``"ray://host:port"`` for a cluster.
        num_cpus: CPUs of a local instance (None: all of this machine's).
    """
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        kwargs.update(include_dashboard=False, num_cpus=num_cpus)
    ray.init(**kwargs)


def trial_dirname(trial: Any) -> str:
    """Short trial folder names: Ray's default embeds the whole config, and ``units/0`` holds a slash."""
    return f"trial_{trial.trial_id}"


@contextlib.contextmanager
def _quiet_ray(*, several_objectives: bool) -> Iterator[None]:
    # The legacy output engine honours verbose=0 completely; the new one still prints a header.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray checks that every result holds every objective, but secondary objectives (e.g. n_params)
    # exist only in a trial's final result; the reporter itself insists on the monitored metric.
    strict = os.environ.get(_STRICT)
    if several_objectives:
        os.environ[_STRICT] = "1"
    saved = [(name, logging.getLogger(name).level) for name in _QUIET]
    for name, _ in saved:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # failed trials are reported in the study
    try:
        with warnings.catch_warnings():
            # OptunaSearch reports each result to its own sampler study by training_iteration; a
            # trial resumed from a checkpoint repeats a few iterations, which Optuna warns about.
            warnings.filterwarnings("ignore", message=r".*is already reported.*")
            yield
    finally:
        for name, level in saved:
            logging.getLogger(name).setLevel(level)
        if several_objectives:
            if strict is None:
                os.environ.pop(_STRICT, None)
            else:
                os.environ[_STRICT] = strict


def _trainable(plan: RayPlan, options: RayOptions) -> Any:
    from ray import tune

    resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(train_config, plan=plan.trial), resources)


def _max_concurrent(options: RayOptions, policy: str) -> int | None:
    import ray

    if options.max_concurrent is not None:
        return options.max_concurrent
    if policy == "hyperband":
        # HyperBand fills a bracket with the trials that exist when it is created; trials created one
        # at a time as slots free up never fill one. Ray's resources still bound what runs at once.
        return None
    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    n = int(resources.get("CPU", 1) // options.cpus_per_trial)
    if options.gpus_per_trial:
        n = min(n, int(resources.get("GPU", 0) // options.gpus_per_trial))
    return max(1, n)


def _fresh_path(root: str, name: str) -> str:
    path, k = os.path.join(root, name), 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(root, f"{name}-{k}")
    return path


def _saved_trials(path: str) -> list[Any] | None:
    """The trials of an experiment as Ray saved them (None when its folder is not reachable from here)."""
    from ray.tune import ExperimentAnalysis

    try:
        return list(ExperimentAnalysis(path).trials)
    except Exception:  # e.g. a Ray client run whose experiment folder lives on the cluster
        return None


def _fit(tuner: Any, mirror: Mirror, path: str) -> None:
    """Run a Tuner with its mirror live; sync every trial afterwards; an interrupted run raises."""
    MIRRORS[path] = mirror
    mirror.experiment = os.path.basename(path)
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        with _quiet_ray(several_objectives=len(mirror.opts.metrics) > 1):
            grid = tuner.fit()
    finally:
        MIRRORS.pop(path, None)
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)  # Tune leaves its Ctrl-C handler installed after a run
    # The state Ray saved before its clean-up, not the ResultGrid's trials: on Ctrl-C Ray marks
    # the running trials TERMINATED while cleaning up, which would read as "stopped by the scheduler".
    trials = _saved_trials(path)
    if trials is None:
        trials = list(getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or [])
    mirror.sync(trials)
    unfinished = [t for t in trials if t.status != "ERROR" and not finished(t)]
    if unfinished and not mirror.stopped:  # the study's limits end a run with trials left, on purpose
        raise KeyboardInterrupt(
            f"the Ray run stopped with {len(unfinished)} unfinished trial(s); finished trials are in the study. "
            f"Resume with resume=True (tunebridge run ... --backend ray --resume); Ray's state is in {path}."
        )


class _LimitsStopper:
    """Ray's experiment-wide stop for the study limits; like :class:`MirrorCallback` it holds only a key."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        mirror = MIRRORS.get(self.key)
        if mirror is None or mirror.limits is None:
            return False
        mode = mirror.opts.modes[0] if len(mirror.opts.metrics) == 1 else None
        reason = limit_reached(mirror.study, mirror.limits, started=mirror.started, mode=mode)
        mirror.stopped = mirror.stopped or reason is not None
        if reason is not None and mirror.study.user_attrs.get(_record.STOPPED_BY) != reason:
            mirror.study.set_user_attr(_record.STOPPED_BY, reason)
            if mirror.bar is not None:
                mirror.bar.note(f"stopped before the budget: {reason}")
        return reason is not None


def _stopper(path: str) -> Any:
    from ray.tune import Stopper

    # A Stopper subclass made here: ray.tune is imported only when a Ray run starts.
    cls = type("LimitsStopper", (_LimitsStopper, Stopper), {})
    return cls(path)


def _new_tuner(plan: RayPlan, options: RayOptions, path: str) -> Any:
    from ray import tune

    checkpoint = tune.CheckpointConfig(
        num_to_keep=plan.checkpoint_keep,
        # By score, except for PBT: its clones need the recent checkpoints, whatever their score.
        checkpoint_score_attribute=plan.metric if plan.trial.checkpoint_frequency and plan.policy != "pbt" else None,
        checkpoint_score_order=plan.mode or "max",
    )
    tune_config = tune.TuneConfig(
        metric=plan.metric,
        mode=plan.mode,
        search_alg=plan.search_alg,
        scheduler=plan.scheduler,
        num_samples=plan.num_samples,
        max_concurrent_trials=_max_concurrent(options, plan.policy),
        reuse_actors=options.reuse_actors,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=os.path.basename(path),
        storage_path=os.path.dirname(path),
        verbose=0,
        callbacks=[MirrorCallback(path)],
        stop=_stopper(path),
        failure_config=tune.FailureConfig(max_failures=options.retries(), fail_fast=False),
        checkpoint_config=checkpoint,
    )
    return tune.Tuner(
        _trainable(plan, options), param_space=plan.param_space, tune_config=tune_config, run_config=run_config
    )


def run_ray(
    opts: StudyOptions,
    objective: Objective,
    *,
    n_trials: int,
    options: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: Progress = silent,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    objective_rule: str | None = None,
) -> optuna.Study:
    """Run ``objective`` over ``opts.space`` with Ray Tune; every finished trial lands in the Optuna study.

    ``n_trials`` is the study's total budget: trials already in the study count. With ``resume``,
    the study's last Ray experiment is restored first (``Tuner.restore``: unfinished trials go on
    from their latest checkpoint, errored ones stay failed); whatever budget is left afterwards runs
    as a new experiment, seeded with ``seed + trials so far`` and, for model-based samplers,
    warm-started from the study's finished trials.

    Args:
        opts: The study's options, as for the Optuna backend.
        objective: An :class:`~tunebridge.backends._base.Objective`, picklable (a Lightning
            objective, or any module-level callable); it is called with ``resume=`` when Ray
            resumes a paused trial from its checkpoint.
        n_trials: The trial budget.
        options: Ray options, see :class:`RayOptions`.
        resume: Restore the interrupted Ray experiment of this study.
        progress: Shows the study's progress (``tunebridge._progress.study_progress``); default: nothing.
        limits: Stop before the budget (wall time, target, no improvement): checked after every
            result, and the whole experiment stops (running trials end at their next report).
        keep_checkpoints: Keep the weights of this many best trials (those the objective wrote).
        objective_rule: ``best_epoch`` or ``last_epoch``: which epoch gives a trial resumed from a
            checkpoint its value; None: the rule the objective trains by
            (:func:`~tunebridge.backends._base.declared_rule`).

    Returns:
        The Optuna study holding every trial of every run of this study.

    Raises:
        ConversionError: The space, search or scheduler cannot be expressed in Ray (before any trial).
        SchemaError: ``objective_rule`` is not one of ``best_epoch``, ``last_epoch``.
        SpecMismatchError: The stored study was started from another spec.
        KeyboardInterrupt: The run was interrupted; its finished trials are in the study.
    """
    from ray import cloudpickle
    from ray.tune import Tuner

    ray_options = RayOptions.from_dict(options)
    rule = declared_rule(objective) if objective_rule is None else objective_rule
    check_choice("objective", rule, OBJECTIVE_RULES)
    payload = cloudpickle.dumps(objective)  # type: ignore[no-untyped-call]
    plan_run(opts, ray_options, n_trials=n_trials)  # refuse what Ray cannot run before anything starts
    study = open_study(opts)  # no queue: the Ray searcher decides, trials are added as they finish
    if opts.search == "grid" and _record.GRID_SIZE not in study.user_attrs:
        study.set_user_attr(_record.GRID_SIZE, len(opts.space.grid()))
    root = storage_root(ray_options, opts.storage)
    name = ray_options.name or opts.study or "tunebridge"
    done = count_finished(study.get_trials(deepcopy=False))
    with progress(study, opts, n_trials) as bar:
        if done >= n_trials:
            return study
        mirror = Mirror(study, opts, bar, keep_checkpoints=keep_checkpoints)
        mirror.limits = limits
        ensure_ray(ray_options.address)
        if resume:
            path = str(study.user_attrs.get("ray_experiment") or os.path.join(root, name))
            if Tuner.can_restore(path):
                mirror.experiment = os.path.basename(path)
                mirror.sync(_saved_trials(path) or [])  # e.g. an in-memory study: Ray still knows them
                plan = plan_run(opts, ray_options, n_trials=n_trials - done, objective=payload, rule=rule)
                tuner = Tuner.restore(
                    path, trainable=_trainable(plan, ray_options), resume_unfinished=True, resume_errored=False
                )
                _fit(tuner, mirror, path)
        trials = study.get_trials(deepcopy=False)
        done = count_finished(trials)
        if done < n_trials and not mirror.stopped:
            warm = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            plan = plan_run(
                opts,
                ray_options,
                n_trials=n_trials - done,
                objective=payload,
                offset=len(trials),
                done_configs={config_key(trial_config(opts.space, t)) for t in trials},
                warm_trials=warm,
                rule=rule,
            )
            if plan.num_samples > 0:
                path = _fresh_path(root, name)
                study.set_user_attr("ray_experiment", path)
                _fit(_new_tuner(plan, ray_options, path), mirror, path)
    return study
