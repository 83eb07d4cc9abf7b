"""The study loop replayed on a learning-curve table: the real sampler, pruners and early-stopping rule.

One replayed study is sequential (one worker): each trial asks Optuna's sampler for a row of the table
(``trial.suggest_int("row", 0, N - 1)``, so the *real* sampler proposes it; with ``RandomSampler`` this is
random search over the table's configs, which were themselves drawn at random from the task's space), then
"trains" epoch by epoch by reading the row's recorded curve. After each epoch it does what a tunebridge trial
does, through tunebridge's own objects, not copies of them:

* :class:`tunebridge.backends.TrialEpochs` with :class:`~tunebridge.backends.EarlyStopRule` (the rule's one
  home: the same object the Lightning callback and fused members ask) decides early stopping, the objective
  epoch (``best_epoch``) and whether a prune request counts (never at the budget's last epoch);
* the pruner is the one :func:`tunebridge.backends.optuna._factories.make_pruner` builds for a
  :class:`~tunebridge.PruningSpec`, asked through :class:`~tunebridge.backends.optuna._study.OptunaReporter`
  (``trial.report`` + ``trial.should_prune``), and the trial is told COMPLETE (its best epoch's value) or
  PRUNED as ``settle_trial`` tells it;
* with ``backend="ray"`` the scheduler is the one :func:`tunebridge.backends.ray._schedulers.make_scheduler`
  builds, asked through its own ``on_trial_add`` / ``on_trial_result`` / ``on_trial_complete`` (ASHA and
  median only: Ray's synchronous HyperBand pauses trials and needs Ray's trial controller); the rows are the
  ones Optuna's ``RandomSampler`` proposes for the same seed (it does not read the history).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna

from tunebridge.backends import EarlyStopRule, TrialEpochs
from tunebridge.backends.optuna._compile import suggest
from tunebridge.backends.optuna._factories import make_pruner, make_sampler
from tunebridge.backends.optuna._study import OptunaReporter
from tunebridge.schema import EarlyStoppingSpec, PruningSpec, Space

__all__ = ["RowStream", "Run", "Table", "Variant", "replay"]

METRIC, MODE = "val_acc", "max"


@dataclass(frozen=True)
class Table:
    """Recorded curves: ``acc[i, e]`` and ``loss[i, e]`` are row ``i``'s val_acc and val_loss after epoch ``e + 1``."""

    name: str
    acc: np.ndarray
    loss: np.ndarray
    n_params: np.ndarray
    epoch_s: np.ndarray | None = None
    configs: tuple[str, ...] = ()  # each row's config, JSON

    @property
    def budget(self) -> int:
        return int(self.acc.shape[1])

    @property
    def rows(self) -> int:
        return int(self.acc.shape[0])

    @property
    def best(self) -> float:
        """The best value any config reaches at any epoch (a trial's value is its best epoch's)."""
        return float(np.nanmax(self.acc))

    @classmethod
    def load(cls, path: Any) -> Table:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                name=str(path).rsplit("/", 1)[-1].removesuffix(".npz"),
                acc=z["val_acc"].astype(np.float64),
                loss=z["val_loss"].astype(np.float64),
                n_params=z["n_params"].astype(np.float64),
                epoch_s=z["epoch_s"].astype(np.float64),
                configs=tuple(str(c) for c in z["configs"]),
            )


