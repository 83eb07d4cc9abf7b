"""benchmarks/_replay.py replays the study loop: on a real study's recorded curves it makes that study's decisions."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _replay import Table, Variant, replay

BUDGET = 4
# Learning rates from useless to good: enough spread that ASHA prunes some at each rung and keeps others.
LRS = (0.03, 1e-5, 0.01, 3e-5, 0.003, 1e-4, 0.02, 2e-5, 0.006, 0.0003)


def _table(curves: list[list[float]]) -> Table:
    acc = np.full((len(curves), BUDGET), np.nan)
    for i, c in enumerate(curves):
        acc[i, : len(c)] = c
    return Table("recorded", acc, np.zeros_like(acc), np.zeros(len(curves)))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pruner", "early_stopping"),
    [
        ({"policy": "asha", "grace_period": 1, "reduction_factor": 2}, None),
        ({"policy": "hyperband", "grace_period": 1, "reduction_factor": 2}, {"patience": 1}),
        ({"policy": "median", "grace_period": 1}, None),
    ],
)
def test_replay_of_a_real_study_makes_its_decisions(pruner: dict[str, object], early_stopping: object) -> None:
    import tunebridge
    from tunebridge.lightning import builtin_builder

    space = tunebridge.Space({"lr": tunebridge.Float(1e-5, 0.1, log=True), "optimizer": tunebridge.Choice(["adam"])})
    configs = [{"lr": lr, "optimizer": "adam"} for lr in LRS]
    result = tunebridge.tune(
        builtin_builder("mlp", "digits", max_epochs=BUDGET, seed=0),
        space,
        metric="val_acc",
        mode="max",
        trials=len(configs),
        max_epochs=BUDGET,
        search="random",
        pruner=pruner,
        early_stopping=early_stopping,
        study="replayed",
        trainer={"accelerator": "cpu", "threads": 1},
        run={"fuse": 1, "progress": False, "enqueue": configs},  # fuse 1: one trial after another, as replayed
    )
    trials = sorted(result.study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert [t.params["lr"] for t in trials] == pytest.approx(list(LRS))
    curves = [[t.intermediate_values[e] for e in sorted(t.intermediate_values)] for t in trials]
    states = [t.state.name for t in trials]
    assert "PRUNED" in states and "COMPLETE" in states  # the study made decisions worth replaying

    es = early_stopping["patience"] if isinstance(early_stopping, dict) else None
    variant = Variant(str(pruner["policy"]), int(pruner["grace_period"]), int(pruner.get("reduction_factor", 3)), es)  # type: ignore[call-overload]
    run = replay(_table(curves), variant, 0, cap=10**6, rows=list(range(len(trials))), study_name="replayed")
    # Same decisions at the same epochs: the replay never reads past where the real trial stopped (NaN there).
    assert run.epochs == [len(c) for c in curves]
    assert ["PRUNED" if v is None else "COMPLETE" for v in run.values] == states
    assert run.values == [t.value if t.state.name == "COMPLETE" else None for t in trials]


def test_replay_is_paired_and_deterministic_per_seed() -> None:
    rng = np.random.default_rng(0)
    quality = rng.uniform(0.3, 0.99, size=(60, 1))
    acc = quality * (1 - np.exp(-np.arange(1, 9) / rng.uniform(1, 4, size=(60, 1))))
    table = Table("toy", acc, -acc, np.ones(60))
    none = replay(table, Variant(), 3, cap=200)
    asha = replay(table, Variant("asha", es_patience=2), 3, cap=200)
    assert sum(none.epochs) == 200 and all(e == 8 for e in none.epochs) and None not in none.values
    assert asha.rows[: len(none.rows)] == none.rows  # one seed, one row sequence: variants are compared paired
    assert (
        replay(table, Variant("hyperband"), 3, cap=200).epochs == replay(table, Variant("hyperband"), 3, cap=200).epochs
    )
    assert None in asha.values and sum(asha.epochs) >= 200 and len(asha.rows) > len(none.rows)
    assert none.epochs_to(table.best) == math.inf or none.epochs_to(table.best) % 8 == 0


@pytest.mark.slow  # imports Ray (~3 s)
def test_ray_asha_replay_proposes_the_same_rows_and_prunes() -> None:
    rng = np.random.default_rng(1)
    acc = rng.uniform(0.3, 0.99, size=(60, 1)) * (1 - np.exp(-np.arange(1, 10) / 2.0))
    table = Table("toy", acc, -acc, np.ones(60))
    none = replay(table, Variant(), 5, cap=180)
    ray = replay(table, Variant("asha", backend="ray"), 5, cap=180)
    assert ray.rows[: len(none.rows)] == none.rows
    assert None in ray.values and all(e in (1, 3, 9) for e in ray.epochs)  # Ray's rungs at 1 and 3 (rf 3), budget 9


def test_nearest_row_maps_every_recorded_config_to_its_row_and_tpe_replays_deterministically() -> None:
    from _replay import NearestRow, task_space

    table = Table.load(Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "digits_mlp.npz")
    nearest = NearestRow(table, task_space("digits_mlp"))
    assert [nearest(json.loads(c)) for c in table.configs] == list(range(table.rows))
    config = json.loads(table.configs[0])  # a config next to a row goes to that row
    assert nearest({**config, "dropout": config["dropout"] + 1e-6}) == 0
    tpe = Variant("asha", es_patience=6, search="tpe")
    a, b = (replay(table, tpe, 3, cap=10 * table.budget) for _ in range(2))
    assert a.rows == b.rows and a.values == b.values and len(a.rows) > 10  # TPE's seed fixes the study
    assert len(set(a.rows)) == len(a.rows)  # each proposal trains a row the study has not trained yet
