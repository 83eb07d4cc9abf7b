"""``tunebridge run`` and ``tunebridge worker``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tunebridge.cli._common import DEFAULT_ROOT, console, default_storage, err_console
from tunebridge.spec import RunSpec, load_spec

__all__ = ["build_for", "run_command", "study_kwargs", "tune_kwargs", "worker_command"]


def build_for(spec: RunSpec) -> Any:
    """The build function a spec names (a built-in model on a built-in dataset, or module:function)."""
    from tunebridge.lightning import builtin_builder, import_builder

    if spec.builder is not None:
        return import_builder(spec.builder, base_dir=spec.base_dir)
    assert spec.model is not None and spec.data is not None
    return builtin_builder(spec.model, spec.data, max_epochs=spec.max_epochs, seed=spec.seed)


def study_kwargs(spec: RunSpec, storage: str) -> dict[str, Any]:
    """The keyword arguments of :func:`tunebridge.api.study_options` a spec stands for."""
    return {
        "metric": list(spec.metrics),
        "mode": list(spec.modes),
        "backend": spec.backend,
        "search": spec.search,
        "pruner": spec.pruner,
        "max_epochs": spec.max_epochs,
        "storage": storage,
        "study": spec.study,
        "seed": spec.seed,
        "spec_hash": spec.hash(),
    }


def tune_kwargs(spec: RunSpec, storage: str) -> dict[str, Any]:
    """The keyword arguments of :func:`tunebridge.tune` a spec stands for."""
    return {
        **study_kwargs(spec, storage),
        "trials": spec.trials,
        "early_stopping": spec.early_stopping,
        "accelerator": spec.accelerator,
        "threads": spec.threads,
    }


def _load(path: Path, **overrides: Any) -> tuple[RunSpec, str]:
    spec = load_spec(path).with_overrides(**overrides)
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
    jobs: int,
    force: bool,
    progress: bool,
    threads: int | None,
    accelerator: str | None,
    ray: dict[str, Any],
    resume: bool,
    trial_timeout: float | None,
) -> None:
    spec, storage_url = _load(
        path,
        backend=backend,
        trials=trials,
        storage=storage,
        study=study,
        seed=seed,
        threads=threads,
        accelerator=accelerator,
    )
    if jobs > 1 and storage is None and spec.storage is None:
        # Several local processes: Optuna's journal file is the cheap, lock-safe default.
        storage_url = f"journal://{DEFAULT_ROOT}/{spec.study}.journal.log"
    out_dir = out or Path(DEFAULT_ROOT) / (spec.study or "study")
    ray_opts = {**spec.ray, **{k: v for k, v in ray.items() if v is not None}}
    from tunebridge.api import tune

    kwargs = tune_kwargs(spec, storage_url)
    started = time.perf_counter()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        if jobs > 1:
            if spec.backend != "optuna":
                raise typer.BadParameter("--jobs starts Optuna workers; with --backend ray use --max-concurrent.")
            workers = _spawn_workers(path, jobs - 1, storage_url, spec, force, trial_timeout)
        result = tune(
            build_for(spec),
            spec.space,
            force=force,
            progress=progress,
            ray=ray_opts,
            resume=resume,
            trial_timeout=trial_timeout,
            **kwargs,
        )
        for w in workers:
            w.wait()
    except KeyboardInterrupt:
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            w.wait()
        err_console.print(
            f"\n[yellow]interrupted[/]: finished trials are kept in {storage_url} (study {spec.study!r}). "
            + (
                "Run the same command with --resume to continue the unfinished trials from their checkpoints."
                if spec.backend == "ray"
                else "Run the same command again to resume."
            )
        )
        raise typer.Exit(130) from None
    result.record["wall_time_s"] = round(time.perf_counter() - started, 3)
    result.record["spec"] = str(path)
    paths = result.save(out_dir)
    _summary(result, spec, storage_url, paths)


def _spawn_workers(
    path: Path, n: int, storage: str, spec: RunSpec, force: bool, trial_timeout: float | None
) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` extra local worker processes on the same storage (processes, not threads)."""
    from tunebridge.api import study_options
    from tunebridge.backends.optuna import ensure_budget, open_study

    # Create the study and fill its queue once, before any worker starts, so that none of them races;
    # with the same options tune() builds (versions and backend recorded on the study).
    opts = study_options(spec.space, **study_kwargs(spec, storage), force=force)
    study = open_study(opts, n_trials=spec.trials)
    ensure_budget(study, spec.trials)
    cmd = [
        sys.executable,
        "-m",
        "tunebridge",
        "worker",
        str(path),
        "--storage",
        storage,
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
    if trial_timeout:
        cmd += ["--trial-timeout", str(trial_timeout)]
    return [subprocess.Popen(cmd) for _ in range(n)]


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
) -> None:
    spec, storage_url = _load(path, storage=storage, study=study, trials=trials, seed=seed, threads=threads)
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
    signal.signal(signal.SIGTERM, on_signal)
    kwargs = tune_kwargs(spec, storage_url)
    try:
        result = tune(
            build_for(spec),
            spec.space,
            force=force,
            progress=False,
            stop=stop,
            join=True,
            trial_timeout=trial_timeout,
            heartbeat=heartbeat,
            heartbeat_timeout=heartbeat_timeout,
            max_retry=max_retry,
            **kwargs,
        )
    except KeyboardInterrupt:
        err_console.print("[yellow]worker stopped[/]: its running trial was marked failed and re-queued.")
        raise typer.Exit(130) from None
    c = result.record["counts"]
    console.print(
        f"worker done: study {spec.study!r} has {c['complete']} complete, {c['pruned']} pruned, "
        f"{c['fail']} failed trials"
    )


def _summary(result: Any, spec: RunSpec, storage: str, paths: dict[str, Path]) -> None:
    c = result.record["counts"]
    table = Table(title=f"study {spec.study!r} ({spec.backend}, {spec.search})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    metric = ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes))
    table.add_row("best value", f"{result.best_value} [{metric}]")
    table.add_row("best config", json.dumps(result.best_config))
    requeued = f", {c['requeued']} interrupted and re-run" if c.get("requeued") else ""
    table.add_row("trials", f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed{requeued}")
    table.add_row("wall time", f"{result.record['wall_time_s']:.1f} s")
    table.add_row("storage", storage)
    table.add_row("best.yaml", str(paths["best"]))
    console.print(table)
