"""Results shared by every backend: the trials table and the result object of a run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebridge import _record
from tunebridge.schema import Scalar, Space

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["TuneResult", "counts", "trials_table"]


def trials_table(study: optuna.Study, space: Space | None = None) -> pd.DataFrame:
    """One row per trial: number, state, value(s), epochs, duration, config values and final metrics."""
    import pandas as pd

    from tunebridge.backends.optuna._study import trial_config

    rows = []
    n_obj = len(study.directions)
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        values = t.values if t.values is not None else [None] * n_obj
        if n_obj == 1:
            row["value"] = values[0]
        else:
            row.update({f"value_{i}": v for i, v in enumerate(values)})
        row["epochs"] = t.user_attrs.get(_record.EPOCHS)
        row["duration_s"] = t.duration.total_seconds() if t.duration is not None else None
        try:
            config = trial_config(space, t) if space is not None else _record.config_of(t.user_attrs)
        except (KeyError, IndexError, ValueError):
            config = None
        row.update({f"param.{k}": v for k, v in (config if config is not None else t.params).items()})
        row.update(_record.final_metrics(t.user_attrs))
        row["fail_reason"] = t.user_attrs.get(_record.FAIL_REASON)
        rows.append(row)
    return pd.DataFrame(rows)


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (complete, pruned, fail, running, waiting); failed trials whose config was
    re-queued (an interrupted or dead worker's trial) or that were cancelled count as ``requeued``."""
    out: dict[str, int] = {"complete": 0, "pruned": 0, "fail": 0, "requeued": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        key = t.state.name.lower()
        if key == "fail" and _record.outside_budget(t.user_attrs):
            key = "requeued"
        out[key] = out.get(key, 0) + 1
    return out


@dataclass
class TuneResult:
    """What :func:`tunebridge.tune` returns, whatever the backend.

    Attributes:
        best_config: The best trial's config (for several objectives: the first Pareto-optimal one).
        best_value: Its objective value (a list for several objectives).
        best_metrics: Its final validation metrics.
        trials: The trials table (:func:`trials_table`).
        record: The run record: study, storage, spec hash, seed, package versions, wall time, counts.
        study: The Optuna study holding every trial (Ray runs are mirrored into one too).
        best_trials: For several objectives, the configs and values of the Pareto front.
    """

    best_config: dict[str, Scalar] | None
    best_value: float | list[float] | None
    best_metrics: dict[str, Any]
    trials: pd.DataFrame
    record: dict[str, Any]
    study: optuna.Study
    best_trials: list[dict[str, Any]] = field(default_factory=list)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``best.yaml``, ``record.json`` and ``trials.csv`` into ``out_dir``."""
        import yaml

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"best": out / "best.yaml", "record": out / "record.json", "trials": out / "trials.csv"}
        best = {
            "study": self.record.get("study"),
            "value": self.best_value,
            "config": self.best_config,
            "metrics": self.best_metrics,
        }
        if self.best_trials:
            best["pareto_front"] = self.best_trials
        paths["best"].write_text(yaml.safe_dump(best, sort_keys=False))
        paths["record"].write_text(json.dumps(self.record, indent=2, default=str))
        self.trials.to_csv(paths["trials"], index=False)
        return paths
