"""One suite every backend passes: the same spec means the same thing on Optuna and on Ray Tune.

Each test runs ``tunebridge.api.run_study`` (the backend-neutral seam) with real Optuna or a real
local Ray and a cheap pure-Python objective, except early stopping, which trains a tiny Lightning
model. No mocks.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tunebridge.api import run_study
from tunebridge.backends._base import Reporter, TrialOutcome
from tunebridge.backends.optuna import StudyOptions, count_finished
from tunebridge.results import trials_table
from tunebridge.schema import Bool, Choice, EarlyStoppingSpec, Float, Int, PruningSpec, Space

try:  # objectives travel to Ray's workers by value (they cannot import this test module)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
except ImportError:  # pragma: no cover - the Ray backend is an extra
    pass

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Ray starts a local cluster (~7 s) and runs each study in actors: the full tier runs it, the quick tier optuna.
BACKENDS = ["optuna", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])]

CONDITIONAL = Space(
    n_layers=Int(1, 2),
    units=Choice([16, 32], ordered=True, per_layer="n_layers"),
    optimizer=Choice(["sgd", "adam"]),
    momentum=Float(0.5, 0.9, step=0.4, when={"optimizer": "sgd"}),
)


class Curve:
    """A learning curve with its best epoch at ``dip`` (later epochs get worse, as with overfitting)."""

    def __init__(self, max_epochs: int, *, dip: int = 2, fail_when: tuple[str, Any] | None = None) -> None:
        self.max_epochs, self.dip, self.fail_when = max_epochs, dip, fail_when

    @staticmethod
    def quality(config: dict[str, Any]) -> float:
        return sum(zlib.crc32(json.dumps([k, v]).encode()) % 97 for k, v in sorted(config.items())) / 97.0

    def __call__(self, config: dict[str, Any], reporter: Reporter, **kwargs: Any) -> TrialOutcome:
        if self.fail_when is not None and config.get(self.fail_when[0]) == self.fail_when[1]:
            raise ValueError(f"{self.fail_when[0]}={self.fail_when[1]!r} is cursed")
        base = self.quality(config)
        history: list[dict[str, float]] = []
        pruned = False
        for epoch in range(1, self.max_epochs + 1):
            history.append({"loss": base + 0.1 * (epoch - self.dip) ** 2, "acc": 1.0 / (1.0 + base)})
            if reporter.report(epoch, history[-1], None):
                pruned = True
                break
        best_epoch = min(range(len(history)), key=lambda i: history[i]["loss"]) + 1
        return TrialOutcome(history[-1], history[best_epoch - 1], len(history), best_epoch, pruned=pruned)


def _opts(space: Space, **kwargs: Any) -> StudyOptions:
    defaults: dict[str, Any] = {"metrics": ["loss"], "modes": ["min"], "search": "random", "seed": 0, "max_epochs": 4}
    defaults.update(kwargs)
    return StudyOptions(space=space, **defaults)


def _run(backend: str, opts: StudyOptions, objective: Any, n_trials: int, tmp_path: Path) -> optuna.Study:
    ray = {"storage_path": str(tmp_path / "ray")} if backend == "ray" else None
    return run_study(opts, objective, backend=backend, n_trials=n_trials, ray=ray)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
    return str(request.param)


def _configs(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.user_attrs["config"] for t in study.trials]


def test_random_search_reaches_both_bounds(backend: str, tmp_path: Path) -> None:
    space = Space(n=Int(1, 4), even=Int(-2, 2, step=2), c=Choice(["a", "b", "c"]), flag=Bool(), x=Float(0.0, 1.0))
    study = _run(backend, _opts(space, max_epochs=1), Curve(1, dip=1), 30, tmp_path)
    configs = _configs(study)
    assert len(configs) == 30
    assert {c["n"] for c in configs} == {1, 2, 3, 4}
    assert {c["even"] for c in configs} == {-2, 0, 2}
    assert {c["c"] for c in configs} == {"a", "b", "c"} and {c["flag"] for c in configs} == {False, True}
    assert min(c["x"] for c in configs) < 0.15 and max(c["x"] for c in configs) > 0.85


def test_grid_is_the_same_set_of_configs(backend: str, tmp_path: Path) -> None:
    study = _run(backend, _opts(CONDITIONAL, search="grid"), Curve(4), 100, tmp_path)
    got = sorted(json.dumps(c, sort_keys=True) for c in _configs(study))
    assert got == sorted(json.dumps(c, sort_keys=True) for c in CONDITIONAL.grid())  # exactly once each
    assert len(got) == 18
    for t in study.trials:  # the objective value is the best epoch's, not the last one's
        assert t.state == TrialState.COMPLETE and t.user_attrs["best_epoch"] == 2
        assert t.value == pytest.approx(Curve.quality(t.user_attrs["config"]))
        assert sorted(t.intermediate_values) == [1, 2, 3, 4]


def test_tpe_configs_pass_validate(backend: str, tmp_path: Path) -> None:
    space = CONDITIONAL.replace(lr=Float(1e-4, 1e-1, log=True))
    study = _run(backend, _opts(space, search="tpe"), Curve(2), 12, tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 12
    for config in _configs(study):
        space.validate(config)


def test_pruning_spec_is_honoured(backend: str, tmp_path: Path) -> None:
    space = Space(a=Int(0, 50), b=Int(0, 50))
    opts = _opts(space, max_epochs=8, pruning=PruningSpec(policy="asha", grace_period=1, reduction_factor=2))
    study = _run(backend, opts, Curve(8, dip=8), 12, tmp_path)
    states = [t.state for t in study.trials]
    assert count_finished(study.trials) == 12 and TrialState.PRUNED in states and TrialState.COMPLETE in states
    for t in study.trials:
        assert 1 <= max(t.intermediate_values) <= 8
        if t.state == TrialState.PRUNED:
            assert max(t.intermediate_values) < 8


def test_failed_trial_is_isolated(backend: str, tmp_path: Path) -> None:
    space = Space(n=Int(1, 4))
    study = _run(backend, _opts(space, search="grid"), Curve(2, fail_when=("n", 2)), 4, tmp_path)
    by_n = {t.user_attrs["config"]["n"]: t for t in study.trials}
    assert sorted(by_n) == [1, 2, 3, 4]
    assert by_n[2].state == TrialState.FAIL
    assert by_n[2].user_attrs["fail_reason"] == "ValueError: n=2 is cursed"
    assert all(by_n[n].state == TrialState.COMPLETE for n in (1, 3, 4))


def test_early_stopping_is_honoured(backend: str, tmp_path: Path) -> None:
    from tunebridge.lightning import LightningObjective, TrialSettings, builtin_builder

    # min_delta 0.5 on accuracy: no epoch improves enough, so each trial stops after `patience` epochs.
    settings = TrialSettings(
        metric="val_acc",
        mode="max",
        max_epochs=5,
        seed=0,
        accelerator="cpu",
        threads=1,
        early_stopping=EarlyStoppingSpec(patience=1, min_delta=0.5),
    )
    objective = LightningObjective(builtin_builder("mlp", "digits", max_epochs=5, seed=0), settings)
    space = Space(n_layers=Int(1, 1), units=Choice([16, 32], per_layer="n_layers"), lr=Float(1e-2, 3e-2, log=True))
    study = _run(backend, _opts(space, metrics=["val_acc"], modes=["max"], max_epochs=5), objective, 2, tmp_path)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE, t.user_attrs.get("fail_reason")
        assert t.user_attrs["early_stopped"] is True and t.user_attrs["epochs"] == 2
        assert t.value == pytest.approx(t.intermediate_values[t.user_attrs["best_epoch"]])  # the best epoch's value


@pytest.mark.ray
@pytest.mark.slow
def test_trials_table_has_the_same_columns(tmp_path: Path, ray_instance: None) -> None:
    space = Space(n=Int(1, 4))
    objective = Curve(2, fail_when=("n", 2))
    tables = {
        b: trials_table(_run(b, _opts(space, search="grid"), objective, 4, tmp_path), space) for b in ("optuna", "ray")
    }
    assert list(tables["optuna"].columns) == list(tables["ray"].columns)
    assert sorted(tables["optuna"]["state"]) == sorted(tables["ray"]["state"])
