"""`backend: ray` with `fuse:`: cohort workers as Ray tasks, all sharing the run's study (issue 9)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from typing import Any

import pytest
from optuna.trial import TrialState

from tunebridge import tune
from tunebridge._record import WORKER, bookkeeping
from tunebridge.backends.ray._options import RayOptions
from tunebridge.cli._recipes import BUNDLED
from tunebridge.errors import SchemaError
from tunebridge.fused._ray import cohort_workers
from tunebridge.lightning import builtin_builder
from tunebridge.schema import Choice, Float, Space

BUILD = builtin_builder("mlp", "digits", max_epochs=2, seed=0)
SPACE = Space(lr=Float(1e-3, 1e-1, log=True), optimizer=Choice(["sgd", "adam"]), batch_size=Choice([64]))


@pytest.mark.slow
def test_two_ray_cohort_workers_share_one_budget(ray_instance: None, tmp_path: Any) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = tune(BUILD, SPACE, metric="val_acc", mode="max", trials=8, max_epochs=2, backend="ray", storage=storage, study="ray-fused", seed=0, trainer={"accelerator": "cpu", "threads": 1}, run={"fuse": 4, "progress": False, "ray": {"max_concurrent": 2, "cpus_per_trial": 1}})  # fmt: skip
    trials = result.study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 8 and len(trials) == 8  # the budget exactly, each trial once
    assert all(sorted(t.intermediate_values) == [1, 2] for t in done)
    assert all(bookkeeping(t, "fused") for t in done)
    workers = Counter(bookkeeping(t, WORKER) for t in done)
    assert len(workers) == 2, workers  # both Ray workers trained cohorts
    assert result.study.user_attrs["fused_ray_workers"] == 2


@pytest.mark.slow
def test_a_users_own_module_fuses_on_ray(ray_instance: None, tmp_path: Any) -> None:
    """The user's path on Ray: the fused_custom recipe's module (a file of theirs, not a tunebridge model)."""
    path = BUNDLED / "fused_custom.py"
    spec = importlib.util.spec_from_file_location("fused_custom_on_ray", path)
    assert spec is not None and spec.loader is not None
    user = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(user)
    result = tune(user.build, user.space, metric="val_acc", mode="max", trials=4, max_epochs=2, backend="ray", storage=f"sqlite:///{tmp_path / 'study.db'}", study="ray-user", seed=0, trainer={"accelerator": "cpu", "threads": 1}, run={"fuse": 4, "progress": False, "ray": {"max_concurrent": 2, "cpus_per_trial": 1}})  # fmt: skip
    trials = result.study.get_trials(deepcopy=False)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(sorted(t.intermediate_values) == [1, 2] and bookkeeping(t, "fused") for t in trials)
    assert isinstance(result.load_best(), user.Net)


def test_fused_on_ray_refuses_an_in_memory_study_before_any_trial() -> None:
    with pytest.raises(SchemaError, match=r"cannot be in memory"):
        tune(
            BUILD,
            SPACE,
            metric="val_acc",
            mode="max",
            trials=2,
            backend="ray",
            storage=None,
            run={"fuse": 2, "progress": False},
        )


@pytest.mark.parametrize(
    ("resources", "nodes", "options", "expected"),
    [
        ({"CPU": 16, "GPU": 4}, 1, {}, (4, 1.0, 1.0)),  # one cohort worker per GPU
        ({"CPU": 32, "GPU": 8}, 2, {"gpus_per_trial": 2}, (4, 2.0, 1.0)),
        ({"CPU": 4}, 3, {}, (3, 0.0, 1.0)),  # no GPU: one per node
        ({"CPU": 4, "GPU": 2}, 1, {"max_concurrent": 1, "cpus_per_trial": 2}, (1, 1.0, 2.0)),
    ],
)
def test_cohort_workers_one_per_gpu_or_per_node(
    resources: dict[str, float], nodes: int, options: dict[str, Any], expected: tuple[int, float, float]
) -> None:
    assert cohort_workers(resources, nodes, RayOptions.from_dict(options)) == expected
