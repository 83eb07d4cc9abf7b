"""The ``tunebridge`` command line: a thin layer over :func:`tunebridge.tune`.

Imports stay light here: ``tunebridge --help`` and ``tunebridge check`` never import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunebridge.cli._common import DEFAULT_ROOT, fail_on_tunebridge_errors

__all__ = ["app", "main"]

app = typer.Typer(
    name="tunebridge",
    help="One hyperparameter schema for Optuna and Ray Tune around PyTorch Lightning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[
    Path,
    typer.Argument(
        help="The spec file (YAML), or the name of a bundled recipe (`tunebridge recipes`).", show_default=False
    ),
]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="Study storage URL (default: the spec's, else a SQLite file).")
]
StudyOpt = Annotated[str | None, typer.Option("--study", help="Study name (default: the spec's, else its file name).")]
FuseOpt = Annotated[
    str | None,
    typer.Option(
        help="Train up to K trials at once as one fused model (auto or K; built-in MLP/ConvNet or a module with fused hooks; optuna backend)."
    ),
]
PrintMetricsOpt = Annotated[
    bool,
    typer.Option(
        "--print-metrics",
        help="Print each epoch's metrics as `epoch=E name=value` lines (Kubeflow Katib's StdOut collector).",
    ),
]


@app.command()
def run(
    spec: SpecArg,
    backend: Annotated[str | None, typer.Option(help="optuna or ray (default: the spec's).")] = None,
    trials: Annotated[int | None, typer.Option(help="Trial budget for the whole study.")] = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the search and of every trial.")] = None,
    out: Annotated[Path | None, typer.Option(help=f"Output folder (default: {DEFAULT_ROOT}/STUDY).")] = None,
    jobs: Annotated[
        str,
        typer.Option(
            help="Local worker processes sharing the study (optuna backend), or auto: one per visible GPU "
            "(per --gpus-per-job GPUs), 1 without a GPU."
        ),
    ] = "1",
    gpus_per_job: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="GPUs each local worker sees (CUDA_VISIBLE_DEVICES): worker i gets GPUs i*G..i*G+G-1 of the "
            "visible ones; this process is worker 0. Default: 1 with --jobs auto, else no restriction.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Resume even if the spec changed since the study started.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    threads: Annotated[int | None, typer.Option(help="torch threads per trial.")] = None,
    accelerator: Annotated[str | None, typer.Option(help="Lightning accelerator: auto, cpu, gpu.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (auto, ray://host:port).")] = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="Ray: CPUs per trial.")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="Ray: GPUs per trial (fractions allowed).")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="Ray: trials running at once.")] = None,
    resume: Annotated[bool, typer.Option(help="Ray: restore an interrupted Ray run.")] = False,
    trial_timeout: Annotated[
        float | None, typer.Option(help="Seconds after which a trial is stopped and failed.")
    ] = None,
    fuse: FuseOpt = None,
    print_metrics: PrintMetricsOpt = False,
) -> None:
    """Run (or resume) the study a spec describes; print a summary and write best.yaml."""
    from tunebridge.cli._run import run_command

    with fail_on_tunebridge_errors(storage):
        run_command(
            spec,
            backend=backend,
            trials=trials,
            storage=storage,
            study=study,
            seed=seed,
            out=out,
            jobs=jobs,
            gpus_per_job=gpus_per_job,
            force=force,
            progress=progress,
            threads=threads,
            accelerator=accelerator,
            ray={
                "address": address,
                "cpus_per_trial": cpus_per_trial,
                "gpus_per_trial": gpus_per_trial,
                "max_concurrent": max_concurrent,
            },
            resume=resume,
            trial_timeout=trial_timeout,
            fuse=fuse,
            print_metrics=print_metrics,
        )


@app.command()
def worker(
    spec: SpecArg,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            envvar="TUNEBRIDGE_STORAGE",  # how `run --jobs` hands it over: a password in argv shows in `ps`
            help="Study storage URL (default: the spec's, else a SQLite file).",
        ),
    ] = None,
    study: StudyOpt = None,
    trials: Annotated[
        int | None, typer.Option(help="Trial budget, used if this worker creates the study (others follow its queue).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (must match the study's).")] = None,
    drain: Annotated[bool, typer.Option(help="On SIGINT/SIGTERM, let the running trial finish.")] = False,
    force: Annotated[bool, typer.Option(help="Join even if the spec changed since the study started.")] = False,
    threads: Annotated[int | None, typer.Option(help="torch threads per trial.")] = None,
    trial_timeout: Annotated[
        float | None, typer.Option(help="Seconds after which a trial is stopped and failed.")
    ] = None,
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeats of the running trial.")] = 10.0,
    heartbeat_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds without heartbeat before a trial's worker counts as dead (default 3 heartbeats)."),
    ] = None,
    max_retry: Annotated[int, typer.Option(help="How often a dead worker's config is re-queued.")] = 3,
    fuse: FuseOpt = None,
    print_metrics: PrintMetricsOpt = False,
) -> None:
    """Join a shared study as one worker; stops when the study's trial budget is reached."""
    from tunebridge.cli._run import worker_command

    with fail_on_tunebridge_errors(storage):
        worker_command(
            spec,
            storage=storage,
            study=study,
            trials=trials,
            seed=seed,
            drain=drain,
            force=force,
            threads=threads,
            trial_timeout=trial_timeout,
            heartbeat=heartbeat,
            heartbeat_timeout=heartbeat_timeout,
            max_retry=max_retry,
            fuse=fuse,
            print_metrics=print_metrics,
        )


