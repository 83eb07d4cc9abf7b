"""PNG versions of the report's main plots (history, learning curves, importances), for docs and terminals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunebridge.cli._report_data import IMPORTANCE_METHOD, ReportData
from tunebridge.cli._report_plotly import COLORS, best_so_far, shown_value

__all__ = ["write_pngs"]

DPI = 110


def write_pngs(data: ReportData, out: Path) -> dict[str, Path]:
    """Write the PNGs this study can draw into ``out``; name -> file."""
    from tunebridge._compat import require

    matplotlib = require("matplotlib", "tunebridge report plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: dict[str, Path] = {}
    trials = sorted(data.study.get_trials(deepcopy=False), key=lambda t: t.number)
    if not data.multi and trials:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        _history(ax, data, trials)
        written["history"] = _save(plt, fig, out / "history.png")
    if any(t.intermediate_values for t in trials):
        fig, ax = plt.subplots(figsize=(7, 3.8))
        _curves(ax, data, trials)
        written["curves"] = _save(plt, fig, out / "curves.png")
    if data.importances:
        names = list(data.importances)[::-1]
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.6))
        ax.barh(names, [data.importances[n] for n in names], color=COLORS["COMPLETE"])
        ax.set_xlabel(f"importance for {data.metrics[0]}: {IMPORTANCE_METHOD.split(' (')[0]}")
        title = f"{len(data.complete)} complete trials"
        if data.importance_caveat:
            title += ": too few, importances are noisy"
        ax.set_title(title, fontsize=9, color=COLORS["FAIL"] if data.importance_caveat else "black")
        written["importances"] = _save(plt, fig, out / "importances.png")
    return written


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _history(ax: Any, data: ReportData, trials: list[Any]) -> None:
    metric = data.metrics[0]
    for state, marker, label in (("COMPLETE", "o", "complete"), ("PRUNED", "x", "pruned (last value)")):
        pts = [(t.number, shown_value(t)) for t in trials if t.state.name == state]
        pts = [(n, v) for n, v in pts if v is not None]
        if pts:
            ax.scatter([n for n, _ in pts], [v for _, v in pts], s=18, marker=marker, color=COLORS[state], label=label)
    failed = [t.number for t in trials if t.state.name == "FAIL"]
    if failed:  # no value: ticks along the bottom edge
        ax.scatter(failed, [0.02] * len(failed), transform=ax.get_xaxis_transform(), marker="^", s=30,
                   color=COLORS["FAIL"], label="failed", clip_on=False)  # fmt: skip
    xs, best = best_so_far(data)
    if xs:
        ax.step(xs, best, where="post", color=COLORS["best"], label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"optimization history ({metric}, {data.modes[0]})", fontsize=10)
    ax.legend(fontsize=8)


def _curves(ax: Any, data: ReportData, trials: list[Any]) -> None:
    best_number = data.best.number if data.best is not None else None
    labelled: set[str] = set()
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        group = "best" if t.number == best_number else t.state.name
        label = {"best": f"best (trial {t.number})", "COMPLETE": "complete", "PRUNED": "pruned"}.get(group, "failed")
        ax.plot(steps, values, color=COLORS.get(group, "#7f7f7f"), lw=2.5 if group == "best" else 1,
                alpha=1.0 if group == "best" else 0.55, ls="--" if group == "PRUNED" else "-",
                label=None if group in labelled else label, zorder=3 if group == "best" else 2)  # fmt: skip
        if group == "PRUNED":
            ax.plot(steps[-1:], values[-1:], "x", color=COLORS["PRUNED"], ms=6)
        labelled.add(group)
    title = f"learning curves ({data.metrics[0]} per epoch)"
    if data.y_range is not None:
        ax.set_ylim(*data.y_range)
        title += ", zoomed on the best trials"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(data.metrics[0])
    ax.legend(fontsize=8)
