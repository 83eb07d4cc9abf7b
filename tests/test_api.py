"""``tunebridge.tune``: the result object, the run record, saving, and bad arguments."""

from __future__ import annotations

import json
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
import yaml

import tunebridge
from tunebridge import ConversionError, SchemaError, TuneResult, tune
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Float, Int, Space

torch.set_num_threads(1)

SPACE = Space(
    n_layers=Int(1, 2),
    units=Choice([8, 16], ordered=True, per_layer="n_layers"),
    lr=Float(1e-3, 1e-1, log=True),
    optimizer=Choice(["sgd", "momentum", "adam"]),
    momentum=Float(0.5, 0.95, when={"optimizer": "momentum"}),
)
BUILD = partial(build_builtin, "mlp", "wine", max_epochs=2, seed=0)


@pytest.fixture(scope="module")
def result() -> TuneResult:
    return tune(
        BUILD,
        SPACE,
        metric="val_loss",
        mode="min",
        trials=3,
        max_epochs=2,
        search="random",
        seed=3,
        trainer={"accelerator": "cpu"},
        run={"progress": False, "spec_hash": "f" * 64},
    )


def test_tune_is_exported_lazily() -> None:
    assert tunebridge.tune is tune
    assert tunebridge.TuneResult is TuneResult


def test_best_config_validates_and_matches_the_best_trial(result: TuneResult) -> None:
    assert result.best_config is not None
    SPACE.validate(result.best_config)
    best = result.study.best_trial
    assert result.best_value == best.value == min(t.value for t in result.study.trials)
    assert result.best_config == best.user_attrs["config"]
    assert result.best_metrics["val_loss"] == best.user_attrs["final_val_loss"]
    assert result.best_metrics["epochs"] == 2
    assert {"val_acc", "n_params"} <= set(result.best_metrics)
    assert result.best_trials == []  # single objective: no Pareto front


def test_trials_table(result: TuneResult) -> None:
    df = result.trials
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 3
    for col in (
        "number",
        "state",
        "value",
        "epochs",
        "duration_s",
        "param.n_layers",
        "param.units/0",
        "param.lr",
        "param.optimizer",
        "val_loss",
        "val_acc",
        "n_params",
        "fail_reason",
    ):
        assert col in df.columns, col
    assert list(df["number"]) == [0, 1, 2]
    assert set(df["state"]) == {"COMPLETE"}
    assert (df["epochs"] == 2).all()
    # inactive parameters are absent (NaN in the table), never stale values
    for _, row in df.iterrows():
        has_momentum = "param.momentum" in df.columns and pd.notna(row["param.momentum"])
        assert has_momentum == (row["param.optimizer"] == "momentum")


def test_run_record(result: TuneResult) -> None:
    record = result.record
    for key in (
        "study",
        "storage",
        "backend",
        "search",
        "seed",
        "spec_hash",
        "metrics",
        "modes",
        "trials_budget",
        "wall_time_s",
        "counts",
        "versions",
    ):
        assert key in record, key
    assert (record["spec_hash"], record["seed"], record["search"], record["backend"]) == (
        "f" * 64,
        3,
        "random",
        "optuna",
    )
    assert record["counts"] == {"complete": 3, "pruned": 0, "fail": 0, "requeued": 0, "running": 0, "waiting": 0}
    assert record["wall_time_s"] > 0
    assert record["trials_budget"] == 3
    assert record["versions"]["optuna"] == optuna.__version__
    assert record["versions"]["torch"] is not None and record["versions"]["lightning"] is not None
    assert record["versions"]["tunebridge"] == tunebridge.__version__
    assert result.study.user_attrs["spec_hash"] == "f" * 64


def test_save_writes_best_record_and_trials(result: TuneResult, tmp_path: Path) -> None:
    paths = result.save(tmp_path / "out")
    assert set(paths) == {"best", "record", "trials"}
    assert [p.name for p in paths.values()] == ["best.yaml", "record.json", "trials.csv"]
    best = yaml.safe_load(paths["best"].read_text())
    assert best["config"] == result.best_config
    assert best["value"] == pytest.approx(result.best_value)
    SPACE.validate(best["config"])
    record = json.loads(paths["record"].read_text())
    assert record["spec_hash"] == "f" * 64 and record["counts"]["complete"] == 3
    trials = pd.read_csv(paths["trials"])
    assert len(trials) == 3 and "param.lr" in trials.columns