@app.command()
def check(
    spec: SpecArg,
    sample: Annotated[
        int, typer.Option(min=0, help="Also print N configs as the spec's backend draws them with search: random.")
    ] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed of --sample (default: the spec's).")] = None,
) -> None:
    """Pre-flight a spec without training: ranges, conditions, grid size, the compiled Optuna form."""
    from tunebridge.cli._check import check_command

    with fail_on_tunebridge_errors():
        check_command(spec, sample=sample, seed=seed)


@app.command()
def show(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    top: Annotated[int, typer.Option("--top", "--limit", min=1, help="Show at most this many trials.")] = 20,
    columns: Annotated[
        str | None,
        typer.Option(help="Columns to show, comma-separated (e.g. number,value,lr,val_loss; default: what fits)."),
    ] = None,
    sort: Annotated[
        str | None, typer.Option(help="Sort by this column (-COL: descending; default: best value first).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or markdown.")] = "table",
) -> None:
    """Show a study's record (spec hash, seed, versions) and its trials table."""
    from tunebridge.cli._show import show_command

    with fail_on_tunebridge_errors(storage):
        show_command(study, storage=storage, top=top, columns=columns, sort=sort, fmt=fmt)


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: tunebridge-runs/STUDY/report).")] = None,
) -> None:
    """Write report.html (interactive plots, run record, trials; works offline) and PNGs for a study."""
    from tunebridge.cli._report import report_command

    with fail_on_tunebridge_errors(storage):
        report_command(study, storage=storage, out=out)


@app.command()
def recipes(
    copy: Annotated[
        Path | None, typer.Option("--copy", help="Write editable copies of every recipe into this folder.")
    ] = None,
    force: Annotated[bool, typer.Option(help="With --copy: overwrite files of the same name.")] = False,
) -> None:
    """List the bundled recipes (`tunebridge run NAME` runs one), or copy them with --copy DIR."""
    from tunebridge.cli._common import console, esc
    from tunebridge.cli._recipes import copy_recipes, list_recipes

    with fail_on_tunebridge_errors():
        if copy is None:
            list_recipes()
            return
        written = copy_recipes(copy, force=force)
        console.print(esc(f"wrote {len(written)} recipes into {copy}: {', '.join(p.name for p in written)}"))
        console.print(esc(f"run one with: tunebridge run {copy / 'digits_mlp.yaml'}"), highlight=False)


import_app = typer.Typer(
    help="Write a tunebridge spec from another tool's search config.", no_args_is_help=True, add_completion=False
)
app.add_typer(import_app, name="import")


@import_app.command("hydra-sweeper")
def import_hydra_sweeper(
    config: Annotated[
        Path, typer.Argument(help="The hydra-optuna-sweeper config, e.g. configs/hparams_search/mnist_optuna.yaml.")
    ],
    out: Annotated[Path | None, typer.Option(help="The spec to write (default: tunebridge_NAME.yaml here).")] = None,
    config_dir: Annotated[
        Path | None, typer.Option(help="The Hydra config folder (default: the folder above the sweeper config's).")
    ] = None,
    config_name: Annotated[str, typer.Option(help="The primary config's name (@hydra.main's config_name).")] = "train",
    force: Annotated[bool, typer.Option(help="Overwrite the spec file.")] = False,
) -> None:
    """A hydra-optuna-sweeper config (hparams_search/X.yaml) as a spec: the same search, with pruning."""
    from tunebridge.cli._import import import_hydra_sweeper as write

    with fail_on_tunebridge_errors():
        write(config, out=out, config_dir=config_dir, config_name=config_name, force=force)


def main() -> None:
    """Console-script entry point."""
    app()
