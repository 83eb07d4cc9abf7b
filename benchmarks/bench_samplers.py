"""Search algorithms on digits: best-so-far val_acc over 60 trials for grid, random, tpe, gp and cmaes.

Run:  python benchmarks/bench_samplers.py [--seeds 0 1 2 3 4] [--trials 60] [--quick] [--png PATH] [--json PATH]

The space is numeric and has a grid of exactly 60 configs (5 lr x 3 momentum x 4 dropout, each grid
spanning the range with both bounds), so every algorithm searches the same ranges, CMA-ES and GP model
every parameter jointly (neither falls back to independent random draws), and the grid is enumerated
completely within the budget. The MLP is fixed (2 x 64 relu, SGD with momentum, batch 64); 4 epochs
(10 did not fit in ~25 min for 1500 trials on 2 shared CPU cores; the early stopping set below, patience 4,
only acts with --epochs above 5), no pruning, unfused (a fused cohort claims several trials at once,
which changes what TPE, GP and CMA-ES see), in-memory study, one thread.

`--inspect` shows, on the digits_mlp recipe's space (categorical and conditional parameters), which
parameters CMA-ES and GP model jointly after 12 one-epoch trials, and which are drawn at random instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import tunebridge
from tunebridge.lightning import builtin_builder
from tunebridge.schema import Space

SEARCHES = ("grid", "random", "tpe", "gp", "cmaes")
SPACE = """
n_layers: {type: fixed, value: 2}
units: {type: fixed, value: 64}
activation: {type: fixed, value: relu}
batch_size: {type: fixed, value: 64}
optimizer: {type: fixed, value: momentum}
lr: {type: float, low: 0.0001, high: 0.1, log: true, grid: [0.0001, 0.00056234, 0.0031623, 0.017783, 0.1]}
momentum: {type: float, low: 0.5, high: 0.99, grid: [0.5, 0.745, 0.99]}
dropout: {type: float, low: 0.0, high: 0.5, grid: [0.0, 0.16667, 0.33333, 0.5]}
"""
EARLY_STOPPING = {"patience": 4, "min_delta": 0.001}
CHECKPOINTS = (10, 20, 30, 45, 60)


def run_one(seed: int, search: str, *, trials: int, max_epochs: int, space: Space) -> dict[str, Any]:
    """One study: the values of its trials in finishing order (None for a failed one)."""
    build = builtin_builder("mlp", "digits", max_epochs=max_epochs, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = tunebridge.tune(
            build,
            space,
            metric="val_acc",
            mode="max",
            search=search,
            trials=trials,
            max_epochs=max_epochs,
            early_stopping=EARLY_STOPPING,
            seed=seed,
            storage=None,
            trainer={"accelerator": "cpu", "threads": 1},
            run={"progress": False, "checkpoints": {"keep": 0, "dir": str(Path(tmp) / "ckpt")}},
        )
        wall = time.perf_counter() - started
    done = [t for t in result.study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    done.sort(key=lambda t: t.datetime_complete)
    values = [t.value if t.state.name == "COMPLETE" else None for t in done]
    return {"seed": seed, "search": search, "wall": wall, "values": values}


def best_so_far(values: list[float | None]) -> list[float]:
    out, best = [], float("nan")
    for v in values:
        if v is not None and not (best >= v):  # also replaces the initial nan
            best = v
        out.append(best)
    return out


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[1], q[2]


def table(runs: list[dict[str, Any]], trials: int) -> str:
    marks = [c for c in CHECKPOINTS if c < trials] + [trials]
    seeds = sorted({r["seed"] for r in runs})
    lines = [
        "| search | " + " | ".join(f"after {c}" for c in marks) + " | wall per study (s) |",
        "|---|" + "---|" * (len(marks) + 1),
    ]
    for search in SEARCHES:
        rs = [r for r in runs if r["search"] == search]
        if not rs:
            continue
        curves = [best_so_far(r["values"]) for r in rs]
        cells = []
        for c in marks:
            lo, med, hi = quartiles([cv[min(c, len(cv)) - 1] for cv in curves])
            cells.append(f"{med:.4f} [{lo:.4f}, {hi:.4f}]")
        wall = statistics.median(r["wall"] for r in rs)
        lines.append(f"| {search} | " + " | ".join(cells) + f" | {wall:.1f} |")
    lines += ["", "Final best val_acc per seed:", ""]
    lines.append("| search | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    lines.append("|---|" + "---|" * len(seeds))
    for search in SEARCHES:
        by_seed = {r["seed"]: best_so_far(r["values"])[-1] for r in runs if r["search"] == search}
        if by_seed:
            lines.append(f"| {search} | " + " | ".join(f"{by_seed.get(s, float('nan')):.4f}" for s in seeds) + " |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path, *, epochs: int) -> None:
    """Best-so-far val_acc per trial: the median over seeds and the inter-quartile band, per search."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"grid": "#7f7f7f", "random": "#1f77b4", "tpe": "#d62728", "gp": "#2ca02c", "cmaes": "#9467bd"}
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(12, 4.6))
    n_seeds = len({r["seed"] for r in runs})
    lowest, zoom_low, zoom_high = 1.0, 1.0, 0.0
    for search in SEARCHES:
        curves = [best_so_far(r["values"]) for r in runs if r["search"] == search]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        xs = list(range(1, n + 1))
        q = [quartiles([c[i] for c in curves]) for i in range(n)]
        lo, med, hi = ([t[k] for t in q] for k in range(3))
        for axis in (ax, zoom):
            axis.step(xs, med, where="post", color=colors[search], lw=1.8, label=search)
            axis.fill_between(xs, lo, hi, step="post", color=colors[search], alpha=0.15)
        lowest = min(lowest, med[min(9, n - 1)])
        if search != "grid":  # the grid's order decides its curve: zoom on the adaptive searches
            zoom_low, zoom_high = min(zoom_low, med[n // 3]), max(zoom_high, hi[-1])
    ax.set_ylim(max(lowest - 0.01, 0.0), None)
    zoom.set_ylim(zoom_low - 0.003, zoom_high + 0.002)
    zoom.set_xlim(n // 3 if runs else 1, None)
    zoom.set_title("zoomed on the last two thirds (the grid enters late)", fontsize=9)
    for axis in (ax, zoom):
        axis.set_xlabel("trial")
        axis.set_ylabel("best val_acc so far")
        axis.grid(alpha=0.3)
    ax.set_title(f"median and IQR over {n_seeds} seeds", fontsize=9)
    zoom.legend(loc="lower right")
    fig.suptitle(
        f"digits MLP 2x64, SGD momentum, {epochs} epochs: lr, momentum, dropout (grid: 5 x 3 x 4 = 60 configs)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def inspect_recipe_space() -> None:
    """Which parameters CMA-ES and GP model jointly on the recipe's space (the rest is drawn at random)."""
    from tunebridge.cli._recipes import BUNDLED
    from tunebridge.spec import load_spec

    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    build = builtin_builder("mlp", "digits", max_epochs=1, seed=0)
    for search in ("cmaes", "gp"):
        result = tunebridge.tune(
            build,
            spec.space,
            metric="val_acc",
            mode="max",
            search=search,
            trials=12,
            max_epochs=1,
            seed=0,
            storage=None,
            trainer={"accelerator": "cpu", "threads": 1},
            run={"progress": False, "checkpoints": {"keep": 0}},
        )
        study = result.study
        joint = study.sampler.infer_relative_search_space(study, study.trials[-1])
        every = sorted({name for t in study.trials for name in t.params})
        print(
            f"{search}: {type(study.sampler).__name__} models {sorted(joint)} jointly; "
            f"drawn independently at random: {[p for p in every if p not in joint]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 12 trials, 3 epochs")
    parser.add_argument("--png", type=Path, default=None, help="write the figure here")
    parser.add_argument("--json", type=Path, default=None, help="write (and with --replot read) the raw runs here")
    parser.add_argument("--replot", action="store_true", help="only re-analyse and re-plot --json")
    parser.add_argument("--inspect", action="store_true", help="what CMA-ES and GP model on the recipe's space")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.inspect:
        inspect_recipe_space()
        return
    space = Space.from_yaml(SPACE)
    seeds, trials, epochs = ([0, 1], 12, 3) if args.quick else (args.seeds, args.trials, args.epochs)
    if args.replot:
        runs = json.loads(args.json.read_text())
    else:
        print(f"grid size: {len(space.grid())} configs; {trials} trials x {epochs} epochs max")
        run_one(99, "random", trials=2, max_epochs=1, space=space)  # warm-up: imports and the first Lightning run
        runs = []
        for seed in seeds:
            for search in args.searches:
                r = run_one(seed, search, trials=trials, max_epochs=epochs, space=space)
                runs.append(r)
                print(
                    f"seed {seed} {search:>6}: best {best_so_far(r['values'])[-1]:.4f} in {r['wall']:.1f} s", flush=True
                )
                if args.json:
                    args.json.write_text(json.dumps(runs))
    print(table(runs, len(runs[0]["values"])))
    if args.png:
        plot(runs, args.png, epochs=3 if args.quick else args.epochs)
        print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
