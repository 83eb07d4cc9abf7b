"""Fused cohorts spread over a Ray cluster: one cohort worker per GPU, all sharing the run's Optuna study.

``backend: ray`` with ``fuse:`` uses Ray as the engine that places work on nodes: the driver creates the
study (its queue holds the budget), then starts cohort workers as Ray tasks, each reserving
``gpus_per_trial`` GPUs (default: 1 when the cluster has GPUs) and ``cpus_per_trial`` CPUs. Each worker
runs :func:`tunebridge.fused._loop.run_fused` as a joining worker of the shared study, on its GPU if it
has one: it claims trials from the same queue, so the budget is exact, a grid point runs once, and a lost
worker's trials are re-queued by the heartbeat rules, as with ``tunebridge worker`` processes. How many
workers: ``max_concurrent``, else the cluster's GPUs // ``gpus_per_trial``, else (no GPUs) one per node.

The study must live where every worker reaches it: a database (PostgreSQL), Redis, or on one machine a
SQLite or journal file; an in-memory study is refused before any trial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tunebridge._storage_url import is_memory
from tunebridge.backends import ResumePlan, StudyLimits, StudyOptions, WorkerOptions
from tunebridge.errors import SchemaError

__all__ = ["cohort_workers", "run_fused_on_ray"]


def cohort_workers(resources: dict[str, float], n_nodes: int, options: Any) -> tuple[int, float, float]:
    """How many cohort workers to start, and the GPUs and CPUs each reserves (see the module docstring)."""
    gpus = float(options.gpus_per_trial) if options.gpus_per_trial else (1.0 if resources.get("GPU") else 0.0)
    cpus = float(options.cpus_per_trial)
    if options.max_concurrent:
        return int(options.max_concurrent), gpus, cpus
    if gpus:
        return max(1, int(resources.get("GPU", 0) // gpus)), gpus, cpus
    return max(1, n_nodes), gpus, cpus


def _worker(
    opts: StudyOptions,
    build: Callable[[dict[str, Any]], Any],
    settings: Any,
    n_trials: int,
    capacity: int | str,
    worker: WorkerOptions,
    limits: StudyLimits | None,
    keep_checkpoints: int,
    resume: ResumePlan | None = None,
) -> int:
    """One cohort worker (a Ray task): join the study and train cohorts until its queue is done."""
    from tunebridge.backends.optuna import open_study
    from tunebridge.fused._loop import run_fused

    study = open_study(opts, n_trials=n_trials)
    stats = run_fused(
        study,
        opts,
        build,
        settings,
        n_trials=n_trials,
        capacity=capacity,
        worker=worker,
        limits=limits,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
    )
    return stats.members


def run_fused_on_ray(
    opts: StudyOptions,
    build: Callable[[dict[str, Any]], Any],
    settings: Any,
    *,
    n_trials: int,
    capacity: int | str,
    ray: Any = None,
    worker: WorkerOptions | None = None,
    limits: StudyLimits | None = None,
    keep_checkpoints: int = 1,
    resume: ResumePlan | None = None,
) -> Any:
    """Train the study's queue in fused cohorts on Ray workers; returns the Optuna study.

    ``resume``: the study's resume points (None: none), written and read by every worker: a member that a
    lost worker leaves goes on from its last one on any worker that sees the folder (one machine, or a
    shared filesystem).

    Raises:
        SchemaError: The study is in memory (Ray workers could not share it).
    """
    import ray as ray_module

    from tunebridge.backends.optuna import ensure_budget, open_study
    from tunebridge.backends.ray import RayOptions, ensure_ray

    if is_memory(opts.storage):
        raise SchemaError(
            "fused cohorts on Ray share the run's study between Ray workers, so it cannot be in memory",
            path="storage",
            value=repr(opts.storage),
            fix="Give a storage every worker reaches: postgresql://… or redis://… on a cluster, "
            "sqlite:///runs.db or a journal file on one machine (tunebridge run uses tunebridge-runs/tunebridge.db).",
        )
    options = RayOptions.from_dict(ray)
    ensure_ray(options.address)
    study = open_study(opts, n_trials=n_trials)  # created here, with its budget in the queue
    ensure_budget(study, n_trials)  # a resume with a larger budget
    nodes: list[dict[str, Any]] = ray_module.nodes()  # type: ignore[no-untyped-call]
    alive = len([node for node in nodes if node.get("Alive")])
    resources: dict[str, float] = ray_module.cluster_resources()  # type: ignore[no-untyped-call]
    n, gpus, cpus = cohort_workers(resources, alive, options)
    joining = dataclasses.replace(worker or WorkerOptions(), join=True, stop=None)  # an Event does not travel
    task = ray_module.remote(num_gpus=gpus, num_cpus=cpus, max_retries=0)(_worker)
    args = (opts, build, settings, n_trials, capacity, joining, limits, keep_checkpoints, resume)
    refs = [task.remote(*args) for _ in range(n)]
    try:
        ray_module.get(refs)
    except (KeyboardInterrupt, SystemExit):
        for ref in refs:
            ray_module.cancel(ref)
        raise
    study.set_user_attr("fused_ray_workers", n)
    return study
