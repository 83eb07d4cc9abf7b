"""Results shared by every backend: the trials table and the result object of a run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebridge import _record
from tunebridge.schema import Scalar, Space

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from tunebridge.backends.optuna import StudyOptions

__all__ = ["TuneResult", "counts", "load_best", "load_checkpoint", "make_result", "trials_table"]


def load_checkpoint(
    path: str,
    *,
    build: Any = None,
    config: dict[str, Any] | None = None,
    module_class: str | None = None,
    map_location: str = "cpu",
) -> Any:
    """A LightningModule with the weights of a checkpoint tunebridge kept.

    With ``build`` (and the trial's ``config``), the module is built as the trial built it and the
    weights are loaded into it: this works for any module. Otherwise ``module_class``
    (``"package.module:Class"``, recorded on the trial) is imported and its ``load_from_checkpoint``
    used.

    Example:
        ``model = tunebridge.results.load_checkpoint(best["checkpoint"], build=build, config=best["config"])``
        where ``best`` is the run's ``best.yaml``.
    """
    from tunebridge._imports import import_ref

    if build is not None:
        import torch

        module, _ = build(dict(config or {}))
        state = torch.load(path, map_location=map_location, weights_only=False)["state_dict"]
        module.load_state_dict(state)
        return module
    if module_class is None:
        raise ValueError("load_checkpoint needs build= (and config=) or module_class='package.module:Class'")
    cls: Any = import_ref(module_class)
    return cls.load_from_checkpoint(path, map_location=map_location)


def load_best(best_yaml: str | Path, *, map_location: str = "cpu") -> Any:
    """The best trial's trained LightningModule, from the ``best.yaml`` a run wrote, in any process.

    ``best.yaml`` names the checkpoint, the module's class (``module_class``) and the folder its module is
    imported from (``import_path``: a user's project, a LightningCLI recipe; none for tunebridge's built-in
    models); the class's ``load_from_checkpoint`` rebuilds it from the hyperparameters the checkpoint holds.
    A Hydra project's ``best.yaml`` holds its ``hydra:`` build instead: the project's config, composed with the
    best trial's values, builds the module (as its ``train.py`` would), and the kept weights are loaded into it.

    Example:
        ``model = tunebridge.results.load_best("tunebridge-runs/digits-mlp/best.yaml")``

    Raises:
        FileNotFoundError: No checkpoint was kept (``keep_checkpoints: 0``, or no complete trial).
        ImportError: The module's class cannot be imported here (e.g. a class defined in a script's
            ``__main__``): load with :func:`load_checkpoint` and your ``build`` instead.
    """
    import yaml

    from tunebridge._imports import import_ref

    best = yaml.safe_load(Path(best_yaml).read_text()) or {}
    checkpoint, module_class = best.get("checkpoint"), best.get("module_class")
    if not checkpoint:
        raise FileNotFoundError(f"{best_yaml} names no kept checkpoint: keep_checkpoints: 0, or no trial completed")
    if isinstance(best.get("hydra"), dict):  # a Hydra project: its config builds the module, the weights go in
        return load_checkpoint(
            checkpoint, build=_hydra_build(best["hydra"]), config=best.get("config") or {}, map_location=map_location
        )
    if not module_class or str(module_class).startswith("__main__:"):
        raise ImportError(
            f"{best_yaml}: the module's class ({module_class or 'not recorded'}) cannot be imported in another "
            "process; use tunebridge.results.load_checkpoint(best['checkpoint'], build=build, config=best['config'])"
        )
    cls: Any = import_ref(str(module_class), base_dir=best.get("import_path"))
    return cls.load_from_checkpoint(checkpoint, map_location=map_location)


def _hydra_build(record: dict[str, Any]) -> Any:
    """The Hydra project's build that ``best.yaml`` records (``HydraBuild.rebuild_record``)."""
    from tunebridge.lightning._hydra_config import HydraBuild
    from tunebridge.spec._hydra import HydraSpec

    spec = HydraSpec(**{**record["spec"], "overrides": tuple(record["spec"].get("overrides", ()))})
    return HydraBuild(
        spec,
        base_dir=str(record.get("base_dir", ".")),
        max_epochs=int(record.get("max_epochs", 20)),
        cwd=str(record.get("cwd", ".")),
        sweep_dir=str(record.get("sweep_dir", "")),
    )


