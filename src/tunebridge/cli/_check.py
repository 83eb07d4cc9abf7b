"""``tunebridge check``: pre-flight a spec without training (never imports torch)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.measure import Measurement
from rich.table import Table

from tunebridge._imports import can_find
from tunebridge.cli._common import console, default_storage, esc, print_error, shown_url
from tunebridge.cli._recipes import resolve_spec
from tunebridge.errors import ConversionError, SchemaError
from tunebridge.schema import EarlyStoppingSpec, Fixed, Float, Int, Param, PruningSpec, Scalar, Space
from tunebridge.spec import load_spec

__all__ = ["check_command", "describe_values", "early_stopping_text", "pruner_text", "sample_table"]


def describe_values(p: Param) -> str:
    """Every value a parameter can reach, in words (both bounds inclusive)."""
    if isinstance(p, (Int, Float)):
        text = f"[{p.low:g}, {p.high:g}]"
        if p.step not in (None, 1):
            text += f" step {p.step:g}"
        if p.log:
            text += " log"
        small = (isinstance(p, Int) and p.size() <= 8) or (
            isinstance(p, Float) and p.step is not None and (p.high - p.low) <= 7 * p.step
        )
        numbers = p.enumerate() if small else None  # never materialise a huge range
        if numbers is not None:
            text += " = " + ", ".join(f"{v:g}" for v in numbers)
        if p.grid is not None:
            text += f"; grid {list(p.grid)}"
        return text
    values = p.enumerate() or ()
    shown = ", ".join(repr(v) for v in values)
    return shown + (" (ordered)" if getattr(p, "ordered", False) else "")


def _grid_size(space: Space) -> str:
    for name, p in space.items():
        try:
            next(iter(p.iter_grid_values()), None)
        except SchemaError:
            return f"n/a: float {name!r} has neither `step` nor a `grid:` list"
    try:
        return str(len(space.grid(max_size=100_000)))
    except SchemaError as e:
        return f"n/a: {e.rule} ({e.value})"


def _compact(dist: object) -> str:
    """Optuna's distribution in a few words (the repr is too wide for a table)."""
    name = type(dist).__name__.replace("Distribution", "")
    if hasattr(dist, "choices"):
        return f"{name}({len(dist.choices)} choices)"
    low, high, step = getattr(dist, "low", 0), getattr(dist, "high", 0), getattr(dist, "step", None)
    extra = (", log" if getattr(dist, "log", False) else "") + (f", step={step:g}" if step not in (None, 1) else "")
    return f"{name}({low:g}, {high:g}{extra})"


def _cell(value: Scalar) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sample_table(space: Space, configs: list[dict[str, Scalar]], title: str) -> Table:
    """Configs as rows with one column per parameter when that fits the console, else ``key=value`` lines.

    Inactive parameters are empty in the wide form and absent in the narrow one.
    """
    rank = {name: i for i, name in enumerate(space.order)}
    keys = sorted({k for c in configs for k in c}, key=lambda k: (rank[k.split("/")[0]], int(k.partition("/")[2] or 0)))
    wide = Table(title=esc(title), min_width=min(len(title), console.width))  # an unwrapped title
    wide.add_column("#", justify="right")
    for key in keys:
        wide.add_column(esc(key), no_wrap=True)
    for i, config in enumerate(configs):
        wide.add_row(str(i), *(esc(_cell(config[k])) if k in config else "" for k in keys))
    if Measurement.get(console, console.options.update_width(10_000), wide).maximum <= console.width:
        return wide
    narrow = Table(title=esc(title), show_lines=True)
    narrow.add_column("#", justify="right")
    narrow.add_column("config (active parameters)", overflow="fold")
    for i, config in enumerate(configs):
        narrow.add_row(str(i), esc("  ".join(f"{k}={_cell(v)}" for k, v in config.items())))
    return narrow


def pruner_text(pruner: PruningSpec, max_epochs: int) -> str:
    """The pruner with the values it will use (only the options its policy reads)."""
    budget = pruner.budget(max_epochs)
    if pruner.policy == "none":
        return "none (every trial runs to its budget or early stop)"
    if pruner.policy == "patience":
        return f"patience: {pruner.patience} epochs without an improvement of {pruner.min_delta:g}"
    if pruner.policy == "median":
        return f"median: from epoch {pruner.grace_period} on, below the median of earlier trials at that epoch"
    rungs, rung = [], pruner.grace_period
    while rung < budget:
        rungs.append(rung)
        rung *= pruner.reduction_factor
    return (
        f"{pruner.policy}: grace_period {pruner.grace_period}, reduction_factor {pruner.reduction_factor}, "
        f"budget {budget} epochs" + (f" (rungs at epochs {', '.join(map(str, rungs))})" if rungs else "")
    )