@dataclass(frozen=True)
class Variant:
    """One replayed policy: a pruning spec, early stopping or not, and the backend whose pruner decides."""

    policy: str = "none"
    grace_period: int = 1
    reduction_factor: int = 3
    es_patience: int | None = None
    es_min_delta: float = 0.0
    backend: str = "optuna"
    patience: int = 3
    # What the pruner is told each epoch: the epoch's val_acc ("value", what tunebridge reports), the best
    # val_acc so far ("best"), or minus the lowest val_loss so far ("loss"): the second look's variants.
    signal: str = "value"
    es_monitor: str | None = None  # early stopping on another metric (val_loss), else on val_acc
    # The study's sampler: "random" (a row drawn from the table) or "tpe" (tunebridge's TPE over the task's space,
    # its proposal mapped to the nearest row of the table: :class:`NearestRow`).
    search: str = "random"

    @property
    def label(self) -> str:
        p = self.policy
        if p in ("asha", "hyperband"):
            p += f"(g{self.grace_period},rf{self.reduction_factor})"
        elif p == "median":
            p += f"(g{self.grace_period})"
        elif p == "patience":
            p += f"(p{self.patience})"
        if self.backend != "optuna":
            p += f"[{self.backend}]"
        if self.search != "random":
            p += f"[{self.search}]"
        if self.signal != "value":
            p += f" on {self.signal}"
        if self.es_patience is not None:
            p += f" + ES(p{self.es_patience}"
            p += f",d{self.es_min_delta:g}" if self.es_min_delta else ""
            p += f",{self.es_monitor})" if self.es_monitor else ")"
        return p

    def pruning(self) -> PruningSpec:
        return PruningSpec(
            policy=self.policy,  # type: ignore[arg-type]
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            patience=self.patience,
        )

    def early_stopping(self) -> EarlyStoppingSpec | None:
        if self.es_patience is None:
            return None
        mode = None if self.es_monitor is None else "min"  # a loss
        return EarlyStoppingSpec(
            patience=self.es_patience, min_delta=self.es_min_delta, monitor=self.es_monitor, mode=mode
        )


@dataclass
class Run:
    """One replayed study: per trial (in order) its row, epochs trained and value (None: pruned)."""

    rows: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    spent: int = 0  # trial-epochs so far
    best: float = -math.inf  # the best complete value so far

    def add(self, row: int, epochs: int, value: float | None) -> None:
        """Record one finished trial."""
        self.rows.append(row)
        self.epochs.append(epochs)
        self.values.append(value)
        self.spent += epochs
        self.best = max(self.best, value if value is not None else -math.inf)

    def going(self, *, cap: int, rows: list[int] | None, stop_at: float | None, horizon: int) -> bool:
        """Whether the replayed study goes on: budget left, rows left, and no early stop (``stop_at``)."""
        done = stop_at is not None and self.best >= stop_at and self.spent >= horizon
        return self.spent < cap and (rows is None or len(self.rows) < len(rows)) and not done

    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.epochs)

    def best_so_far(self) -> np.ndarray:
        """The best complete value after each trial (-inf before the first)."""
        v = np.array([-math.inf if x is None else x for x in self.values], dtype=float)
        return np.maximum.accumulate(v) if len(v) else v

    def epochs_to(self, target: float) -> float:
        """Cumulative epochs up to and including the first complete trial at or above ``target`` (inf: never)."""
        hit = np.nonzero(self.best_so_far() >= target)[0]
        return float(self.cumulative()[hit[0]]) if len(hit) else math.inf


