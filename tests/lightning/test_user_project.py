"""A user's own Lightning project through tunebridge, as a user runs it (issue 8).

The project (tests/user_project/my_project.py) makes its layers in ``__init__``, has its own data and
callback, and knows nothing of tunebridge. It runs under both Lightning packages.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
import torch
import yaml

from tunebridge import SchemaError, tune
from tunebridge._record import bookkeeping
from tunebridge.backends.optuna import make_storage
from tunebridge.results import load_checkpoint
from tunebridge.schema import Choice, Space

PROJECT = Path(__file__).parent.parent / "user_project" / "my_project.py"
PACKAGES = ["lightning.pytorch", "pytorch_lightning"]
GRID = Space(lr=Choice([0.05, 0.2]), hidden=Choice([8, 16]))


def load_project(package: str) -> ModuleType:
    """The user's module, imported under the given Lightning package (one module object per package)."""
    name = f"my_project_{package.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    os.environ["TB_LIGHTNING"] = package
    spec = importlib.util.spec_from_file_location(name, PROJECT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def curves(study: optuna.Study) -> dict[str, list[float]]:
    """Per-epoch validation curves by config (grid search: one trial per config)."""
    return {
        repr(sorted(t.user_attrs["config"].items())): [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        for t in study.trials
    }


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.is_finished()]


def run(package: str, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "metric": "val_loss",
        "mode": "min",
        "search": "grid",
        "trials": 4,
        "max_epochs": 3,
        "seed": 7,
    }
    trainer = {"accelerator": "cpu", **kw.pop("trainer", {})}
    run_options = {"progress": False, "checkpoints": {"keep": 0}, **kw.pop("run", {})}
    args.update(kw)
    return tune(load_project(package).build, GRID, trainer=trainer, run=run_options, **args)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_same_config_trains_the_same_model_in_two_runs(package: str) -> None:
    first, second = run(package), run(package)
    assert curves(first.study) == curves(second.study)
    assert len({tuple(c) for c in curves(first.study).values()}) == 4  # four configs, four different curves


@pytest.mark.slow
def test_a_worker_process_trains_the_same_curves(tmp_path: Path) -> None:
    """`tunebridge worker` (another process, the spec next to the user's module) gives the same curves."""
    (tmp_path / "my_project.py").write_text(PROJECT.read_text())
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            study: user-worker
            builder: my_project:build
            space:
              lr: {type: choice, values: [0.05, 0.2]}
              hidden: {type: choice, values: [8, 16]}
            metric: val_loss
            mode: min
            search: grid
            trials: 4
            max_epochs: 3
            seed: 7
            accelerator: cpu
            threads: 1
            keep_checkpoints: 0
            """
        )
    )
    storage = f"sqlite:///{tmp_path}/w.db"
    env = {**os.environ, "TB_LIGHTNING": "lightning.pytorch"}
    done = subprocess.run(
        [sys.executable, "-m", "tunebridge", "worker", str(spec), "--storage", storage],
        capture_output=True,
        cwd=tmp_path.parent,  # run from elsewhere: the builder is found next to the spec
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    worker = optuna.load_study(study_name="user-worker", storage=make_storage(storage))
    assert curves(worker) == curves(run("lightning.pytorch").study)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_instance")
@pytest.mark.slow
def test_optuna_and_ray_train_the_same_curves(tmp_path: Path) -> None:
    from ray import cloudpickle

    module = load_project("lightning.pytorch")
    cloudpickle.register_pickle_by_value(module)  # Ray's workers cannot import it by name
    on_ray = run("lightning.pytorch", backend="ray", run={"ray": {"storage_path": str(tmp_path), "max_concurrent": 2}})
    assert curves(on_ray.study) == curves(run("lightning.pytorch").study)


def test_trainer_options_a_user_callback_and_a_csv_logger(tmp_path: Path) -> None:
    module = load_project("lightning.pytorch")
    epochs_file = tmp_path / "epochs.txt"
    result = run(
        "lightning.pytorch",
        trials=2,
        max_epochs=2,
        search="random",
        study="opts",
        trainer={
            "options": {"precision": "bf16-mixed", "gradient_clip_val": 1.0, "limit_train_batches": 3},
            "callbacks": [{"class_path": f"{module.__name__}:CountEpochs", "init_args": {"path": str(epochs_file)}}],
            "logger": "csv",
            "log_dir": str(tmp_path / "logs"),
        },
    )
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]
    assert epochs_file.read_text().split() == ["0", "1", "0", "1"]  # a fresh callback in each trial
    for t in result.study.trials:  # one CSV run per trial, grouped by the study, the config as hyperparameters
        run_dir = tmp_path / "logs" / "opts" / f"trial_{t.number}"
        assert (run_dir / "metrics.csv").is_file()
        assert yaml.safe_load((run_dir / "hparams.yaml").read_text())["lr"] == t.user_attrs["config"]["lr"]


@pytest.mark.parametrize(
    ("trainer", "match"),
    [
        ({"max_epochs": 5}, r"trainer\.max_epochs: tunebridge sets this Trainer argument itself.*`max_epochs:`"),
        ({"enable_progress_bar": True}, r"--no-progress"),
        ({"logger": True}, r"`logger: tensorboard \| csv \| mlflow`"),
        ({"gradient_clip": 1.0}, r"trainer\.gradient_clip: not an argument of Lightning's Trainer.*gradient_clip_val"),
    ],
)
def test_trainer_options_tunebridge_owns_are_refused_with_where_to_set_them(
    trainer: dict[str, Any], match: str
) -> None:
    with pytest.raises(SchemaError, match=match):
        run("lightning.pytorch", trainer={"options": trainer})


def test_a_callback_of_the_other_lightning_package_is_refused() -> None:
    other = load_project("pytorch_lightning")
    result = run(
        "lightning.pytorch", trials=1, search="random", trainer={"callbacks": [other.CountEpochs("unused.txt")]}
    )
    reason = result.study.trials[0].user_attrs["fail_reason"]
    assert "CountEpochs is not a lightning.pytorch.Callback" in reason


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.slow
def test_the_best_checkpoint_is_kept_and_reproduces_the_reported_value(package: str, tmp_path: Path) -> None:
    result = run(
        package,
        search="random",
        trials=3,
        max_epochs=4,
        run={"checkpoints": {"keep": 1, "dir": str(tmp_path / "ckpt")}},
        storage=f"sqlite:///{tmp_path}/s.db",
        study="keep",
    )
    assert result.best_checkpoint is not None and Path(result.best_checkpoint).is_file()
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [Path(result.best_checkpoint).name]  # top-1 only
    paths = result.save(tmp_path / "out")
    best = yaml.safe_load(paths["best"].read_text())
    assert best["checkpoint"] == result.best_checkpoint
    module = load_project(package)
    for model in (
        result.load_best(),  # rebuilt with the run's build, then the weights
        load_checkpoint(best["checkpoint"], module_class=bookkeeping(result.study.best_trial, "module_class")),
    ):
        trainer = module.pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        [metrics] = trainer.validate(model, datamodule=module.Data(), verbose=False)
        assert metrics["val_loss"] == pytest.approx(result.best_value, rel=1e-5)


def test_objective_last_epoch_reports_the_last_epoch(tmp_path: Path) -> None:
    result = run("lightning.pytorch", trials=2, search="random", run={"objective": "last_epoch"})
    for t in result.study.trials:
        assert t.user_attrs["best_epoch"] == t.user_attrs["epochs"] == 3
        assert t.value == t.intermediate_values[3]


def test_a_target_value_stops_the_study_before_its_budget(tmp_path: Path) -> None:
    result = run("lightning.pytorch", search="random", trials=6, run={"stop": {"target": 10.0}})  # any val_loss
    assert len(finished(result.study)) == 1  # the rest of the queue waits (a rerun stops at once too)
    assert result.record["stopped_by"].startswith("stop.target: the best value")


def test_patience_trials_stops_when_the_best_stops_improving(tmp_path: Path) -> None:
    result = run(
        "lightning.pytorch",
        search="grid",
        trials=4,
        run={"enqueue": [{"lr": 0.2, "hidden": 16}], "stop": {"patience_trials": 1}},
    )
    assert len(finished(result.study)) < 4 and "stop.patience_trials" in result.record["stopped_by"]


def test_enqueued_configs_run_first_and_are_validated(tmp_path: Path) -> None:
    result = run("lightning.pytorch", search="random", trials=2, run={"enqueue": [{"lr": 0.2, "hidden": 8}]})
    assert result.study.trials[0].user_attrs["config"] == {"lr": 0.2, "hidden": 8}
    with pytest.raises(SchemaError, match=r"enqueue\[0\]"):
        run("lightning.pytorch", search="random", trials=2, run={"enqueue": [{"lr": 0.3, "hidden": 8}]})


def test_warm_start_from_a_best_yaml(tmp_path: Path) -> None:
    first = run("lightning.pytorch", search="random", trials=2)
    paths = first.save(tmp_path)
    second = run("lightning.pytorch", search="random", trials=1, run={"warm_start": str(paths["best"])})
    assert second.study.trials[0].user_attrs["config"] == first.best_config


def test_torch_threads_stay_one() -> None:
    assert torch.get_num_threads() == 1


@pytest.mark.ray
@pytest.mark.usefixtures("ray_instance")
@pytest.mark.slow
def test_on_ray_the_best_checkpoint_is_kept_and_a_target_stops_the_run(tmp_path: Path) -> None:
    from ray import cloudpickle

    module = load_project("lightning.pytorch")
    cloudpickle.register_pickle_by_value(module)
    result = run(
        "lightning.pytorch",
        backend="ray",
        search="random",
        trials=3,
        run={
            "checkpoints": {"keep": 1, "dir": str(tmp_path / "ckpt")},
            "ray": {"storage_path": str(tmp_path / "ray"), "max_concurrent": 1},
        },
    )
    assert result.best_checkpoint is not None
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [Path(result.best_checkpoint).name]
    trainer = module.pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    [metrics] = trainer.validate(result.load_best(), datamodule=module.Data(), verbose=False)
    assert metrics["val_loss"] == pytest.approx(result.best_value, rel=1e-5)

    stopped = run(
        "lightning.pytorch",
        backend="ray",
        search="random",
        trials=6,
        run={"stop": {"target": 10.0}, "ray": {"storage_path": str(tmp_path / "ray2"), "max_concurrent": 1}},
    )
    assert len(stopped.study.trials) < 6 and stopped.record["stopped_by"].startswith("stop.target")


def test_a_users_model_checkpoint_callback_runs(tmp_path: Path) -> None:
    module = load_project("lightning.pytorch")
    checkpoint = module.pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "mine"), monitor="val_loss")
    result = run("lightning.pytorch", trials=1, search="random", trainer={"callbacks": [checkpoint]})
    assert result.study.trials[0].state.name == "COMPLETE"
    assert any((tmp_path / "mine").glob("*.ckpt"))  # the user's own checkpoints, next to tunebridge's kept one


class _PruneOddTrials(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its second epoch."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1 and trial.last_step is not None and trial.last_step >= 2


@pytest.mark.parametrize("package", PACKAGES)
def test_a_trial_writes_its_kept_weights_once_and_a_pruned_trial_writes_none(
    package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunebridge.lightning import _callbacks

    writes: dict[str, list[str]] = {"at once": [], "taken in memory": []}
    save, write = _callbacks._save_atomically, _callbacks._write_atomically

    def counted_save(trainer: Any, path: str) -> None:
        writes["at once"].append(path)
        save(trainer, path)

    def counted_write(trainer: Any, checkpoint: dict[str, Any], path: str) -> None:
        writes["taken in memory"].append(path)
        write(trainer, checkpoint, path)

    monkeypatch.setattr(_callbacks, "_save_atomically", counted_save)
    monkeypatch.setattr(_callbacks, "_write_atomically", counted_write)
    kw: dict[str, Any] = {"search": "grid", "max_epochs": 4, "pruner": _PruneOddTrials()}
    result = run(package, run={"checkpoints": {"keep": 4, "dir": str(tmp_path / "memory")}}, **kw)
    complete = [t for t in result.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2 and len(result.study.trials) == 4
    assert writes["at once"] == []  # small weights: taken in memory at each better epoch...
    assert sorted(writes["taken in memory"]) == sorted(t.user_attrs["checkpoint"] for t in complete)  # ...written once

    # Weights over the limit are written whenever an epoch is better, as before: the same files result.
    monkeypatch.setattr(_callbacks, "IN_MEMORY_LIMIT", 0)
    writes["taken in memory"].clear()
    again = run(package, run={"checkpoints": {"keep": 4, "dir": str(tmp_path / "at_once")}}, **kw)
    assert writes["taken in memory"] == [] and len(writes["at once"]) >= 2
    module = load_project(package)
    for first, second in zip(result.study.trials, again.study.trials):
        assert first.state == second.state and first.value == second.value
        if first.state != optuna.trial.TrialState.COMPLETE:
            continue
        a, b = (torch.load(t.user_attrs["checkpoint"], weights_only=False) for t in (first, second))
        assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"]
        assert a["state_dict"].keys() == b["state_dict"].keys()
        for key in a["state_dict"]:
            assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
        assert a["optimizer_states"][0]["state"].keys() == b["optimizer_states"][0]["state"].keys()
        model = load_checkpoint(first.user_attrs["checkpoint"], module_class=bookkeeping(first, "module_class"))
        trainer = module.pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        [metrics] = trainer.validate(model, datamodule=module.Data(), verbose=False)
        assert metrics["val_loss"] == pytest.approx(first.value, rel=1e-5)
