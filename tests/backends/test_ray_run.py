"""The Ray backend end to end on a real local Ray (2 CPUs): schedulers, checkpoints, PBT, resume, Lightning.

Objectives are pure Python unless the test is about Lightning; they are pickled by value so that
Ray's worker processes need not import this test module.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

pytest.importorskip("ray.tune")

from ray import cloudpickle

from tunebridge._progress import study_progress
from tunebridge._record import bookkeeping
from tunebridge.api import run_study
from tunebridge.backends._base import Reporter, Resume, TrialOutcome, objective_epoch
from tunebridge.backends.optuna import StudyOptions, count_finished
from tunebridge.backends.ray import run_ray
from tunebridge.schema import Choice, EarlyStoppingSpec, Float, Int, PruningSpec, Space

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_instance")]

SPACE = Space(n_layers=Int(1, 2), units=Int(8, 64, log=True, per_layer="n_layers"), lr=Float(1e-3, 1e-1, log=True))


class CurveObjective:
    """A learning curve from the config; resumable from the checkpoint it writes (a JSON 'epoch' file)."""

    def __init__(self, max_epochs: int, *, sleep: float = 0.0, rising: bool = False, rule: str = "best_epoch") -> None:
        self.max_epochs, self.sleep, self.rising, self.rule = max_epochs, sleep, rising, rule

    def loss(self, config: dict[str, Any], epoch: int) -> float:
        base = abs(float(config.get("lr", 0.01)) - 0.01) * 10 + 0.01 * int(config.get("n_layers", 1))
        return base + 0.01 * epoch if self.rising else base + 1.0 / epoch

    def __call__(self, config: dict[str, Any], reporter: Reporter, *, resume: Resume | None = None) -> TrialOutcome:
        start, restored = 1, False
        if resume is not None:  # the Objective contract: Ray passes resume= to go on from a checkpoint
            with open(resume.checkpoint) as f:
                start, restored = json.load(f)["epoch"] + 1, True
        seen: dict[int, float] = {}  # like a real objective, it knows only the epochs it trained itself
        epoch, pruned = start - 1, False
        for epoch in range(start, self.max_epochs + 1):
            time.sleep(self.sleep)
            seen[epoch] = self.loss(config, epoch)

            def save(folder: str, epoch: int = epoch) -> None:
                with open(os.path.join(folder, "checkpoint.ckpt"), "w") as f:
                    json.dump({"epoch": epoch}, f)

            if reporter.report(epoch, {"loss": seen[epoch]}, save):
                pruned = True
                break
        best_epoch = objective_epoch({e: {"loss": v} for e, v in seen.items()}, "loss", "min", self.rule) or epoch
        n_params = 10.0 * int(config.get("n_layers", 1))
        final, best = {"loss": seen[epoch], "n_params": n_params}, {"loss": seen[best_epoch], "n_params": n_params}
        return TrialOutcome(final, best, epoch, best_epoch, pruned=pruned, extra={"restored": restored, "start": start})


def _opts(tmp_path: Path, **kwargs: Any) -> StudyOptions:
    defaults: dict[str, Any] = {
        "space": SPACE,
        "metrics": ["loss"],
        "modes": ["min"],
        "search": "random",
        "seed": 0,
        "max_epochs": 6,
        "storage": f"sqlite:///{tmp_path}/study.db",
        "study": "s",
    }
    defaults.update(kwargs)
    return StudyOptions(**defaults)


def _configs(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.user_attrs["config"] for t in study.trials]


@pytest.mark.parametrize("rule", ["best_epoch", "last_epoch"])
@pytest.mark.slow
def test_hyperband_pauses_and_resumes_trials_from_their_checkpoints(tmp_path: Path, rule: str) -> None:
    # max_t=3, eta=3: a bracket of 2 trials run to 3, then one of 3 trials that all pause at epoch 1; the best
    # of those goes on from its checkpoint, the other two are stopped.
    opts = _opts(tmp_path, pruning=PruningSpec(policy="hyperband", reduction_factor=3), max_epochs=3)
    objective = CurveObjective(3, rising=True, rule=rule)  # the best epoch is the first one
    study = run_ray(
        opts,
        objective,
        n_trials=5,
        options={"storage_path": str(tmp_path)},
        progress=study_progress,
        objective_rule=rule,
    )
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3 + ["PRUNED"] * 2
    resumed = [t for t in study.trials if t.user_attrs.get("start", 1) > 1]
    assert resumed and all(t.state == TrialState.COMPLETE for t in resumed)  # paused, then went on from its checkpoint
    for t in study.trials:
        assert list(t.intermediate_values) == list(range(1, t.user_attrs["epochs"] + 1))  # no gap, no repeat
    for t in resumed:  # the objective epoch is chosen by the run's rule over the epochs before the pause too
        chosen = 1 if rule == "best_epoch" else t.user_attrs["epochs"]
        assert t.user_attrs["best_epoch"] == chosen and t.value == t.intermediate_values[chosen]


@pytest.mark.slow
def test_pbt_mutates_training_params_inside_the_space(tmp_path: Path) -> None:
    opts = _opts(tmp_path, max_epochs=4)
    # Synchronous PBT with the whole population running at once: the worst member is cloned at epoch 2.
    options = {
        "storage_path": str(tmp_path),
        "scheduler": "pbt",
        "pbt_interval": 2,
        "pbt_synch": True,
        "cpus_per_trial": 0.5,
    }
    study = run_ray(opts, CurveObjective(4), n_trials=4, options=options)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    for config in _configs(study):
        SPACE.validate(config)
    assert any(t.user_attrs["restored"] for t in study.trials)  # an exploit restarted a trial from a clone


@pytest.mark.slow
def test_pbt_restored_trials_report_the_last_epoch_under_last_epoch(tmp_path: Path) -> None:
    # A rising curve: its best epoch is the first one it trains, so a restored trial that picked the best
    # epoch (not the run's rule) would report epoch 3 (the first after the clone), not 4.
    opts = _opts(tmp_path, max_epochs=4)
    options = {"storage_path": str(tmp_path), "scheduler": "pbt", "pbt_interval": 2, "pbt_synch": True}
    objective = CurveObjective(4, rising=True, rule="last_epoch")
    study = run_ray(
        opts, objective, n_trials=4, options={**options, "cpus_per_trial": 0.5}, objective_rule="last_epoch"
    )
    restored = [t for t in study.trials if t.user_attrs["restored"]]
    assert restored  # an exploit restarted a trial from a clone's checkpoint
    for t in study.trials:
        assert t.user_attrs["best_epoch"] == t.user_attrs["epochs"] == 4
        assert t.value == t.intermediate_values[4]


@pytest.mark.slow
def test_patience_policy_stops_a_plateaued_trial(tmp_path: Path) -> None:
    opts = _opts(tmp_path, pruning=PruningSpec(policy="patience", patience=2), max_epochs=8)
    study = run_ray(opts, CurveObjective(8, rising=True), n_trials=2, options={"storage_path": str(tmp_path)})
    # Optuna's PatientPruner rule: at epoch 4 the last 3 epochs are all worse than epoch 1.
    assert [(t.state, t.user_attrs["epochs"]) for t in study.trials] == [(TrialState.PRUNED, 4)] * 2


@pytest.mark.parametrize(
    "search",
    [{"search": "nsga2"}, {"sampler": optuna.samplers.NSGAIISampler(seed=0, population_size=2)}],
    ids=["nsga2", "users-NSGAIISampler"],
)
@pytest.mark.slow
def test_several_objectives(tmp_path: Path, search: dict[str, Any]) -> None:
    # optuna 5.1's NSGAIISampler holds a lock; Ray pickles the searcher (tuner.pkl, experiment checkpoints).
    opts = _opts(tmp_path, metrics=["loss", "n_params"], modes=["min", "min"], **search)
    study = run_ray(opts, CurveObjective(3), n_trials=4, options={"storage_path": str(tmp_path)})
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in study.trials)
    assert {t.values[1] for t in study.trials} <= {10.0, 20.0}


@pytest.mark.slow
def test_resume_extends_the_budget_without_duplicates(tmp_path: Path) -> None:
    opts = _opts(tmp_path, search="tpe")
    options = {"storage_path": str(tmp_path)}
    assert len(run_ray(opts, CurveObjective(2), n_trials=3, options=options).trials) == 3
    study = run_ray(opts, CurveObjective(2), n_trials=5, options=options, resume=True)
    assert len(study.trials) == 5
    assert len({bookkeeping(t, "ray_trial_id") for t in study.trials}) == 5
    assert len({json.dumps(c, sort_keys=True) for c in _configs(study)}) == 5  # a continuation is reseeded
    assert len(run_ray(opts, CurveObjective(2), n_trials=5, options=options, resume=True).trials) == 5


INTERRUPTED_RUN = """
import sys, ray
from ray import cloudpickle
from tunebridge.backends.ray import run_ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
opts, objective, options = cloudpickle.loads(open(sys.argv[2], "rb").read())
run_ray(opts, objective, n_trials=6, options=options)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_keeping_finished_trials(tmp_path: Path) -> None:
    import ray

    opts = _opts(tmp_path)
    objective = CurveObjective(6, sleep=0.4)
    options = {"storage_path": str(tmp_path), "checkpoint_frequency": 1}
    (tmp_path / "args.pkl").write_bytes(cloudpickle.dumps((opts, objective, options)))
    (tmp_path / "run.py").write_text(textwrap.dedent(INTERRUPTED_RUN))
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "run.py"), address, str(tmp_path / "args.pkl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    storage = optuna.storages.RDBStorage(opts.storage)  # type: ignore[arg-type]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if count_finished(optuna.load_study(study_name="s", storage=storage).trials) >= 2:
                time.sleep(1.0)  # the next two trials are a couple of epochs in, with checkpoints
                break
        except KeyError:
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and "Resume with resume=True" in output, output[-3000:]
    before = optuna.load_study(study_name="s", storage=storage).trials
    assert 2 <= count_finished(before) < 6

    study = run_ray(opts, objective, n_trials=6, options=options, resume=True)
    ids = [bookkeeping(t, "ray_trial_id") for t in study.trials]
    assert len(ids) == len(set(ids)) == 6
    assert {bookkeeping(t, "ray_trial_id") for t in before} <= set(ids)  # nothing finished was lost
    assert len({bookkeeping(t, "ray_experiment") for t in study.trials}) == 1  # the same experiment, restored
    resumed = [t for t in study.trials if t.user_attrs.get("start", 1) > 1]
    assert resumed  # a trial that was running went on from its checkpoint
    for t in resumed:  # with its whole learning curve (the part before the kill came with the checkpoint)
        assert t.state == TrialState.COMPLETE and list(t.intermediate_values) == list(range(1, 7))


def _build_pl(config: dict[str, Any], *, max_epochs: int) -> tuple[Any, Any]:
    from tunebridge.lightning.builtin import build_builtin

    return build_builtin("mlp", "digits", config, max_epochs=max_epochs, seed=0, namespace="pytorch_lightning")


@pytest.mark.parametrize("namespace", ["lightning.pytorch", "pytorch_lightning"])
@pytest.mark.slow
def test_lightning_trials_pause_resume_and_stop_early_under_ray(tmp_path: Path, namespace: str) -> None:
    pytest.importorskip(namespace)
    from tunebridge.lightning import LightningObjective, TrialSettings, builtin_builder

    max_epochs = 3
    build: Callable[[dict[str, Any]], tuple[Any, Any]] = (
        builtin_builder("mlp", "digits", max_epochs=max_epochs, seed=0)
        if namespace == "lightning.pytorch"
        else functools.partial(_build_pl, max_epochs=max_epochs)
    )
    # min_delta 0.5 on accuracy: no epoch improves enough, so every trial stops early after epoch 2.
    settings = TrialSettings(
        metric="val_acc",
        mode="max",
        max_epochs=max_epochs,
        seed=0,
        accelerator="cpu",
        early_stopping=EarlyStoppingSpec(patience=1, min_delta=0.5),
        threads=1,
    )
    space = Space(n_layers=Int(1, 2), units=Choice([16, 32], per_layer="n_layers"), lr=Float(3e-3, 3e-2, log=True))
    # HyperBand (max_t=3, eta=3): 2 trials run on, 3 pause at epoch 1; the best of those resumes from its
    # Lightning checkpoint (EarlyStopping state included) and the other two are stopped.
    opts = _opts(
        tmp_path,
        space=space,
        metrics=["val_acc"],
        modes=["max"],
        max_epochs=max_epochs,
        pruning=PruningSpec(policy="hyperband", reduction_factor=3),
    )
    study = run_study(
        opts, LightningObjective(build, settings), backend="ray", n_trials=5, ray={"storage_path": str(tmp_path)}
    )
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE"] * 3 + ["PRUNED"] * 2, [t.user_attrs.get("fail_reason") for t in study.trials]
    for t in study.trials:
        assert list(t.intermediate_values) == list(range(1, t.user_attrs["epochs"] + 1))
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["early_stopped"] is True and t.user_attrs["epochs"] == 2
            assert t.value == t.intermediate_values[t.user_attrs["best_epoch"]] and t.user_attrs["final_n_params"] > 0
    assert any(tmp_path.rglob("checkpoint_*/checkpoint.ckpt"))

    # The trial HyperBand paused and resumed trains the curve it would have trained without the pause
    # (its checkpoint carries the random states and the data order): every config, trained again at once.
    class Curve:
        def __init__(self) -> None:
            self.values: dict[int, float] = {}

        def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
            self.values[epoch] = float(metrics["val_acc"])
            return False

    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            again = Curve()
            LightningObjective(build, settings)(dict(t.user_attrs["config"]), again)
            assert again.values == pytest.approx(dict(t.intermediate_values), abs=1e-6)