class NearestRow:
    """The table's row nearest to a config of the task's space: how a model-based sampler's proposals are replayed.

    Each config is a vector with one block per parameter (per-layer ones once per possible layer): a number
    (``Int``, ``Float``, an ordered ``Choice``) as its place in ``[0, 1]`` (log-scaled for ``log=True``), an
    unordered ``Choice`` one-hot (two different values are 1 apart), a ``Bool`` as 0 or 1; a parameter the
    config does not have (inactive under its condition, a layer it lacks) is -1, or all zeros for one-hot, so
    that it is at least as far from any value as two values are from each other. The nearest row by Euclidean
    distance wins (the first on ties). With 500 rows in a 14-16 parameter space this is coarse: the sampler
    proposes configs, the study trains the nearest recorded ones (the usual way tabular benchmarks replay
    model-based search).

    A study takes the nearest row *it has not trained yet* (while any is left): a real proposal next to a config
    already tried is a new config with a curve of its own, not the same curve again. Without that, TPE settles on
    a region, is handed the same few rows over and over, and never learns anything new (most seeds then never
    reach the target, with or without pruning).
    """

    def __init__(self, table: Table, space: Space) -> None:
        self.blocks: list[tuple[str, Any]] = []
        for name, p in space.items():
            if p.per_layer is not None:
                layers = dict(space.items())[p.per_layer]
                self.blocks += [(f"{name}/{i}", p) for i in range(int(layers.high))]
            else:
                self.blocks.append((name, p))
        self.rows = np.array([self.encode(json.loads(c)) for c in table.configs])

    def encode(self, config: dict[str, Any]) -> np.ndarray:
        out: list[float] = []
        for key, p in self.blocks:
            value = config.get(key)
            kind = type(p).__name__
            if kind == "Choice" and not p.ordered:
                out += [(1.0 if value == v else 0.0) / math.sqrt(2) for v in p.values]
            elif value is None:
                out.append(-1.0)
            elif kind == "Choice":
                out.append(list(p.values).index(value) / max(1, len(p.values) - 1))
            elif kind == "Bool":
                out.append(float(bool(value)))
            else:
                lo, hi, x = float(p.low), float(p.high), float(value)
                if getattr(p, "log", False):
                    lo, hi, x = math.log(lo), math.log(hi), math.log(x)
                out.append((x - lo) / (hi - lo) if hi > lo else 0.0)
        return np.array(out)

    def __call__(self, config: dict[str, Any], used: set[int] | None = None) -> int:
        """The nearest row; with ``used``, the nearest not in it (while any is left)."""
        distance = ((self.rows - self.encode(config)) ** 2).sum(axis=1)
        if used and len(used) < len(distance):
            distance[list(used)] = np.inf
        return int(np.argmin(distance))


@functools.cache
def task_space(name: str) -> Space:
    """The space a table's configs were drawn from (``make_curves.py``'s task of that name)."""
    from make_curves import _task_setup  # benchmarks/ is on the path of the scripts that replay

    return _task_setup(name, 0, None)[1]


def _trial_epochs(table: Table, variant: Variant) -> TrialEpochs:
    rule = EarlyStopRule.of(variant.early_stopping(), metric=METRIC, mode=MODE)
    return TrialEpochs(METRIC, MODE, rule="best_epoch", budget=table.budget, early_stopping=rule)


def _train(table: Table, row: int, epochs: TrialEpochs, ask: Any, signal: str = "value") -> TrialEpochs:
    """Row ``row``'s epochs, one at a time, until the budget, early stopping or a prune (``ask(epoch, metrics)``).

    ``signal``: what the pruner is told as val_acc (see :attr:`Variant.signal`).
    """
    best, lowest = -math.inf, math.inf
    for e in range(1, table.budget + 1):
        metrics = {METRIC: float(table.acc[row, e - 1]), "val_loss": float(table.loss[row, e - 1])}
        decision = epochs.validated(e, metrics)
        best, lowest = max(best, metrics[METRIC]), min(lowest, metrics["val_loss"])
        told = {"value": metrics[METRIC], "best": best, "loss": -lowest}[signal]
        if epochs.reported(e, ask(e, {**metrics, METRIC: told})) or decision.early_stop:
            break
    return epochs


class RowStream:
    """The rows Optuna's ``RandomSampler(seed)`` proposes for a table of ``n_rows``, drawn as they are read (it
    does not read the study's history, so every variant of a seed gets the same sequence)."""

    def __init__(self, n_rows: int, seed: int) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.n_rows = n_rows
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
        self.rows: list[int] = []

    def __getitem__(self, i: int) -> int:
        while len(self.rows) <= i:
            trial = self.study.ask()
            self.rows.append(trial.suggest_int("row", 0, self.n_rows - 1))
            self.study.tell(trial, 0.0)
        return self.rows[i]


