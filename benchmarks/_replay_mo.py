"""MO-ASHA replayed on a table: (val_acc max, n_params min), and the hypervolume the completed trials reach.

A replayed multi-objective study is :func:`_replay.replay`'s loop with the study tunebridge builds for
``metric: [val_acc, n_params]``: two directions, the pruner :func:`make_pruner` returns for them (MO-ASHA,
:class:`~tunebridge.backends.optuna._mo_pruner.MoAshaPruner`), reached through
:class:`~tunebridge.backends.optuna._study.OptunaReporter` with two objectives (which hands every epoch's
metrics, ``n_params`` included, to the pruner's rungs), and the trial's values as tunebridge's
:func:`~tunebridge.backends._base.objective_values` gives them.

The hypervolume of a run after ``x`` trial-epochs is that of its completed trials' points (val_acc, n_params)
(pruning on val_acc only and no pruning included: their completed rows give the same two numbers), in the
plane (val_acc, -log10 n_params), above the reference point (``acc_ref``, -log10 of the table's largest model).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
from _replay import METRIC, Run, Table, Variant, _train, _trial_epochs

from tunebridge.backends._base import objective_values
from tunebridge.backends.optuna._factories import make_pruner
from tunebridge.backends.optuna._study import OptunaReporter

__all__ = ["hypervolume", "hypervolume_curve", "replay_mo"]

METRICS, MODES = [METRIC, "n_params"], ["max", "min"]


def replay_mo(table: Table, variant: Variant, seed: int, *, cap: int) -> Run:
    """One sequential two-objective study with tunebridge's multi-objective pruner for ``variant``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(variant.pruning(), max_epochs=table.budget, metrics=METRICS, modes=MODES)
    study = optuna.create_study(
        study_name=f"replay-mo-{seed}",
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=pruner,
    )
    run = Run()
    while run.spent < cap:
        trial = study.ask()
        row = trial.suggest_int("row", 0, table.rows - 1)
        reporter = OptunaReporter(trial, METRIC, len(METRICS), budget=table.budget)
        n_params = float(table.n_params[row])

        def ask(e: int, m: dict[str, float], reporter: OptunaReporter = reporter, n: float = n_params) -> bool:
            return reporter.report(e, {**m, "n_params": n})

        outcome = _train(table, row, _trial_epochs(table, variant), ask).outcome({"n_params": n_params})
        if outcome.pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            value = None
        else:
            values = objective_values(outcome, METRICS)
            study.tell(trial, values)
            value = values[0]
        run.add(row, outcome.epochs, value)
    return run


def hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """The area dominated by ``points`` (both coordinates maximized) above ``ref``."""
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: -p[0])
    area, top = 0.0, ref[1]
    for x, y in pts:  # by decreasing x: each point adds the strip above the best y so far
        if y > top:
            area += (x - ref[0]) * (y - top)
            top = y
    return area


def hypervolume_curve(table: Table, run: Run, xs: np.ndarray, acc_ref: float) -> np.ndarray:
    """The run's hypervolume after each of ``xs`` trial-epochs (its completed trials by then)."""
    ref = (acc_ref, -math.log10(float(table.n_params.max())))
    cum = run.cumulative()
    out = np.zeros(len(xs))
    for j, x in enumerate(xs):
        done = [
            (float(v), -math.log10(float(table.n_params[r])))
            for r, v, c in zip(run.rows, run.values, cum)
            if v is not None and c <= x
        ]
        out[j] = hypervolume(done, ref)
    return out
