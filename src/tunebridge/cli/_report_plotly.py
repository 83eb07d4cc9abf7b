"""The interactive figures of ``report.html`` (plotly; Optuna's visualization module where it fits)."""

from __future__ import annotations

import math
import warnings
from typing import Any

from tunebridge.cli._report_data import ReportData

__all__ = ["figures"]

COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "best": "#2ca02c"}
SLICE_PARAMS = 4
CONTOUR_PARAMS = 3
PARALLEL_PARAMS = 8
IMPORTANCE_SHORT = "fANOVA (sums to 1)"


def figures(data: ReportData) -> dict[str, Any]:
    """Section id -> plotly figure (only the ones this study can draw)."""
    import optuna.visualization as vis

    out: dict[str, Any] = {}
    if not data.multi and (data.complete or data.counts["pruned"] or data.counts["fail"]):
        out["history"] = history(data)
    if any(t.intermediate_values for t in data.study.get_trials(deepcopy=False)):
        out["curves"] = curves(data)
    if data.savings is not None and data.savings.trials:
        out["pruning"] = pruning(data)
    if data.multi and len(data.metrics) <= 3 and data.complete:
        out["pareto"] = vis.plot_pareto_front(data.study, target_names=data.metrics)
    target = (lambda t: t.values[0]) if data.multi else None
    kw: dict[str, Any] = {"target": target, "target_name": data.metrics[0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns about "experimental" features and trials without a value
        if len(data.complete) >= 2 and data.top_params:
            out["parallel"] = vis.plot_parallel_coordinate(data.study, params=data.top_params[:PARALLEL_PARAMS], **kw)
            out["slice"] = vis.plot_slice(data.study, params=data.top_params[:SLICE_PARAMS], **kw)
        if len(data.complete) >= 2 and len(data.top_params) >= 2:
            out["contour"] = vis.plot_contour(data.study, params=data.top_params[:CONTOUR_PARAMS], **kw)
    if data.importances:
        out["importances"] = importances(data)
    for fig in out.values():
        fig.update_layout(template="plotly_white", margin={"t": 50, "l": 60, "r": 20, "b": 50})
    return out


def history(data: ReportData) -> Any:
    """Every trial's value by number: complete, pruned (at its last reported value), failed, best so far."""
    import plotly.graph_objects as go

    fig = go.Figure()
    metric = data.metrics[0]
    trials = sorted(data.study.get_trials(deepcopy=False), key=lambda t: t.number)
    for state, symbol, label in (("COMPLETE", "circle", "complete"), ("PRUNED", "x", "pruned (last reported value)")):
        pts = [(t.number, shown_value(t)) for t in trials if t.state.name == state]
        pts = [(n, v) for n, v in pts if v is not None]
        if pts:
            fig.add_trace(
                go.Scatter(
                    x=[n for n, _ in pts],
                    y=[v for _, v in pts],
                    mode="markers",
                    name=f"{label}: {len(pts)}",
                    marker={"color": COLORS[state], "symbol": symbol, "size": 8},
                    hovertemplate=f"trial %{{x}}<br>{metric} %{{y:.5g}}<extra>{state.lower()}</extra>",
                )
            )
    failed = [t.number for t in trials if t.state.name == "FAIL"]
    if failed:  # no value: marked along the bottom on an axis of their own
        fig.add_trace(
            go.Scatter(
                x=failed,
                y=[0.03] * len(failed),
                yaxis="y2",
                mode="markers",
                name=f"failed: {len(failed)}",
                marker={"color": COLORS["FAIL"], "symbol": "triangle-up", "size": 10},
                hovertemplate="trial %{x} failed<extra></extra>",
            )
        )
    xs, best = best_so_far(data)
    if xs:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=best,
                mode="lines",
                line={"shape": "hv", "color": COLORS["best"], "width": 2},
                name="best so far",
                hovertemplate=f"after trial %{{x}}: best {metric} %{{y:.5g}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"Optimization history ({metric}, {data.modes[0]})",
        xaxis_title="trial",
        yaxis_title=metric,
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def best_so_far(data: ReportData) -> tuple[list[int], list[float]]:
    """The best complete value after each complete trial (by trial number)."""
    xs: list[int] = []
    ys: list[float] = []
    best = -math.inf if data.maximize else math.inf
    for t in sorted(data.complete, key=lambda t: t.number):
        if t.value is None or not math.isfinite(t.value):
            continue
        best = max(best, t.value) if data.maximize else min(best, t.value)
        xs.append(t.number)
        ys.append(best)
    return xs, ys


def shown_value(t: Any) -> float | None:
    """A trial's value, or a pruned one's last reported value."""
    if t.values is not None and len(t.values) == 1:
        return float(t.values[0])
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def curves(data: ReportData) -> Any:
    """One line per trial over epochs: complete solid, pruned dashed and ending in an x, the best thick."""
    import plotly.graph_objects as go

    fig = go.Figure()
    metric = data.metrics[0]
    best_number = data.best.number if data.best is not None else None
    shown: set[str] = set()
    for t in sorted(data.study.get_trials(deepcopy=False), key=lambda t: t.number):
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        state = t.state.name
        group = "best" if t.number == best_number else state
        label = {"best": f"best (trial {t.number})", "COMPLETE": "complete", "PRUNED": "pruned"}.get(group, "failed")
        pruned = state == "PRUNED"
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=values,
                mode="lines+markers" if pruned else "lines",
                name=label,
                legendgroup=group,
                showlegend=group not in shown,
                line={
                    "color": COLORS.get(group, "#7f7f7f"),
                    "width": 3.5 if group == "best" else 1.3,
                    "dash": "dash" if pruned else "solid",
                },
                opacity=1.0 if group == "best" else 0.6,
                marker={"symbol": "x", "size": [0] * (len(steps) - 1) + [9]} if pruned else None,
                hovertemplate=(
                    f"trial {t.number} ({state.lower()})<br>epoch %{{x}}<br>{metric} %{{y:.5g}}<extra></extra>"
                ),
            )
        )
        shown.add(group)
    note = ""
    if data.y_range is not None:
        fig.update_yaxes(range=list(data.y_range))
        note = " — y zoomed on the best trials (Autoscale in the toolbar shows all)"
    fig.update_layout(
        title=f"Learning curves ({metric} per epoch){note}",
        title_font_size=14,
        xaxis_title="epoch",
        yaxis_title=metric,
        hovermode="closest",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def importances(data: ReportData) -> Any:
    """Horizontal bars, the most important parameter on top, the method in the axis title."""
    import plotly.graph_objects as go

    names = list(data.importances)[::-1]
    fig = go.Figure(
        go.Bar(
            x=[data.importances[n] for n in names],
            y=names,
            orientation="h",
            marker_color=COLORS["COMPLETE"],
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Parameter importances for {data.metrics[0]} ({len(data.complete)} complete trials)",
        xaxis_title=f"importance, {IMPORTANCE_SHORT}",
        height=max(300, 40 * len(names) + 150),
    )
    return fig


def pruning(data: ReportData) -> Any:
    """Where each finished trial stopped: trials per epoch, stacked by how they ended."""
    import plotly.graph_objects as go

    from tunebridge.cli._report_pruning import STOPS

    saved = data.savings
    epochs = list(range(1, max(saved.budget, 1) + 1))
    colors = {"pruned": "#d62728", "early stopped": "#ff7f0e", "full budget": "#2ca02c", "other": "#7f7f7f"}
    fig = go.Figure()
    for kind in STOPS:
        stops = saved.stopped_at[kind]
        if stops:
            fig.add_bar(x=epochs, y=[stops.count(e) for e in epochs], name=f"{kind} ({len(stops)})",
                        marker_color=colors[kind])  # fmt: skip
    fig.update_layout(
        barmode="stack",
        title=f"{saved.trained} of {saved.full} epochs trained: {saved.saved:.0%} saved",
        xaxis_title="epoch the trial stopped at",
        yaxis_title="trials",
        legend_title_text="how it ended",
    )
    return fig
