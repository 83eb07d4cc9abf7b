"""``tunebridge run`` and ``tunebridge worker``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tunebridge.backends import PREEMPTED_EXIT_CODE, preemption_requested
from tunebridge.cli._common import DEFAULT_ROOT, console, default_storage, err_console, esc, shown_url
from tunebridge.cli._gpus import plan_jobs, restrict_this_process, visible_gpus, worker_env
from tunebridge.cli._recipes import resolve_spec
from tunebridge.errors import SchemaError
from tunebridge.spec import RunSpec, load_spec

__all__ = ["STORAGE_ENV", "build_for", "run_command", "worker_command"]

# Spawned workers read the storage URL from the environment: a password in argv is visible to `ps`.
STORAGE_ENV = "TUNEBRIDGE_STORAGE"


def build_for(spec: RunSpec) -> Any:
    """The build function a spec names (a built-in model on a built-in dataset, or module:function)."""
    from tunebridge.lightning import builtin_builder, import_builder

    if spec.builder is not None:
        return import_builder(spec.builder, base_dir=spec.base_dir)
    if spec.lightning_cli is not None:  # each trial is the project's config with its values applied
        from tunebridge.lightning import cli_builder

        return cli_builder(spec.lightning_cli, spec.space, base_dir=spec.base_dir, max_epochs=spec.max_epochs)
    if spec.hydra is not None:  # each trial is the project's composed config with its values as overrides
        from tunebridge.lightning import hydra_builder

        return hydra_builder(spec.hydra, spec.space, base_dir=spec.base_dir, max_epochs=spec.max_epochs)
    assert spec.model is not None and spec.data is not None
    return builtin_builder(spec.model, spec.data, max_epochs=spec.max_epochs, seed=spec.seed)


def _load(path: Path, *, fuse: str | None = None, **overrides: Any) -> tuple[RunSpec, str]:
    spec = load_spec(path).with_overrides(**overrides)
    if fuse is not None:  # --fuse auto|K overrides the spec's `fuse:`
        from dataclasses import replace

        from tunebridge.spec import parse_run_sections

        value: int | str = fuse if fuse == "auto" else int(fuse) if fuse.isdigit() else fuse
        spec = replace(spec, run=replace(spec.run, fuse=parse_run_sections({"fuse": value}).fuse))
    return spec, spec.storage or default_storage()


def run_command(
    path: Path,
    *,
    backend: str | None,
    trials: int | None,
    storage: str | None,
    study: str | None,
    seed: int | None,
    out: Path | None,
    jobs: str,
    force: bool,
    progress: bool,
    threads: int | None,
    accelerator: str | None,
    ray: dict[str, Any],
    resume: bool,
    trial_timeout: float | None,
    gpus_per_job: int | None = None,
    fuse: str | None = None,
    print_metrics: bool = False,
) -> None:
    path = resolve_spec(path)
    spec, storage_url = _load(
        path,
        backend=backend,
        trials=trials,
        storage=storage,
        study=study,
        seed=seed,
        threads=threads,
        accelerator=accelerator,
        fuse=fuse,
    )
    from tunebridge.lightning import follower_trial

    if follower_trial() is not None:  # a DDP rank Lightning launched by re-running this command: no workers
        jobs, gpus_per_job = "1", None
    wants_gpus = jobs.strip().lower() == "auto" or bool(gpus_per_job)
    plan = plan_jobs(jobs, gpus_per_job, visible_gpus() if wants_gpus else None)
    if spec.backend != "optuna" and (plan.jobs > 1 or plan.gpus_per_job):
        raise SchemaError(
            "`--jobs` and `--gpus-per-job` start local Optuna workers",
            path="--jobs",
            value=f"--jobs {jobs} with backend {spec.backend!r}",
            fix="With --backend ray use --max-concurrent and --gpus-per-trial.",
        )
    if plan.note:
        err_console.print(esc(plan.note), highlight=False)
    # The run process is worker 0 and trains too: restrict it before torch is imported below.
    restrict_this_process(plan.devices[0])
    if plan.jobs > 1 and storage is None and spec.storage is None:
        # Several local processes: Optuna's journal file is the cheap, lock-safe default.
        storage_url = f"journal://{DEFAULT_ROOT}/{spec.study}.journal.log"
    out_dir = out or Path(DEFAULT_ROOT) / (spec.study or "study")
    ray_flags = {k: v for k, v in ray.items() if v is not None}
    from tunebridge.api import tune

    kwargs = _with_printer(spec.tune_kwargs(storage_url), print_metrics)
    started = time.perf_counter()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        if plan.jobs > 1:
            workers = _spawn_workers(path, plan.devices[1:], storage_url, spec, force, trial_timeout)
        run = {**kwargs.pop("run"), "force": force, "progress": progress}
        if spec.backend == "ray":
            run["ray"] = {**spec.ray, **ray_flags, **({"restore": True} if resume else {})}
        elif ray_flags or resume:
            flags = [f"--{k.replace('_', '-')}" for k in ray_flags] + (["--resume"] if resume else [])
            raise SchemaError(
                "these options are the Ray backend's",
                path=flags[0],
                value=" ".join(flags) + f" with backend {spec.backend!r}",
                fix="Add --backend ray, or drop them (an Optuna study resumes by running the same command again).",
            )
        if trial_timeout is not None:
            run["workers"] = {"trial_timeout": trial_timeout}
        result = tune(build_for(spec), spec.space, run=run, **kwargs)
        for w in workers:
            w.wait()
    except KeyboardInterrupt:
        preempted = preemption_requested()
        for w in workers:
            w.send_signal(signal.SIGTERM if preempted else signal.SIGINT)
        for w in workers:
            w.wait()
        if preempted:
            _preempted(storage_url, spec.study)
        err_console.print(
            f"\n[yellow]interrupted[/]: finished trials are kept in {esc(shown_url(storage_url))} "
            f"(study {esc(repr(spec.study))}). "
            + (
                "Run the same command with --resume to continue the unfinished trials from their checkpoints."
                if spec.backend == "ray"
                else "Run the same command again to resume."
            ),
            soft_wrap=True,  # a URL broken over two lines cannot be copied
        )
        raise typer.Exit(130) from None
    result.record["wall_time_s"] = round(time.perf_counter() - started, 3)
    result.record["spec"] = str(path)
    if isinstance(result.record.get("storage"), str):  # record.json never holds a password
        result.record["storage"] = shown_url(result.record["storage"])
    paths = result.save(out_dir)
    _summary(result, spec, storage_url, paths)


def _spawn_workers(
    path: Path,
    devices: tuple[str | None, ...],
    storage: str,
    spec: RunSpec,
    force: bool,
    trial_timeout: float | None,
) -> list[subprocess.Popen[bytes]]:
    """Start one more local worker process per entry of ``devices`` (its CUDA_VISIBLE_DEVICES, or None)."""
    from tunebridge.api import study_options
    from tunebridge.backends.optuna import ensure_budget, open_study

    # Create the study and fill its queue once, before any worker starts, so that none of them races;
    # with the same options tune() builds (versions and backend recorded on the study).
    opts = study_options(spec.space, **spec.study_kwargs(storage), force=force)
    study = open_study(opts, n_trials=spec.trials)
    ensure_budget(study, spec.trials)
    cmd = [
        sys.executable,
        "-m",
        "tunebridge",
        "worker",
        str(path),
        "--study",
        str(spec.study),
        "--trials",
        str(spec.trials),
        "--seed",
        str(spec.seed),
    ]
    if force:
        cmd.append("--force")
    if spec.threads:
        cmd += ["--threads", str(spec.threads)]
    if spec.run.fuse is not None:
        cmd += ["--fuse", str(spec.run.fuse)]
    if trial_timeout:
        cmd += ["--trial-timeout", str(trial_timeout)]
    # With --gpus-per-job every worker gets its own CUDA_VISIBLE_DEVICES; without, they inherit this one's.
    base = {**os.environ, STORAGE_ENV: storage}
    return [subprocess.Popen(cmd, env=worker_env(base, d)) for d in devices]


def worker_command(
    path: Path,
    *,
    storage: str | None,
    study: str | None,
    trials: int | None,
    seed: int | None,
    drain: bool,
    force: bool,
    threads: int | None,
    trial_timeout: float | None,
    heartbeat: float = 10.0,
    heartbeat_timeout: float | None = None,
    max_retry: int = 3,
    fuse: str | None = None,
    print_metrics: bool = False,
) -> None:
    path = resolve_spec(path)
    spec, storage_url = _load(path, storage=storage, study=study, trials=trials, seed=seed, threads=threads, fuse=fuse)
    from tunebridge.api import tune

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        if drain and len(received) == 1:
            err_console.print("[yellow]draining[/]: the running trial finishes, then this worker stops.")
            stop.set()
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    if drain:  # otherwise SIGTERM is a preemption: the study's loop takes it (backends/_preempt.py)
        signal.signal(signal.SIGTERM, on_signal)
    kwargs = _with_printer(spec.tune_kwargs(storage_url), print_metrics)
    try:
        workers = {
            "stop": stop,
            "join": True,
            "trial_timeout": trial_timeout,
            "heartbeat": heartbeat,
            "heartbeat_timeout": heartbeat_timeout,
            "max_retry": max_retry,
        }
        run = {**kwargs.pop("run"), "force": force, "progress": False, "workers": workers}
        result = tune(build_for(spec), spec.space, run=run, **kwargs)
    except KeyboardInterrupt:
        if preemption_requested():
            _preempted(storage_url, spec.study)
        err_console.print(
            "[yellow]worker stopped[/]: its running trial was re-queued; the next worker goes on from its "
            "last resume point."
        )
        raise typer.Exit(130) from None
    c = result.record["counts"]
    console.print(
        esc(
            f"worker done: study {spec.study!r} in {shown_url(storage_url)} has {c['complete']} complete, "
            f"{c['pruned']} pruned, {c['fail']} failed trials"
        ),
        highlight=False,
    )


def _preempted(storage: str, study: str | None) -> None:
    """SIGTERM: the running trials were re-queued with their resume points; exit with the code schedulers retry on."""
    err_console.print(
        f"[yellow]preempted[/] (SIGTERM): the running trials of study {esc(repr(study))} in "
        f"{esc(shown_url(storage))} were re-queued with their resume points; exit code {PREEMPTED_EXIT_CODE}.",
        soft_wrap=True,
    )
    raise typer.Exit(PREEMPTED_EXIT_CODE)


def _with_printer(kwargs: dict[str, Any], print_metrics: bool) -> dict[str, Any]:
    """``--print-metrics``: one more callback that prints every epoch's metrics for Katib's StdOut collector."""
    if print_metrics:
        from tunebridge.lightning import metrics_printer

        kwargs["trainer"]["callbacks"] = (*kwargs["trainer"]["callbacks"], metrics_printer)
    return kwargs


def _summary(result: Any, spec: RunSpec, storage: str, paths: dict[str, Path]) -> None:
    c = result.record["counts"]
    table = Table(title=esc(f"study {spec.study!r} ({spec.backend}, {spec.search})"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    metric = ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes))
    requeued = f", {c['requeued']} interrupted and re-run" if c.get("requeued") else ""
    rows = {
        "best value": f"{result.best_value} [{metric}]",
        "best config": json.dumps(result.best_config),
        "trials": f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed{requeued}",
        "wall time": f"{result.record['wall_time_s']:.1f} s",
        "storage": shown_url(storage),
        "best.yaml": str(paths["best"]),
    }
    if result.best_checkpoint:
        rows["best checkpoint"] = str(result.best_checkpoint)
    if "best_command" in paths:  # a Hydra project: the best trial by its own entry point
        rows["best command"] = str(result.record.get("best_command") or paths["best_command"])
        rows["best_overrides.yaml"] = str(paths["best_overrides"])
    if "fused_efficiency" in result.record:
        k = result.record.get("fused_capacity")
        rows["fused efficiency"] = f"{result.record['fused_efficiency']:.0%} of the work paid was useful (padding)" + (
            f"; up to {k} trials at once" if k else ""
        )
    if result.record.get("stopped_by"):
        rows["stopped"] = str(result.record["stopped_by"])
    for key, value in rows.items():
        table.add_row(key, esc(value))
    console.print(table)