def _import_path(module_class: str | None) -> str | None:
    """The folder ``module_class``'s module is imported from, when it is not an installed package's (or None)."""
    import sys
    import sysconfig

    if not module_class:
        return None
    name = module_class.partition(":")[0]
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file or name == "__main__":
        return None
    root = Path(file).resolve().parent
    for _ in range(name.count(".")):
        root = root.parent
    installed = {Path(p).resolve() for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    if root in installed or root == Path(__file__).resolve().parent.parent:
        return None  # an installed package, or tunebridge's own modules: importable anywhere
    return str(root)


def trials_table(study: optuna.Study, space: Space | None = None) -> pd.DataFrame:
    """One row per trial: number, state, value(s), epochs, duration, config values and final metrics."""
    import pandas as pd

    from tunebridge.backends.optuna import trial_config

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
    return _typed_table(pd.DataFrame(rows), rows, space)


def _typed_table(df: pd.DataFrame, rows: list[dict[str, Any]], space: Space | None) -> pd.DataFrame:
    """The table's columns in a fixed order (parameters in the space's order, per-layer copies by layer)
    and integer columns as nullable ``Int64``: an inactive parameter stays empty, and ``3`` never becomes
    ``3.0`` because another trial lacks the value (what pandas does to an int column with a gap)."""
    if df.empty:
        return df
    rank = {name: i for i, name in enumerate(space.order)} if space is not None else {}

    def param_key(column: str) -> tuple[int, int, str]:
        base, _, layer = column.removeprefix("param.").partition("/")
        return rank.get(base, len(rank)), int(layer) if layer.isdigit() else -1, column

    params = sorted((c for c in df.columns if c.startswith("param.")), key=param_key)
    head = [c for c in df.columns if c in ("number", "state", "epochs", "duration_s") or c.startswith("value")]
    rest = [c for c in df.columns if c not in head and c not in params and c != "fail_reason"]
    df = df[[*head, *params, *rest, "fail_reason"]]
    ints = [
        c
        for c in df.columns
        if any(row.get(c) is not None for row in rows)
        and all(
            isinstance(row.get(c), int) and not isinstance(row.get(c), bool) for row in rows if row.get(c) is not None
        )
    ]
    return df.astype(dict.fromkeys(ints, "Int64"))


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (complete, pruned, fail, running, waiting); failed trials whose config was
    re-queued (an interrupted or dead worker's trial) or that were cancelled count as ``requeued``."""
    out: dict[str, int] = {"complete": 0, "pruned": 0, "fail": 0, "requeued": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        key = t.state.name.lower()
        if key == "fail" and _record.outside_budget(t):
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
        best_checkpoint: The kept weights of the best trial's reported epoch (a Lightning
            checkpoint), or None when none were kept; :meth:`load_best` loads them.
        build: The build function of the run (set by :func:`tunebridge.tune`), used by :meth:`load_best`.
    """

    best_config: dict[str, Scalar] | None
    best_value: float | list[float] | None
    best_metrics: dict[str, Any]
    trials: pd.DataFrame
    record: dict[str, Any]
    study: optuna.Study
    best_trials: list[dict[str, Any]] = field(default_factory=list)
    best_checkpoint: str | None = None
    build: Any = field(default=None, repr=False)

    def load_best(self, build: Any = None, *, map_location: str = "cpu") -> Any:
        """The best trial's LightningModule with its kept weights (those of the reported value).

        Args:
            build: ``build(config) -> (module, datamodule)``; default: the run's own. Without one,
                the module's class is imported and ``load_from_checkpoint`` is used (the module then
                needs ``self.save_hyperparameters()``, Lightning's usual requirement).
            map_location: Where to load the tensors.

        Raises:
            FileNotFoundError: No checkpoint was kept (``keep_checkpoints=0``, or no complete trial).
        """
        if self.best_checkpoint is None:
            raise FileNotFoundError("no checkpoint was kept for this run: keep_checkpoints=0, or no trial completed")
        return load_checkpoint(
            self.best_checkpoint,
            build=build or self.build,
            config=self.best_config,
            map_location=map_location,
            module_class=_record.bookkeeping(self.study.best_trial, _record.MODULE_CLASS)
            if len(self.study.directions) == 1
            else None,
        )

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``best.yaml``, ``record.json`` and ``trials.csv`` into ``out_dir``.

        For a LightningCLI config (``lightning_cli:``), also ``best_config.yaml``: the best trial's complete
        config, which ``python main.py fit --config best_config.yaml`` runs unchanged. For a Hydra project
        (``hydra:``), ``best_overrides.yaml`` (the best trial as overrides, Hydra's own form) and
        ``best_command.sh`` (``python train.py k=v ...``); the command is also ``record["best_command"]``.
        """
        import yaml

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"best": out / "best.yaml", "record": out / "record.json", "trials": out / "trials.csv"}
        best = {
            "study": self.record.get("study"),
            "value": self.best_value,
            "config": self.best_config,
            "metrics": self.best_metrics,
            "checkpoint": self.best_checkpoint,
        }
        if self.best_checkpoint is not None and len(self.study.directions) == 1:
            module_class = _record.bookkeeping(self.study.best_trial, _record.MODULE_CLASS)
            best.update({"module_class": module_class, "import_path": _import_path(module_class)})
        if self.best_trials:
            best["pareto_front"] = self.best_trials
        rebuild = getattr(self.build, "rebuild_record", None)  # a Hydra project's build: load_best rebuilds with it
        if callable(rebuild) and self.best_checkpoint is not None:
            best["hydra"] = rebuild()
        best_files = getattr(self.build, "best_files", None)  # a Hydra project's build
        if callable(best_files) and self.best_config is not None:
            files = best_files(self.best_config, out, seed=self.record.get("seed"))
            self.record["best_command"] = files.pop("command")
            paths.update(files)
        paths["best"].write_text(yaml.safe_dump(best, sort_keys=False))
        paths["record"].write_text(json.dumps(self.record, indent=2, default=str))
        self.trials.to_csv(paths["trials"], index=False)
        write_config = getattr(self.build, "write_config", None)  # a LightningCLI config's build
        if callable(write_config) and self.best_config is not None:
            paths["best_config"] = write_config(
                self.best_config, out / "best_config.yaml", seed=self.record.get("seed")
            )
        return paths


def make_result(study: Any, opts: StudyOptions, *, wall_time: float, backend: str, trials: int) -> TuneResult:
    """The :class:`TuneResult` of a finished study (any backend writes its trials into an Optuna study)."""
    from optuna.trial import TrialState

    from tunebridge._compat import versions
    from tunebridge._storage_url import mask_url
    from tunebridge.backends.optuna import trial_config

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_config = best_value = None
    best_metrics: dict[str, Any] = {}
    front: list[dict[str, Any]] = []
    if complete:
        if len(opts.metrics) == 1:
            best = study.best_trial
            best_value = best.value
        else:
            pareto = study.best_trials
            best = pareto[0]
            best_value = list(best.values)
            front = [
                {"number": t.number, "values": list(t.values), "config": trial_config(opts.space, t)} for t in pareto
            ]
        best_config = trial_config(opts.space, best)
        best_metrics = _record.final_metrics(best.user_attrs)
        best_metrics["epochs"] = best.user_attrs.get(_record.EPOCHS)
    record = {
        "study": study.study_name,
        "storage": mask_url(opts.storage),  # a password in the URL is never written or shown
        "backend": backend,
        "search": opts.search,
        "seed": opts.seed,
        "spec_hash": opts.spec_hash,
        "metrics": opts.metrics,
        "modes": opts.modes,
        "trials_budget": trials,
        "wall_time_s": round(wall_time, 3),
        "counts": counts(study),
        "versions": versions(),
    }
    # The kept weights of the very trial whose config and value are reported (never another trial's).
    checkpoint = best.user_attrs.get(_record.CHECKPOINT) if complete else None
    if not (isinstance(checkpoint, str) and os.path.exists(checkpoint)):
        checkpoint = None
    record["best_checkpoint"] = checkpoint
    if study.user_attrs.get("stopped_by"):
        record["stopped_by"] = study.user_attrs["stopped_by"]
    for key in ("fused_efficiency", "fused_capacity"):  # useful work / work paid, and K of the fused cohorts
        if key in study.user_attrs:
            record[key] = study.user_attrs[key]
    return TuneResult(
        best_checkpoint=checkpoint,
        best_config=best_config,
        best_value=best_value,
        best_metrics=best_metrics,
        trials=trials_table(study, opts.space),
        record=record,
        study=study,
        best_trials=front,
    )
