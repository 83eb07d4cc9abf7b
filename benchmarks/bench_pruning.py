"""Pruners with and without early stopping on the digits_mlp recipe: trial-epochs and wall time to a good val_acc.

Run:  python benchmarks/bench_pruning.py [--seeds 0 1 2 3 4] [--trials 30] [--quick] [--png PATH] [--json PATH]

Eight variants per seed (pruner none | median | asha | hyperband, each with and without early stopping), all
on the recipe's space, budget (max_epochs 20), TPE search and pruning settings (grace_period 3,
reduction_factor 3; early stopping patience 4, min_delta 0.001), unfused, in-memory study, one thread.

The measure, per seed:
  reference  = the best val_acc reached by any of the eight variants for that seed;
  target     = reference * (1 - 0.005)  (within 0.5 %);
  epochs to target = trial-epochs trained (sum of every trial's `epochs`, pruned ones included, in the
                     order trials finished) up to and including the first complete trial whose value
                     reaches the target; wall to target likewise, from the start of tune().
A variant that never reaches the target in a seed counts as "not reached" (infinite); the totals
(epochs and wall of the whole 30-trial run) and the final best val_acc are reported too, and the same
table within 1 % (0.5 % is ~1.8 of the 360 validation images). Prints markdown tables; writes the raw
per-trial data (--json, incrementally) and the figure (--png); --replot redraws from --json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import tunebridge
from tunebridge.cli._recipes import BUNDLED
from tunebridge.lightning import builtin_builder
from tunebridge.spec import load_spec

POLICIES = ("none", "median", "asha", "hyperband")
WITHIN = 0.005  # "within 0.5 % of the best val_acc": relative
# 0.5 % of ~0.99 is 1.8 of the 360 validation images: the target asks for the best to within one
# image. 1 % (three images) is reported beside it, to show how much the reading hangs on that one image.
LOOSER = 0.01


def variants() -> list[tuple[str, bool]]:
    return [(policy, es) for es in (False, True) for policy in POLICIES]


def label(policy: str, es: bool) -> str:
    return f"{policy}{' + ES' if es else ''}"


def run_one(seed: int, policy: str, es: bool, *, trials: int, max_epochs: int | None) -> dict[str, Any]:
    """One study; the per-trial record (state, value, epochs, seconds from the start) in finishing order."""
    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    budget = max_epochs or spec.max_epochs
    build = builtin_builder("mlp", "digits", max_epochs=budget, seed=seed)
    kwargs = spec.tune_kwargs(None)
    kwargs.pop("spec_hash", None)
    recipe = spec.tune_kwargs(None)["pruner"]
    pruner = (
        None
        if policy == "none"
        else {"policy": policy, "grace_period": recipe.grace_period, "reduction_factor": recipe.reduction_factor}
    )
    kwargs.update(
        trials=trials,
        seed=seed,
        storage=None,
        progress=False,
        accelerator="cpu",
        threads=1,
        max_epochs=budget,
        pruner=pruner,
        early_stopping=spec.early_stopping if es else None,
        fuse=None,  # fused cohorts claim several trials at once: the finishing order would not be one trial at a time
    )
    with tempfile.TemporaryDirectory() as tmp:
        kwargs["checkpoint_dir"] = str(Path(tmp) / "ckpt")
        t0 = datetime.now()
        started = time.perf_counter()
        result = tunebridge.tune(build, spec.space, **kwargs, run={"spec_hash": None})
        wall = time.perf_counter() - started
    done = [t for t in result.study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    done.sort(key=lambda t: t.datetime_complete)
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "epochs": int(t.user_attrs.get("epochs", len(t.intermediate_values))),
            "t": (t.datetime_complete - t0).total_seconds(),
        }
        for t in done
    ]
    return {"seed": seed, "policy": policy, "es": es, "wall": wall, "best": result.best_value, "trials": rows}


def to_target(run: dict[str, Any], target: float) -> tuple[float, float]:
    """(trial-epochs, seconds) until the first complete trial at or above ``target``; inf when never."""
    epochs = 0
    for row in run["trials"]:
        epochs += row["epochs"]
        if row["state"] == "COMPLETE" and row["value"] is not None and row["value"] >= target:
            return float(epochs), float(row["t"])
    return math.inf, math.inf


def analyse(runs: list[dict[str, Any]], within: float = WITHIN) -> dict[tuple[str, bool], dict[str, Any]]:
    """Per variant: per-seed (epochs, wall, best, total epochs, total wall) and their medians."""
    seeds = sorted({r["seed"] for r in runs})
    reference = {s: max(r["best"] for r in runs if r["seed"] == s) for s in seeds}
    out: dict[tuple[str, bool], dict[str, Any]] = {}
    for policy, es in variants():
        per_seed = {}
        for r in runs:
            if r["policy"] != policy or r["es"] != es:
                continue
            e, w = to_target(r, reference[r["seed"]] * (1 - within))
            total = sum(row["epochs"] for row in r["trials"])
            pruned = sum(row["state"] == "PRUNED" for row in r["trials"])
            per_seed[r["seed"]] = {
                "epochs": e,
                "wall": w,
                "best": r["best"],
                "total_epochs": total,
                "total_wall": r["wall"],
                "pruned": pruned,
            }
        if not per_seed:
            continue
        med = {k: statistics.median(v[k] for v in per_seed.values()) for k in next(iter(per_seed.values()))}
        reached = sum(math.isfinite(v["epochs"]) for v in per_seed.values())
        out[(policy, es)] = {"per_seed": per_seed, "median": med, "reached": reached}
    return out


def ratio(base: dict[str, Any] | None, other: dict[str, Any]) -> str:
    """The no-pruning baseline's median epochs to target over ``other``'s, or why there is none."""
    if base is None:
        return "-"
    b, o = base["median"]["epochs"], other["median"]["epochs"]
    if not math.isfinite(o):
        return "not reached"
    if not math.isfinite(b):
        return "baseline not reached"
    return f"{b / o:.2f}x"


def fmt(x: float, digits: int = 0) -> str:
    return "not reached" if not math.isfinite(x) else f"{x:.{digits}f}"


def table(stats: dict[tuple[str, bool], dict[str, Any]], reference: dict[int, float], within: float = WITHIN) -> str:
    base = stats.get(("none", False))
    pct = f"{100 * within:g} %"
    lines = [
        f"| variant | epochs to within {pct} | ratio vs none | wall to within {pct} (s) | reached | total epochs | total wall (s) "
        "| pruned trials | final best val_acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, st in stats.items():
        m = st["median"]
        lines.append(
            f"| {label(*key)} | {fmt(m['epochs'])} | {ratio(base, st)} | {fmt(m['wall'], 1)} "
            f"| {st['reached']}/{len(st['per_seed'])} "
            f"| {m['total_epochs']:.0f} | {m['total_wall']:.1f} | {m['pruned']:.0f} | {m['best']:.4f} |"
        )
    lines += ["", f"Per seed (epochs to within {pct} / final best val_acc); ref = best val_acc of any variant:", ""]
    seeds = sorted(reference)
    lines.append("| variant | " + " | ".join(f"seed {s} (ref {reference[s]:.4f})" for s in seeds) + " |")
    lines.append("|---|" + "---|" * len(seeds))
    for key, st in stats.items():
        cells = []
        for s in seeds:
            v = st["per_seed"].get(s)
            cells.append("" if v is None else f"{fmt(v['epochs'])} / {v['best']:.4f}")
        lines.append(f"| {label(*key)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], stats: dict[tuple[str, bool], dict[str, Any]], path: Path) -> None:
    """Left: median epochs to within 0.5 % and 1 % per variant (dots: seeds). Right: median gap vs trial-epochs."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    seeds = sorted({r["seed"] for r in runs})
    reference = {s: max(r["best"] for r in runs if r["seed"] == s) for s in seeds}
    colors = {"none": "#7f7f7f", "median": "#1f77b4", "asha": "#d62728", "hyperband": "#2ca02c"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    keys = list(stats)
    cap = max(max(v["total_epochs"] for v in st["per_seed"].values()) for st in stats.values())
    looser = analyse(runs, LOOSER)
    for i, key in enumerate(keys):
        for dx, st, alpha in ((-0.2, stats[key], 0.85), (0.2, looser[key], 0.35)):
            med = st["median"]["epochs"]
            bar = med if math.isfinite(med) else cap * 1.02
            reached = math.isfinite(med)  # a variant not reached is drawn as an empty outline
            ax1.bar(
                i + dx,
                bar,
                width=0.4,
                color=colors[key[0]] if reached else "none",
                alpha=alpha,
                edgecolor=colors[key[0]],
                hatch="//" if key[1] else None,
            )
            ys = [v["epochs"] if math.isfinite(v["epochs"]) else cap * 1.02 for v in st["per_seed"].values()]
            ax1.scatter([i + dx] * len(ys), ys, s=10, color="black", zorder=3)
            ax1.text(i + dx, bar, fmt(med).replace("not reached", "-"), ha="center", va="bottom", fontsize=7)
    ax1.axhline(cap * 1.02, color="black", lw=0.5, ls=":")
    ax1.set_xticks(range(len(keys)), [label(*k) for k in keys], rotation=35, ha="right", fontsize=8)
    ax1.set_ylabel("trial-epochs until within 0.5 % | 1 % of the best")
    ax1.set_title("median over seeds; left bar 0.5 %, right (pale) 1 %; dots: seeds; dotted: not reached", fontsize=8)
    grid = np.arange(1, cap + 1)
    for key in keys:
        curves = []
        for r in runs:
            if (r["policy"], r["es"]) != key:
                continue
            gap, best, ep = np.full(len(grid), np.nan), -math.inf, 0
            for row in r["trials"]:
                ep += row["epochs"]
                if row["state"] == "COMPLETE" and row["value"] is not None:
                    best = max(best, row["value"])
                gap[grid >= ep] = 100 * (reference[r["seed"]] - best)  # later rows overwrite: a step function
            curves.append(gap)
        arr = np.where(np.isinf(curves), np.nan, np.array(curves, dtype=float))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(arr, axis=0)  # past a run's end, its final gap holds
        ax2.step(grid, med, where="post", color=colors[key[0]], ls="--" if key[1] else "-", label=label(*key), lw=1.6)
        ends = [sum(row["epochs"] for row in r["trials"]) for r in runs if (r["policy"], r["es"]) == key]
        ax2.plot(
            [statistics.median(ends)],
            [med[min(int(statistics.median(ends)), len(med)) - 1]],
            "o",
            color=colors[key[0]],
            ms=4,
        )
    ax2.set_xscale("log")
    ax2.set_xticks([t for t in (10, 20, 50, 100, 200, 500, 1000) if t <= cap])
    ax2.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.axhline(100 * WITHIN, color="black", lw=0.6, ls=":")
    ax2.set_yscale("symlog", linthresh=0.5)
    ax2.set_xlabel("trial-epochs trained (cumulative)")
    ax2.set_ylabel("reference - best so far (val_acc points, %)")
    ax2.set_title("median gap to the seed's best (dotted: 0.5 %; dot: median end of the run)", fontsize=9)
    ax2.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Pruning on digits_mlp (TPE, {len(runs[0]['trials'])} trials, {len(seeds)} seeds, 2 CPU cores)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 6 trials, 6 epochs")
    parser.add_argument("--png", type=Path, default=None, help="write the figure here")
    parser.add_argument("--json", type=Path, default=None, help="write (and with --replot read) the raw runs here")
    parser.add_argument("--replot", action="store_true", help="only re-analyse and re-plot --json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    max_epochs = 6 if args.quick else None
    seeds, trials = ([0], 6) if args.quick else (args.seeds, args.trials)
    if args.replot:
        runs = json.loads(args.json.read_text())
    else:
        run_one(99, "none", False, trials=2, max_epochs=2)  # warm-up: imports and the first Lightning run
        runs = []
        for seed in seeds:
            for policy, es in variants():
                r = run_one(seed, policy, es, trials=trials, max_epochs=max_epochs)
                runs.append(r)
                print(
                    f"seed {seed} {label(policy, es):>16}: best {r['best']:.4f}, "
                    f"{sum(t['epochs'] for t in r['trials'])} epochs, {r['wall']:.1f} s",
                    flush=True,
                )
                if args.json:
                    args.json.write_text(json.dumps(runs))
    stats = analyse(runs)
    reference = {s: max(r["best"] for r in runs if r["seed"] == s) for s in sorted({r["seed"] for r in runs})}
    for within in (WITHIN, LOOSER):
        st = analyse(runs, within)
        print(table(st, reference, within) + "\n")
        base, asha = st.get(("none", False)), st.get(("asha", True))
        if base and asha:
            print(
                f"asha + ES vs none, within {100 * within:g} %: epochs-to-target ratio {ratio(base, asha)} (target >= 4x); "
                f"final best {asha['median']['best']:.4f} vs {base['median']['best']:.4f}; whole run "
                f"{base['median']['total_epochs'] / asha['median']['total_epochs']:.2f}x fewer epochs\n"
            )
    if args.png:
        plot(runs, stats, args.png)
        print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
