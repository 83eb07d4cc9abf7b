"""``tunebridge report``: a Markdown report with plots for any study (Optuna or Ray runs alike)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from tunebridge.cli._common import DEFAULT_ROOT, console, esc
from tunebridge.cli._show import load_study

__all__ = ["report_command", "write_report"]


def write_report(study: Any, out: Path) -> Path:
    """Write ``report.md`` and its PNG plots into ``out``; returns the Markdown file."""
    from tunebridge._compat import require

    matplotlib = require("matplotlib", "tunebridge report plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState

    from tunebridge.results import counts, trials_table
    from tunebridge.schema import Space

    out.mkdir(parents=True, exist_ok=True)
    attrs = study.user_attrs
    space = Space.from_dict(attrs["space"]) if "space" in attrs else None
    df = trials_table(study, space)
    metrics, modes = attrs.get("metrics", ["value"]), attrs.get("modes", ["min"])
    lines = [
        f"# Study `{study.study_name}`",
        "",
        f"- metric: {', '.join(f'{m} ({d})' for m, d in zip(metrics, modes))}",
        f"- search: {attrs.get('search')}, seed {attrs.get('seed')}, backend {attrs.get('backend')}",
        f"- trials: {json.dumps(counts(study))}",
        f"- spec hash: `{attrs.get('spec_hash')}`",
        f"- versions: `{json.dumps(attrs.get('versions', {}))}`",
        "",
    ]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(study.directions) == 1 and complete:
        best = study.best_trial
        lines += [
            f"## Best: {best.value:.6g} (trial {best.number})",
            "",
            "```json",
            json.dumps(best.user_attrs.get("config", best.params), indent=2),
            "```",
            "",
        ]
        # 1. optimisation history
        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = [t.number for t in complete]
        ys = [t.value for t in complete]
        ax.scatter(xs, ys, s=12, label="complete trial")
        best_so_far, running = [], math.inf if modes[0] == "min" else -math.inf
        for y in ys:
            running = min(running, y) if modes[0] == "min" else max(running, y)
            best_so_far.append(running)
        ax.step(xs, best_so_far, where="post", color="C3", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(metrics[0])
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "history.png", dpi=110)
        plt.close(fig)
        lines += ["## Optimisation history", "", "![history](history.png)", ""]
        # 2. learning curves (pruned trials stop early)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            steps = sorted(t.intermediate_values)
            if steps:
                color = "C0" if t.state == TrialState.COMPLETE else "C1"
                ax.plot(steps, [t.intermediate_values[s] for s in steps], color=color, alpha=0.5, lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metrics[0])
        ax.set_title("learning curves (blue complete, orange pruned)")
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=110)
        plt.close(fig)
        lines += ["## Learning curves", "", "![curves](curves.png)", ""]
        # 3. importances
        if len(complete) >= 4:
            try:
                with warnings.catch_warnings():  # "few trials in some regimes": the plot says how many
                    warnings.simplefilter("ignore", UserWarning)
                    importances = optuna.importance.get_param_importances(study)
            except (ValueError, RuntimeError) as e:
                lines += [f"_parameter importances unavailable: {e}_", ""]
            else:
                fig, ax = plt.subplots(figsize=(6, 0.35 * len(importances) + 1))
                names = list(importances)[::-1]
                ax.barh(names, [importances[n] for n in names])
                ax.set_xlabel(f"importance (Optuna's default evaluator, {len(complete)} complete trials)")
                fig.tight_layout()
                fig.savefig(out / "importances.png", dpi=110)
                plt.close(fig)
                lines += ["## Parameter importances", "", "![importances](importances.png)", ""]
    if not df.empty:
        top = df.sort_values("value", ascending=modes[0] == "min") if "value" in df else df
        lines += [
            "## Trials (best first)",
            "",
            top.head(15).to_markdown(index=False)
            if _has_tabulate()
            else "```\n" + top.head(15).to_string(index=False) + "\n```",
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _has_tabulate() -> bool:
    from tunebridge._compat import has_module

    return has_module("tabulate")


def report_command(name: str, *, storage: str | None, out: Path | None) -> None:
    study = load_study(name, storage)
    path = write_report(study, out or Path(DEFAULT_ROOT) / name / "report")
    console.print(esc(f"wrote {path}"), highlight=False)
