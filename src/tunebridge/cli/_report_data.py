"""What ``tunebridge report`` shows, computed once: the trials by state, the parameters by importance,
the y-range of the learning curves, the run record and the best trial.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from tunebridge import _record
from tunebridge.cli._report_pruning import savings
from tunebridge.schema import Space

__all__ = ["ReportData", "collect", "curve_range"]

FEW_TRIALS = 10  # importances from fewer complete trials (or fewer than 2 per parameter) get a caveat
IMPORTANCE_METHOD = "fANOVA (Optuna's FanovaImportanceEvaluator: a random forest, seed 0)"


@dataclass
class ReportData:
    """Everything the HTML, the PNGs and the Markdown summary are made of."""

    name: str
    study: Any  # the study as stored (ordered choices hold their values)
    space: Space | None
    metrics: list[str]
    modes: list[str]
    table: Any  # pandas DataFrame: results.trials_table
    counts: dict[str, int]
    complete: list[Any]
    record: dict[str, str]
    best: Any = None
    best_config: dict[str, Any] | None = None
    best_checkpoint: str | None = None
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""  # why importances are missing, or which parameters they leave out
    importance_caveat: str = ""  # too few complete trials to trust them
    top_params: list[str] = field(default_factory=list)
    y_range: tuple[float, float] | None = None
    savings: Any = None  # _report_pruning.Savings: epochs trained vs the budget, where trials stopped

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def maximize(self) -> bool:
        return self.modes[0] == "max"


def collect(study: Any, *, storage: str = "", record_file: str | None = None) -> ReportData:
    """Gather a study's report data (``record_file``: the run's ``record.json``, for its wall time)."""
    from optuna.trial import TrialState

    from tunebridge.results import counts, trials_table

    attrs = study.user_attrs
    space = Space.from_dict(attrs["space"]) if "space" in attrs else None
    n_obj = len(study.directions)
    metrics = list(attrs.get("metrics", [f"value_{i}" for i in range(n_obj)] if n_obj > 1 else ["value"]))
    modes = list(attrs.get("modes", [d.name[:3].lower() for d in study.directions]))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    data = ReportData(
        name=study.study_name,
        study=study,
        space=space,
        metrics=metrics,
        modes=modes,
        table=trials_table(study, space),
        counts=counts(study),
        complete=complete,
        record=_record_rows(study, metrics, modes, storage, record_file),
    )
    if complete:
        data.best = study.best_trial if n_obj == 1 else study.best_trials[0]
        data.best_config = _record.config_of(data.best.user_attrs) or dict(data.best.params)
        checkpoint = data.best.user_attrs.get(_record.CHECKPOINT)
        data.best_checkpoint = checkpoint if isinstance(checkpoint, str) else None
    _importances(data)
    data.y_range = curve_range(study, maximize=data.maximize)
    data.savings = savings(study)
    return data


def _importances(data: ReportData) -> None:
    """Parameter importances of the first objective, with what they leave out and whether to trust them."""
    import optuna

    n = len(data.complete)
    # Parameters whose value varied: a choice with one value, or a fixed one, has nothing to explain.
    varied = sorted({k for t in data.complete for k, d in t.distributions.items() if not d.single()})
    everywhere = [k for k in varied if all(k in t.params for t in data.complete)]
    order = list(data.space.order) if data.space is not None else []
    rank = {name: i for i, name in enumerate(order)}
    by_space = sorted(everywhere, key=lambda k: (rank.get(k.split("/", 1)[0], len(rank)), k))
    data.top_params = by_space
    if n < 2 or not everywhere:
        data.importance_note = f"parameter importances need at least 2 complete trials (this study has {n})."
        return
    target = (lambda t: t.values[0]) if data.multi else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            data.importances = optuna.importance.get_param_importances(
                data.study, evaluator=evaluator, params=everywhere, target=target
            )
    except (ValueError, RuntimeError) as e:
        data.importance_note = f"parameter importances unavailable: {e}"
        return
    data.top_params = sorted(data.importances, key=lambda k: -data.importances[k])
    left_out = [k for k in varied if k not in everywhere]
    if left_out:
        data.importance_note = (
            f"only parameters set in every complete trial; conditional ones are left out: {', '.join(left_out)}."
        )
    if n < FEW_TRIALS or n < 2 * len(everywhere):
        data.importance_caveat = (
            f"Only {n} complete trials for {len(everywhere)} parameters: these importances are noisy. "
            f"Trust them from {max(FEW_TRIALS, 2 * len(everywhere))} complete trials "
            f"(at least {FEW_TRIALS}, and 2 per parameter)."
        )


def curve_range(study: Any, *, maximize: bool) -> tuple[float, float] | None:
    """A y-range for the learning curves that shows the differences among the good trials.

    The good trials are the best quarter of the complete ones (at least 3); the range runs from the
    10% quantile of their per-epoch values (90% when minimizing) to the best value of any trial, so
    one diverged or very poor curve does not squash the rest into a line. None: let the plot decide.
    """
    import numpy as np
    from optuna.trial import TrialState

    if len(study.directions) > 1:
        return None
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    every = [v for t in trials for v in t.intermediate_values.values() if math.isfinite(v)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    complete.sort(key=lambda t: -t.value if maximize else t.value)
    good = complete[: max(3, math.ceil(len(complete) / 4))]
    values = [v for t in good for v in t.intermediate_values.values() if math.isfinite(v)]
    if len(values) < 2 or not every:
        return None
    if maximize:
        low, high = float(np.quantile(values, 0.1)), max(every)
    else:
        low, high = min(every), float(np.quantile(values, 0.9))
    if not high > low:
        return None
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def _record_rows(
    study: Any, metrics: list[str], modes: list[str], storage: str, record_file: str | None
) -> dict[str, str]:
    """The run record as label -> text (the storage URL as shown: its password masked)."""
    from tunebridge.results import counts

    attrs = study.user_attrs
    record: dict[str, Any] = {}
    if record_file and os.path.isfile(record_file):
        try:
            with open(record_file) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = {}
    if record.get("study") not in (None, study.study_name):
        record = {}  # a record of another study: none of its numbers apply
    finished = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    if "wall_time_s" in record:
        wall = f"{float(record['wall_time_s']):.1f} s (record.json of the last run)"
    elif finished:
        first = min(t.datetime_start for t in finished)
        last = max(t.datetime_complete for t in finished)
        wall = f"{(last - first).total_seconds():.1f} s (first trial start to last trial end)"
    else:
        wall = "not recorded"
    c = counts(study)
    return {
        "study": study.study_name,
        "metrics": ", ".join(f"{m} ({d})" for m, d in zip(metrics, modes)),
        "backend": str(attrs.get("backend", "unknown")),
        "search": str(attrs.get("search", "unknown")),
        "seed": str(attrs.get("seed")),
        "spec hash": str(attrs.get("spec_hash", "not recorded")),
        "trials": ", ".join(f"{v} {k}" for k, v in c.items() if v) or "none",
        "wall time": wall,
        "storage": storage,
        "versions": ", ".join(f"{k} {v}" for k, v in attrs.get("versions", {}).items()) or "not recorded",
    }