def replay(
    table: Table,
    variant: Variant,
    seed: int,
    *,
    cap: int,
    rows: list[int] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    study_name: str | None = None,
    stop_at: float | None = None,
    horizon: int = 0,
) -> Run:
    """One sequential study on ``table`` until ``cap`` trial-epochs are spent.

    Args:
        stop_at, horizon: Stop sooner, once ``horizon`` trial-epochs are spent and a complete trial reached
            ``stop_at`` (what the measures read is known by then: saves replaying long tails).
        study_name: The study's name (default ``replay-SEED``): Optuna's Hyperband assigns trials to brackets
            by a hash of the study name and trial number.
        rows: Replay these rows in this order (enqueued) instead of what the sampler proposes (the test's path).
        sampler: The study's sampler (default ``RandomSampler(seed)``).
    """
    if variant.backend == "ray":
        return _replay_ray(table, variant, seed, cap=cap, rows=rows, stop_at=stop_at, horizon=horizon)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(variant.pruning(), max_epochs=table.budget)
    nearest: NearestRow | None = None
    space = task_space(table.name) if variant.search != "random" and rows is None else None
    if space is not None:
        if table.name not in _NEAREST:
            _NEAREST[table.name] = NearestRow(table, space)
        nearest = _NEAREST[table.name]
        sampler = make_sampler(variant.search, seed=seed, space=space, n_objectives=1)
    study = optuna.create_study(
        study_name=study_name or f"replay-{seed}",
        direction="maximize",
        sampler=sampler or optuna.samplers.RandomSampler(seed=seed),
        pruner=pruner,
    )
    run = Run()
    while run.going(cap=cap, rows=rows, stop_at=stop_at, horizon=horizon):
        i = len(run.rows)
        if rows is not None:
            study.enqueue_trial({"row": rows[i]})
        trial = study.ask()
        if nearest is not None and space is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                row = nearest(suggest(trial, space), used=set(run.rows))
        else:
            row = trial.suggest_int("row", 0, table.rows - 1)
        reporter = OptunaReporter(trial, METRIC, 1, budget=table.budget)
        epochs = _train(table, row, _trial_epochs(table, variant), reporter.report, variant.signal)
        outcome = epochs.outcome()
        if outcome.pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            value = None
        else:
            value = float(outcome.best[METRIC])
            study.tell(trial, value)
        run.add(row, outcome.epochs, value)
    return run


_NEAREST: dict[str, NearestRow] = {}  # per table name: the rows encoded once per process


def _replay_ray(
    table: Table,
    variant: Variant,
    seed: int,
    *,
    cap: int,
    rows: list[int] | None,
    stop_at: float | None = None,
    horizon: int = 0,
) -> Run:
    """As :func:`replay`, with tunebridge's Ray scheduler deciding (its own decision methods)."""
    from tunebridge.backends.ray._schedulers import TIME_ATTR, make_scheduler

    scheduler = make_scheduler(variant.pruning(), max_epochs=table.budget, n_objectives=1, mode=MODE, space=Space({}))
    if scheduler is None:  # policy none: FIFO
        fifo = Variant(
            es_patience=variant.es_patience, es_min_delta=variant.es_min_delta, es_monitor=variant.es_monitor
        )
        return replay(table, fifo, seed, cap=cap, rows=rows, stop_at=stop_at, horizon=horizon)
    scheduler.set_search_properties(METRIC, MODE)
    order: list[int] | RowStream = rows if rows is not None else RowStream(table.rows, seed)
    run = Run()
    while run.going(cap=cap, rows=rows, stop_at=stop_at, horizon=horizon):
        i = len(run.rows)
        row = order[i]
        trial = SimpleNamespace(trial_id=f"t{i}", status="RUNNING")
        scheduler.on_trial_add(None, trial)
        last: dict[str, Any] = {}

        def ask(e: int, m: dict[str, float], trial: Any = trial, last: dict[str, Any] = last) -> bool:
            last.clear()
            last.update({TIME_ATTR: e, **m})
            return str(scheduler.on_trial_result(None, trial, dict(last))) == str(scheduler.STOP)

        epochs = _train(table, row, _trial_epochs(table, variant), ask, variant.signal)
        scheduler.on_trial_complete(None, trial, dict(last))  # what Ray's controller does when a trial stops
        outcome = epochs.outcome()
        value = None if outcome.pruned else float(outcome.best[METRIC])
        run.add(row, outcome.epochs, value)
    return run