def early_stopping_text(spec: EarlyStoppingSpec | None, metric: str, mode: str) -> str:
    """Early stopping with its monitor and mode resolved (they default to the run's metric and mode)."""
    if spec is None:
        return "off"
    return (
        f"monitor {spec.monitor or metric} ({spec.mode or mode}), patience {spec.patience} validations, "
        f"min_delta {spec.min_delta:g}"
    )


def check_command(path: Path, *, sample: int = 0, seed: int | None = None) -> None:
    """Print the space and run tables, then ``sample`` configs drawn with ``seed`` (default: the spec's)."""
    path = resolve_spec(path)
    spec = load_spec(path)
    space = spec.space
    from tunebridge.backends.optuna import distribution, independent_params

    table = Table(title=esc(f"space of {path.name} ({len(space)} parameters)"))
    for col in ("parameter", "kind", "reachable values", "active when", "per layer", "optuna"):
        table.add_column(col)
    problems: list[str] = []
    for name in space.order:
        p = space[name]
        when = " and ".join(f"{parent} in {list(values)}" for parent, values in p.when) or "always"
        per_layer = f"{name}/0..{name}/{space.max_layers(name) - 1} by {p.per_layer}" if p.per_layer else ""
        if isinstance(p, Fixed):
            compiled = "fixed (not sampled)"
        else:
            try:
                compiled = esc(_compact(distribution(name, p)))
                if getattr(p, "ordered", False):
                    compiled += " (samplers model its order)"
            except ConversionError as e:
                compiled = "[red]cannot be expressed[/]"
                problems.append(str(e))
        table.add_row(esc(name), esc(p.kind), esc(describe_values(p)), esc(when), esc(per_layer), compiled)
    console.print(table)
    builder = spec.builder or f"built-in {spec.model} on {spec.data}"
    if spec.hydra is not None:  # checked against the composed config when a run starts (Hydra is not imported here)
        builder = f"Hydra config {os.path.join(spec.hydra.config_dir, spec.hydra.config_name)}.yaml"
        builder += f" with {' '.join(spec.hydra.overrides)}" if spec.hydra.overrides else ""
    elif spec.lightning_cli is not None:
        builder = f"LightningCLI config {', '.join(spec.lightning_cli.config)}"
    if spec.builder:
        module = spec.builder.split(":")[0]
        if not can_find(module, base_dir=spec.base_dir):
            problems.append(f"builder module {module!r} cannot be found from {spec.base_dir} or sys.path")
    summary = Table(show_header=False, title="run")
    summary.add_column(style="bold")
    summary.add_column()
    rows = {
        "study": spec.study,
        "model": builder,
        "metric": ", ".join(f"{m} ({d})" for m, d in zip(spec.metrics, spec.modes)),
        "search": f"{spec.search}, {spec.trials} trials, seed {spec.seed}",
        "backend": spec.backend,
        "budget": f"{spec.max_epochs} epochs",
        "pruner": pruner_text(spec.pruner, spec.max_epochs),
        "early stopping": early_stopping_text(spec.early_stopping, spec.metrics[0], spec.modes[0]),
        "grid size": _grid_size(space),
        "conditional": str(space.is_conditional()),
        "storage": shown_url(spec.storage or default_storage()),
        "spec hash": spec.hash()[:16],
    }
    random_params = independent_params(spec.search, space)
    if random_params:
        rows["search"] = (
            f"{rows['search']}; drawn at random (not modelled by {spec.search}): {', '.join(random_params)}"
        )
    for key, value in rows.items():
        summary.add_row(key, esc(value))
    console.print(summary)
    if problems:
        for problem in problems:
            print_error(problem)
        raise typer.Exit(2)
    if sample:
        seed = spec.seed if seed is None else seed
        configs = space.sample(sample, seed=seed, backend=spec.backend)
        table = sample_table(
            space, configs, f"{sample} configs as search: random draws them ({spec.backend}, seed {seed})"
        )
        if spec.search != "random":
            table.caption = esc(f"the spec searches with {spec.search}, whose configs differ from these")
        console.print(table)
    console.print("[green]ok[/]: the spec is valid")
