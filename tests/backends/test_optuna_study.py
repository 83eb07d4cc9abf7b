"""The Optuna backend's factories (samplers, pruners, storages) and its trial loop, on real studies.

Objectives here are pure Python (no training): they report per epoch through the real reporter and
return a :class:`~tunebridge.backends._base.TrialOutcome`, so the loop is tested fast and exactly.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tunebridge import presets
from tunebridge._record import bookkeeping
from tunebridge.api import make_result, run_study
from tunebridge.backends._base import Reporter, TrialOutcome
from tunebridge.backends.optuna import (
    SEARCH_ALGORITHMS,
    StudyOptions,
    WorkerOptions,
    count_finished,
    make_pruner,
    make_sampler,
    make_storage,
    normalize_db_url,
    open_study,
    storage_kind,
)
from tunebridge.backends.optuna._ordered import OrderedChoices
from tunebridge.errors import ConversionError, MissingDependencyError, SchemaError, SpecMismatchError
from tunebridge.schema import Bool, Choice, Float, Int, PruningSpec, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = Space(
    n_layers=Int(1, 3),
    units=Int(8, 64, log=True, per_layer="n_layers"),
    lr=Float(1e-4, 1e-1, log=True),
    optimizer=Choice(["sgd", "momentum", "adam"]),
    momentum=Float(0.5, 0.99, when={"optimizer": "momentum"}),
    batch_size=Choice([16, 32, 64], ordered=True),
)
FLAT = Space(x=Float(-2.0, 2.0), y=Float(-2.0, 2.0), k=Int(0, 4))


def loss_of(config: dict[str, Any]) -> float:
    """A deterministic, config-dependent pseudo loss."""
    return sum(abs(float(v)) if isinstance(v, (int, float)) else len(str(v)) / 10 for v in config.values())


def make_objective(
    *,
    epochs: int = 3,
    fail_on: set[int] | None = None,
    value: Callable[[dict[str, Any]], float] = loss_of,
    sleep_on: dict[int, float] | None = None,
) -> Callable[[dict[str, Any], Reporter], TrialOutcome]:
    """An objective that reports ``value(config) * (1 + 1/epoch)`` per epoch; call ``i`` may raise or sleep."""
    calls = {"n": 0}

    def objective(config: dict[str, Any], reporter: Reporter) -> TrialOutcome:
        i = calls["n"]
        calls["n"] += 1
        if fail_on and i in fail_on:
            raise RuntimeError(f"boom in call {i}")
        if sleep_on and i in sleep_on:
            time.sleep(sleep_on[i])
        base = value(config)
        history = []
        for epoch in range(1, epochs + 1):
            metrics = {"val_loss": base * (1 + 1 / epoch), "val_acc": 1 / (1 + abs(base))}
            history.append(metrics)
            if reporter.report(epoch, metrics):
                return TrialOutcome(metrics=metrics, best=metrics, epochs=epoch, best_epoch=epoch, pruned=True)
        n_params = float(sum(v for k, v in config.items() if k.startswith("units/")) or 1)
        final = {**history[-1], "n_params": n_params}
        return TrialOutcome(metrics=final, best=final, epochs=epochs, best_epoch=epochs)

    return objective


def opts(space: Space = SPACE, **kw: Any) -> StudyOptions:
    base: dict[str, Any] = {"metrics": ["val_loss"], "modes": ["min"], "search": "random", "seed": 0}
    base.update(kw)
    return StudyOptions(space=space, **base)


def configs_of(study: optuna.Study, states: tuple[TrialState, ...] = (TrialState.COMPLETE,)) -> list[dict[str, Any]]:
    return [t.user_attrs["config"] for t in study.get_trials(deepcopy=False, states=states)]


# --- samplers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "cls"),
    [
        ("grid", optuna.samplers.RandomSampler),  # the grid itself is enqueued; random fills nothing
        ("random", optuna.samplers.RandomSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
        ("qmc", optuna.samplers.QMCSampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
    ],
)
def test_every_search_name_gives_the_documented_sampler(search: str, cls: type) -> None:
    assert search in SEARCH_ALGORITHMS
    assert type(make_sampler(search, seed=0, space=FLAT)) is cls


def test_search_names_are_all_covered() -> None:
    assert set(SEARCH_ALGORITHMS) == {"grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2"}


@pytest.mark.parametrize(("space", "group"), [(SPACE, True), (FLAT, False)], ids=["conditional", "flat"])
def test_tpe_is_multivariate_and_grouped_for_conditional_spaces(space: Space, group: bool) -> None:
    sampler = make_sampler("tpe", seed=0, space=space)
    if isinstance(sampler, OrderedChoices):  # SPACE has an ordered choice: TPE models it over the index
        sampler = sampler.inner
    assert sampler._multivariate is True
    assert sampler._group is group


@pytest.mark.parametrize(
    ("search", "n_objectives", "error", "match"),
    [
        ("tpee", 1, SchemaError, r"search: unknown search algorithm, but got 'tpee'\. Did you mean 'tpe'"),
        ("hyperopt", 1, SchemaError, r"unknown search algorithm.*Known: grid, random, tpe"),
        ("cmaes", 2, ConversionError, r"optuna cannot express 'search' with cmaes with several objectives"),
    ],
)
def test_bad_search_raises(search: str, n_objectives: int, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make_sampler(search, seed=0, space=FLAT, n_objectives=n_objectives)


@pytest.mark.parametrize(("search", "n"), [("random", 8), ("tpe", 14), ("qmc", 8), ("nsga2", 8), ("gp", 4)])
def test_same_seed_gives_the_same_sequence_of_configs(search: str, n: int) -> None:
    space = FLAT if search in ("gp", "qmc") else SPACE

    def run(seed: int) -> list[dict[str, Any]]:
        study = run_study(opts(space, search=search, seed=seed), make_objective(), n_trials=n)
        return [t.user_attrs["config"] for t in study.trials]

    first = run(7)
    assert len(first) == n
    assert run(7) == first
    assert run(8) != first


def test_cmaes_runs_or_names_its_missing_extra_before_any_trial() -> None:
    from tunebridge._compat import has_module
    from tunebridge.errors import MissingDependencyError

    if not has_module("cmaes"):
        with pytest.raises(MissingDependencyError, match=r"pip install 'tunebridge\[.*\]'"):
            run_study(opts(FLAT, search="cmaes"), make_objective(), n_trials=4)
        return
    study = run_study(opts(FLAT, search="cmaes"), make_objective(), n_trials=4)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4


# --- pruners ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cls", "attrs"),
    [
        (PruningSpec(), optuna.pruners.NopPruner, {}),
        (PruningSpec(policy="median", grace_period=1), optuna.pruners.MedianPruner, {"_n_warmup_steps": 0}),
        (PruningSpec(policy="median", grace_period=4), optuna.pruners.MedianPruner, {"_n_warmup_steps": 3}),
        (
            PruningSpec(policy="asha", grace_period=2, reduction_factor=4),
            optuna.pruners.SuccessiveHalvingPruner,
            {"_min_resource": 2, "_reduction_factor": 4, "_min_early_stopping_rate": 0},
        ),
        (
            PruningSpec(policy="hyperband", grace_period=1, reduction_factor=3),
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 1, "_max_resource": 12, "_reduction_factor": 3},
        ),
        (
            PruningSpec(policy="hyperband", grace_period=2, max_budget=9),
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 2, "_max_resource": 9},
        ),
        (
            PruningSpec(policy="patience", patience=5, min_delta=0.01),
            optuna.pruners.PatientPruner,
            {"_patience": 5, "_min_delta": 0.01, "_wrapped_pruner": None},
        ),
    ],
    ids=["none", "median-g1", "median-g4", "asha", "hyperband-budget=max_epochs", "hyperband-max_budget", "patience"],
)
def test_pruning_spec_maps_to_optuna_pruner(spec: PruningSpec, cls: type, attrs: dict[str, Any]) -> None:
    pruner = make_pruner(spec, max_epochs=12)
    assert type(pruner) is cls
    for key, value in attrs.items():
        assert getattr(pruner, key) == value, key


@pytest.mark.parametrize("policy", ["median", "patience"])
def test_a_single_metric_policy_with_several_objectives_is_refused_naming_those_that_can(policy: str) -> None:
    with pytest.raises(
        SchemaError, match=rf"`policy: {policy}` compares one metric.*Use pruner: asha or pruner: hyperband"
    ):
        make_pruner(PruningSpec(policy=policy), max_epochs=5, metrics=["a", "b"], modes=["min", "min"])
    with pytest.raises(SchemaError, match=r"cannot prune several objectives, but got .* \[val_loss, n_params\]"):
        open_study(opts(metrics=["val_loss", "n_params"], modes=["min", "min"], pruning=PruningSpec(policy=policy)))
    assert isinstance(make_pruner(PruningSpec(), max_epochs=5, n_objectives=2), optuna.pruners.NopPruner)


@pytest.mark.parametrize("policy", ["asha", "hyperband"])
def test_asha_and_hyperband_with_several_objectives_are_mo_asha(policy: str) -> None:
    from tunebridge.backends.optuna._mo_pruner import MoAshaPruner

    study = open_study(
        opts(metrics=["val_loss", "n_params"], modes=["min", "min"], pruning=PruningSpec(policy=policy), max_epochs=9)
    )
    assert isinstance(study.pruner, MoAshaPruner) and study.pruner.metrics == ("val_loss", "n_params")
    # grace 1, eta 3, budget 9: Hyperband's brackets start at epochs 1, 3 and 9 (the last one never stops a trial)
    assert study.pruner.rule.brackets == (1 if policy == "asha" else 3)


# --- storages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, "memory"),
        ("memory", "memory"),
        (":memory:", "memory"),
        ("sqlite:///runs/t.db", "rdb"),
        ("postgresql://u@h/db", "rdb"),
        ("postgresql+psycopg2://u@h/db", "rdb"),
        ("mysql://u@h/db", "rdb"),
        ("redis://localhost:6379/0", "journal-redis"),
        ("runs/study.log", "journal-file"),
        ("journal:///tmp/s.journal", "journal-file"),
    ],
)
def test_storage_kind(url: str | None, kind: str) -> None:
    assert storage_kind(url) == kind


@pytest.mark.parametrize("url", ["ftp://host/study", "runs/study.db", "http://localhost:8080"])
def test_unknown_storage_url_raises_schema_error(url: str) -> None:
    with pytest.raises(SchemaError, match=r"storage: unknown storage URL, but got .*Use sqlite:///study\.db"):
        make_storage(url)


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalize_db_url(url: str, normalized: str) -> None:
    # A string rule: the drivers are given, so the test means the same on a machine without psycopg.
    assert normalize_db_url(url, drivers={"psycopg"}) == normalized


@pytest.mark.parametrize(
    ("drivers", "normalized"),
    [({"psycopg", "psycopg2"}, "postgresql+psycopg://u@h/db"), ({"psycopg2"}, "postgresql+psycopg2://u@h/db")],
)
def test_normalize_db_url_prefers_psycopg3_then_psycopg2(drivers: set[str], normalized: str) -> None:
    assert normalize_db_url("postgresql://u@h/db", drivers=drivers) == normalized


def test_normalize_db_url_without_a_postgres_driver_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'tunebridge\[postgres\]'"):
        normalize_db_url("postgresql://u@h/db", drivers=set())


def _round_trip(url: str) -> None:
    """Create a study with two finished trials in ``url`` and read it back through a fresh storage."""
    name = f"tb-test-{uuid.uuid4().hex[:10]}"
    storages = [make_storage(url), make_storage(url)]
    try:
        study = optuna.create_study(storage=storages[0], study_name=name)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        again = optuna.load_study(study_name=name, storage=storages[1])
        assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 2
        assert again.trials[0].params == study.trials[0].params
        optuna.delete_study(study_name=name, storage=storages[1])
    finally:
        for storage in storages:  # close pooled connections (psycopg warns about connections left open)
            if isinstance(storage, optuna.storages.RDBStorage):
                storage.engine.dispose()


def test_memory_storage() -> None:
    assert isinstance(make_storage(None), optuna.storages.InMemoryStorage)
    assert isinstance(make_storage("memory"), optuna.storages.InMemoryStorage)


def test_sqlite_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/dir/study.db"  # missing folders are created
    assert isinstance(make_storage(url), optuna.storages.RDBStorage)
    _round_trip(url)
    assert (tmp_path / "sub" / "dir" / "study.db").is_file()


@pytest.mark.parametrize("form", ["path", "journal-url"])
def test_journal_file_storage(tmp_path: Path, form: str) -> None:
    path = tmp_path / "j" / "study.log"
    url = str(path) if form == "path" else f"journal://{path}"
    assert isinstance(make_storage(url), optuna.storages.JournalStorage)
    _round_trip(url)
    assert path.is_file() and path.stat().st_size > 0


@pytest.mark.services
def test_postgresql_storage(postgres_url: str) -> None:
    storage = make_storage(postgres_url)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.engine.url.drivername == "postgresql+psycopg"
    storage.engine.dispose()
    _round_trip(postgres_url)


@pytest.mark.services
def test_redis_journal_storage(redis_url: str) -> None:
    from optuna.storages.journal import JournalRedisBackend

    storage = make_storage(redis_url)
    assert isinstance(storage, optuna.storages.JournalStorage)
    assert isinstance(storage._backend, JournalRedisBackend)
    _round_trip(redis_url)


# --- the trial loop --------------------------------------------------------------------------------------------


def test_an_exception_fails_only_that_trial() -> None:
    study = run_study(opts(), make_objective(fail_on={1, 3}), n_trials=5)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    for t in study.trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs["fail_reason"] == f"RuntimeError: boom in call {t.number}"
            assert t.user_attrs["traceback"].startswith("Traceback (most recent call last)")
            assert "in objective" in t.user_attrs["traceback"]
            assert "boom" in t.user_attrs["traceback"]
            assert "config" in t.user_attrs  # the config it failed with is kept
        else:
            assert "fail_reason" not in t.user_attrs
            assert t.user_attrs["epochs"] == 3
            assert t.user_attrs["final_val_loss"] == pytest.approx(t.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_objective_fails_the_trial(bad: float) -> None:
    def value(config: dict[str, Any]) -> float:
        return bad if config["k"] == 2 else float(config["k"])

    study = run_study(opts(FLAT), make_objective(value=value), n_trials=12)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert failed and complete
    assert len(failed) + len(complete) == 12
    for t in failed:
        assert t.user_attrs["config"]["k"] == 2
        assert t.user_attrs["fail_reason"].startswith("FloatingPointError: metric 'val_loss' is ")
        assert t.user_attrs["final_val_loss"] == str(bad)  # stored JSON-safe
    assert all(t.user_attrs["config"]["k"] != 2 for t in complete)


GRID_SPACE = Space(
    n_layers=Int(1, 2),
    units=Choice([8, 16], ordered=True, per_layer="n_layers"),
    optimizer=Choice(["sgd", "momentum"]),
    momentum=Float(0.5, 0.9, grid=(0.5, 0.9), when={"optimizer": "momentum"}),
    bn=Bool(),
)


def test_grid_search_evaluates_each_grid_config_once() -> None:
    grid = GRID_SPACE.grid()
    assert len(grid) == (2 + 4) * (1 + 2) * 2
    study = run_study(opts(GRID_SPACE, search="grid"), make_objective(), n_trials=100)
    keys = [json_key(c) for c in configs_of(study)]
    assert len(keys) == len(set(keys)) == len(grid)  # every grid config once, then the grid is exhausted
    assert set(keys) == {json_key(c) for c in grid}
    assert study.user_attrs["grid_size"] == len(grid)
    assert sorted(bookkeeping(t, "grid_index") for t in study.trials) == list(range(len(grid)))


def test_grid_search_respects_a_smaller_budget() -> None:
    try:
        study = run_study(opts(GRID_SPACE, search="grid"), make_objective(), n_trials=5)
    except SchemaError:  # refusing the smaller budget up front is fine too
        return
    keys = [json_key(c) for c in configs_of(study)]
    assert len(keys) == len(set(keys)) == 5, f"{len(keys)} grid configs ran for trials=5"


@pytest.mark.slow
def test_resume_continues_counting_towards_the_budget(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"
    o = opts(storage=storage, study="resume-me", spec_hash="abc")
    first = run_study(o, make_objective(), n_trials=3)
    before = [(t.number, t.params, t.value) for t in first.trials]
    assert len(before) == 3
    again = run_study(o, make_objective(), n_trials=3)  # budget reached: nothing new
    assert len(again.trials) == 3
    more = run_study(o, make_objective(), n_trials=5)
    after = [(t.number, t.params, t.value) for t in more.trials]
    assert after[:3] == before  # finished trials are neither lost nor repeated
    assert len(after) == 5 and count_finished(more.trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in more.trials)


@pytest.mark.parametrize("search", ["random", "tpe"])
def test_resume_does_not_redraw_the_configs_of_finished_trials(tmp_path: Path, search: str) -> None:
    o = opts(storage=f"sqlite:///{tmp_path}/s.db", study="resume-me", search=search)
    run_study(o, make_objective(), n_trials=3)
    study = run_study(o, make_objective(), n_trials=6)
    keys = [json_key(t.user_attrs["config"]) for t in study.trials]
    assert len(set(keys)) == 6, keys


def json_key(config: dict[str, Any]) -> str:
    import json

    return json.dumps(config, sort_keys=True)


def test_resume_counts_failed_trials_towards_the_budget(tmp_path: Path) -> None:
    o = opts(storage=f"sqlite:///{tmp_path}/s.db", study="with-fail")
    run_study(o, make_objective(fail_on={0}), n_trials=2)
    study = run_study(o, make_objective(), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_resume_after_a_crashed_process_finishes_the_budget(tmp_path: Path) -> None:
    import threading

    storage = f"sqlite:///{tmp_path}/s.db"
    o = opts(FLAT, storage=storage, study="crashed")
    run_study(o, make_objective(), n_trials=2)
    optuna.load_study(study_name="crashed", storage=storage).ask()  # the trial a killed process was running
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)  # in case the loop waits on the dead trial
    timer.start()
    try:
        study = run_study(o, make_objective(), n_trials=3, worker=WorkerOptions(stop=stop))
    finally:
        timer.cancel()
    assert not stop.is_set(), "run_study waited on the dead trial until stopped"
    assert count_finished(study.trials) == 3, [t.state.name for t in study.trials]


def test_a_grid_that_cannot_be_built_leaves_no_study_behind(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/g.db"
    space = Space(a=Int(1, 2), x=Float(0.0, 1.0))
    with pytest.raises(SchemaError, match=r"x: a grid search needs the values of every float parameter"):
        run_study(opts(space, search="grid", storage=storage, study="g"), make_objective(), n_trials=3)
    assert optuna.get_all_study_names(storage) == []


def test_a_different_spec_hash_is_refused_unless_forced(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"
    run_study(opts(storage=storage, study="s", spec_hash="a" * 64), make_objective(), n_trials=2)
    with pytest.raises(
        SpecMismatchError,
        match=r"study 's' in this storage was started from a different spec "
        r"\(stored hash aaaaaaaaaaaa, this spec bbbbbbbbbbbb\).*--force",
    ):
        run_study(opts(storage=storage, study="s", spec_hash="b" * 64), make_objective(), n_trials=3)
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2  # nothing ran
    study = run_study(opts(storage=storage, study="s", spec_hash="b" * 64, force=True), make_objective(), n_trials=3)
    assert len(study.trials) == 3
    assert study.user_attrs["spec_hash"] == "a" * 64  # the record of the first spec is kept


def test_open_study_records_the_run() -> None:
    o = opts(spec_hash="h", attrs={"backend": "optuna", "versions": {"optuna": optuna.__version__}})
    study = open_study(o)
    attrs = study.user_attrs
    assert attrs["spec_hash"] == "h"
    assert Space.from_dict(attrs["space"]) == SPACE
    assert (attrs["metrics"], attrs["modes"], attrs["search"], attrs["seed"]) == (["val_loss"], ["min"], "random", 0)
    assert attrs["versions"] == {"optuna": optuna.__version__}


@pytest.mark.parametrize("search", ["nsga2", "tpe", "random"])
def test_multi_objective_study_gives_a_pareto_front(search: str) -> None:
    o = opts(metrics=["val_loss", "n_params"], modes=["min", "min"], search=search)
    study = run_study(o, make_objective(), n_trials=10)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert all(t.state == TrialState.COMPLETE and len(t.values) == 2 for t in study.trials)
    front = study.best_trials
    assert front
    for t in front:  # nobody dominates a Pareto-optimal trial
        assert not any(
            o.values[0] <= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in study.trials
        )
    result = make_result(study, o, wall_time=0.0, backend="optuna", trials=10)
    assert isinstance(result.best_value, list) and len(result.best_value) == 2
    assert {r["number"] for r in result.best_trials} == {t.number for t in front}
    assert {"value_0", "value_1"} <= set(result.trials.columns)


def test_trial_timeout_fails_a_slow_trial_and_the_study_goes_on() -> None:
    started = time.perf_counter()
    study = run_study(
        opts(FLAT), make_objective(sleep_on={1: 30.0}), n_trials=3, worker=WorkerOptions(trial_timeout=0.5)
    )
    assert time.perf_counter() - started < 10
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    reason = study.trials[1].user_attrs["fail_reason"]
    assert reason == "TrialTimeoutError: the trial ran past trial_timeout=0.5 s and was stopped"


def test_trial_timeout_keeps_an_outer_alarm_running() -> None:
    import signal

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 120.0)
    try:
        run_study(opts(FLAT), make_objective(), n_trials=1, worker=WorkerOptions(trial_timeout=30.0))
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 100.0 < remaining <= 120.0, f"the outer timer has {remaining} s left"


def test_pruned_trials_are_recorded_and_counted() -> None:
    # a trial is pruned when it is worse than the median of earlier trials at the same epoch
    o = opts(FLAT, pruning=PruningSpec(policy="median", grace_period=1))
    study = run_study(o, make_objective(epochs=4, value=lambda c: float(c["k"]) + abs(c["x"])), n_trials=20)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned
    assert count_finished(study.trials) == 20
    for t in pruned:
        assert t.user_attrs["epochs"] < 4
        assert "final_val_loss" in t.user_attrs
        assert max(t.intermediate_values) == t.user_attrs["epochs"]


def test_a_trial_that_trained_the_whole_budget_is_not_pruned() -> None:
    curves = [[1.0, 1.0, 1.0, 0.1], [0.5, 0.5, 0.5, 0.9]]  # trial 1 leads until it loses at the last epoch

    def objective(config: dict[str, Any], reporter: Reporter) -> TrialOutcome:
        curve = curves.pop(0)
        for epoch, value in enumerate(curve, start=1):
            m = {"val_loss": value}
            if reporter.report(epoch, m):
                return TrialOutcome(metrics=m, best=m, epochs=epoch, best_epoch=epoch, pruned=True)
        m = {"val_loss": curve[-1]}
        return TrialOutcome(metrics=m, best=m, epochs=len(curve), best_epoch=len(curve))

    o = opts(FLAT, pruning=PruningSpec(policy="asha", grace_period=1, reduction_factor=2), max_epochs=4)
    study = run_study(o, objective, n_trials=2)
    last = study.trials[1]
    assert last.user_attrs["epochs"] == 4
    assert last.state == TrialState.COMPLETE, f"{last.state.name} after training all 4 epochs"
    assert last.value == pytest.approx(0.9)


def test_reporter_reports_each_epoch_once() -> None:
    def objective(config: dict[str, Any], reporter: Reporter) -> TrialOutcome:
        for epoch in (1, 1, 2, 2, 3):  # a second validation in the same epoch is not reported again
            reporter.report(epoch, {"val_loss": float(epoch)})
        m = {"val_loss": 3.0}
        return TrialOutcome(metrics=m, best=m, epochs=3, best_epoch=3)

    study = run_study(opts(FLAT), objective, n_trials=1)
    assert study.trials[0].intermediate_values == {1: 1.0, 2: 2.0, 3: 3.0}


def test_objective_value_is_taken_at_the_best_epoch() -> None:
    def objective(config: dict[str, Any], reporter: Reporter) -> TrialOutcome:
        return TrialOutcome(metrics={"val_loss": 0.9}, best={"val_loss": 0.4}, epochs=5, best_epoch=2)

    study = run_study(opts(FLAT), objective, n_trials=1)
    t = study.trials[0]
    assert t.value == 0.4
    assert (t.user_attrs["final_val_loss"], t.user_attrs["best_epoch"], t.user_attrs["epochs"]) == (0.9, 2, 5)


def test_count_finished_ignores_requeued_failures() -> None:
    study = optuna.create_study()
    for state, attrs in [
        (TrialState.COMPLETE, {}),
        (TrialState.PRUNED, {}),
        (TrialState.FAIL, {}),
        (TrialState.FAIL, {"requeued": True}),
    ]:
        trial = study.ask()
        for k, v in attrs.items():
            study._storage.set_trial_system_attr(trial._trial_id, f"tb_{k}", v)  # as the queue records it
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    assert count_finished(study.trials) == 3


def test_mlp_full_preset_runs_through_the_loop() -> None:
    space = presets.mlp_full()
    study = run_study(opts(space, search="tpe"), make_objective(epochs=1), n_trials=12)
    for config in configs_of(study):
        space.validate(config)