def test_same_seed_same_study(result: TuneResult) -> None:
    again = tune(
        BUILD,
        SPACE,
        metric="val_loss",
        mode="min",
        trials=3,
        max_epochs=2,
        search="random",
        seed=3,
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    assert [t.user_attrs["config"] for t in again.study.trials] == [t.user_attrs["config"] for t in result.study.trials]
    assert list(again.trials["value"]) == pytest.approx(list(result.trials["value"]))


def test_multi_objective_tune() -> None:
    res = tune(
        BUILD,
        SPACE,
        metric=["val_loss", "n_params"],
        mode="min",
        trials=4,
        max_epochs=1,
        search="nsga2",
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    assert isinstance(res.best_value, list) and len(res.best_value) == 2
    assert res.best_trials and all(len(r["values"]) == 2 for r in res.best_trials)
    assert {"value_0", "value_1"} <= set(res.trials.columns)
    for row in res.best_trials:
        SPACE.validate(row["config"])
    assert res.record["metrics"] == ["val_loss", "n_params"] and res.record["modes"] == ["min", "min"]


def test_builder_by_module_function_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tb_api_user_builder.py").write_text(
        textwrap.dedent("""
        from tunebridge.lightning.builtin import build_builtin

        def build(config):
            return build_builtin("mlp", "wine", config, max_epochs=1, seed=0)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    res = tune(
        "tb_api_user_builder:build",
        SPACE,
        metric="val_acc",
        mode="max",
        trials=1,
        max_epochs=1,
        search="random",
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    assert res.record["counts"]["complete"] == 1


def test_a_run_where_every_trial_fails_still_gives_a_result(tmp_path: Path) -> None:
    res = tune(
        BUILD,
        SPACE,
        metric="val_f1",
        trials=2,
        max_epochs=1,
        search="random",
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    assert (res.best_config, res.best_value, res.best_metrics) == (None, None, {})
    assert res.record["counts"]["fail"] == 2
    assert all(r.startswith("MetricNotFoundError: metric 'val_f1'") for r in res.trials["fail_reason"])
    paths = res.save(tmp_path)
    assert yaml.safe_load(paths["best"].read_text())["config"] is None


def test_storage_and_study_name_persist(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/api.db"
    res = tune(
        BUILD,
        SPACE,
        metric="val_loss",
        trials=1,
        max_epochs=1,
        search="random",
        storage=storage,
        study="api-study",
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    assert res.record["study"] == "api-study" and res.record["storage"] == storage
    loaded = optuna.load_study(study_name="api-study", storage=storage)
    assert len(loaded.trials) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # One objective check for tune() and spec files (tunebridge.spec.objectives), so one message.
        ({"metric": ""}, SchemaError, r"metric: `metric` must name the validation metric to optimise .*but got ''"),
        ({"metric": []}, SchemaError, r"`metric` must name the validation metric to optimise"),
        ({"metric": ["val_loss", "val_loss"]}, SchemaError, r"metric: metrics must be unique"),
        ({"mode": "up"}, SchemaError, r"mode: `mode` must be min or max, one per metric, but got 'up'"),
        ({"metric": ["val_loss", "n_params"], "mode": ["min"] * 3}, SchemaError, r"`mode` must be min or max, one per"),
        ({"trials": 0}, SchemaError, r"trials: `trials` must be an integer >= 1, but got 0"),
        ({"trials": True}, SchemaError, r"`trials` must be an integer >= 1, but got True"),
        ({"trials": 2.5}, SchemaError, r"`trials` must be an integer >= 1, but got 2\.5"),
        ({"max_epochs": 0}, SchemaError, r"max_epochs: `max_epochs` must be an integer >= 1, but got 0"),
        ({"space": {"lr": {"type": "float"}}}, SchemaError, r"space: `space` must be a tunebridge Space, but got dict"),
        ({"pruner": "hyperbnd"}, SchemaError, r"pruner\.policy: `policy` must be one of none, median, asha"),
        ({"pruner": {"policy": "asha", "grace": 2}}, SchemaError, r"grace"),
        ({"early_stopping": {"patiense": 3}}, SchemaError, r"patiense.*patience"),
        (
            {"early_stopping": {"patience": 0}},
            SchemaError,
            r"early_stopping\.patience: `patience` must be an integer >= 1",
        ),
        ({"search": "tpee"}, SchemaError, r"search: unknown search algorithm, but got 'tpee'"),
        ({"backend": "hyperopt"}, SchemaError, r"backend: `backend` must be optuna or ray, but got 'hyperopt'"),
        ({"storage": "ftp://host/x"}, SchemaError, r"storage: unknown storage URL, but got 'ftp://host/x'"),
        ({"build": "no_such_module_xyz:build"}, SchemaError, r"builder: cannot import the builder's module"),
        ({"build": "json:no_such_function"}, SchemaError, r"builder: the builder's module has no such function"),
        (
            {"space": Space(units=Int(16, 256, step=16, log=True))},
            ConversionError,
            r"optuna cannot express 'units' with log=True and step=16",
        ),
        (
            {"metric": ["val_loss", "n_params"], "pruner": "median"},
            SchemaError,
            r"pruner\.policy: `policy: median` compares one metric and cannot prune several objectives",
        ),
    ],
)
def test_bad_arguments_raise_before_any_trial(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    calls: list[Any] = []

    def build(config: dict[str, Any]) -> Any:
        calls.append(config)
        return BUILD(config)

    args: dict[str, Any] = {
        "build": build,
        "space": SPACE,
        "metric": "val_loss",
        "trials": 1,
        "max_epochs": 1,
        "search": "random",
        "run": {"progress": False, **kwargs.pop("run", {})},
        **kwargs,
    }
    with pytest.raises(error, match=match):
        tune(args.pop("build"), args.pop("space"), **args)
    assert calls == []  # nothing was trained


def test_worker_options_name_the_heartbeat_timeout() -> None:
    from tunebridge.backends.optuna import WorkerOptions

    assert WorkerOptions().dead_after == 30.0  # 3 default heartbeat intervals
    assert WorkerOptions(heartbeat=2.0).dead_after == 6.0
    assert WorkerOptions(heartbeat=2.0, heartbeat_timeout=1.5).dead_after == 1.5
