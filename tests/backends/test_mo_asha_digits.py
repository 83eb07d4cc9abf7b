"""MO-ASHA in real two-metric digits studies (issue 18): ``pruner: asha`` prunes on both backends, the same trials."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.api import tune
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Fixed, Space

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

# A grid, so both backends run the same configs in the same order.
SPACE = Space(
    n_layers=Fixed(1),
    units=Choice([8, 32], ordered=True, per_layer="n_layers"),
    lr=Choice([0.0003, 0.003, 0.03, 0.3], ordered=True),
    optimizer=Fixed("adam"),
)
MAX_EPOCHS = 4
PRUNER = {"policy": "asha", "grace_period": 1, "reduction_factor": 2}  # rungs at epochs 1 and 2


def _study(backend: str, metric: tuple[str, str] = ("val_acc", "val_loss"), **run: Any) -> optuna.Study:
    result = tune(
        partial(build_builtin, "mlp", "digits", max_epochs=MAX_EPOCHS, seed=0, namespace="lightning.pytorch"),
        SPACE,
        metric=list(metric),
        mode=["max", "min"],
        backend=backend,
        trials=8,
        max_epochs=MAX_EPOCHS,
        search="grid",
        pruner=PRUNER,
        trainer={"accelerator": "cpu", "threads": 1},
        run={"progress": False, **run},
    )
    return result.study


def _decisions(study: optuna.Study) -> dict[str, tuple[str, int]]:
    """config -> (state, epochs trained)."""
    out = {}
    for t in study.trials:
        config = t.user_attrs[_record.CONFIG]
        out[f"units={config['units/0']} lr={config['lr']}"] = (t.state.name, int(t.user_attrs[_record.EPOCHS]))
    return out


def _check(decisions: dict[str, tuple[str, int]]) -> None:
    states = [state for state, _ in decisions.values()]
    assert states.count("PRUNED") > 0 and states.count("COMPLETE") > 0 and "FAIL" not in states, decisions
    assert all(epochs in (1, 2) for state, epochs in decisions.values() if state == "PRUNED"), decisions


@pytest.mark.slow
def test_a_two_metric_digits_study_is_pruned_on_optuna() -> None:
    study = _study("optuna")
    _check(_decisions(study))
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    rungs = {k for t in pruned for k in t.system_attrs if k.startswith(_record.SYSTEM_PREFIX + _record.MO_RUNG_PREFIX)}
    assert rungs and rungs <= {"tb_mo_rung_0_1", "tb_mo_rung_0_2"}


@pytest.mark.slow
def test_accuracy_against_size_is_pruned_at_every_rung_with_n_params_reported_each_epoch() -> None:
    study = _study("optuna", metric=("val_acc", "n_params"))
    _check(_decisions(study))
    for t in study.trials:  # the size is known from the first epoch, not only when the trial ends
        assert t.values is None or t.values[1] == t.user_attrs["final_n_params"]


@pytest.mark.ray
@pytest.mark.usefixtures("ray_instance")
@pytest.mark.slow
def test_a_two_metric_digits_study_prunes_the_same_trials_on_ray(tmp_path: Path) -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    on_ray = _decisions(_study("ray", ray={"storage_path": str(tmp_path), "max_concurrent": 1}))
    _check(on_ray)
    assert on_ray == _decisions(_study("optuna"))
