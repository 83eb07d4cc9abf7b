"""Ordered choices are stored as their values (optuna-dashboard shows 32, not 0) and sampled over their
index by the model-based samplers (``backends/optuna/_ordered.py``); studies that stored the index still
read and resume."""

from __future__ import annotations

import collections
import io
import json
import warnings
from functools import partial
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from tunebridge import tune
from tunebridge.api import run_study
from tunebridge.backends._base import TrialOutcome
from tunebridge.backends.optuna import (
    StudyOptions,
    decode,
    decode_value,
    make_sampler,
    params_and_distributions,
    suggest,
    trial_config,
)
from tunebridge.backends.optuna._ordered import OrderedChoices, index_encoded
from tunebridge.backends.optuna._queue import READY_ATTR
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Float, Int, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SPACE = Space(
    n_layers=Int(1, 2),
    units=Choice([16, 32, 64], ordered=True, per_layer="n_layers"),
    optimizer=Choice(["sgd", "adam"]),
    lr=Float(1e-3, 1e-1, log=True),
    batch_size=Choice([32, 64, 128], ordered=True),
)


def _loss(config: dict[str, Any]) -> float:
    return abs(config["batch_size"] - 64) / 64 + float(config["lr"])


def _objective(config: dict[str, Any], reporter: Any, *, resume: Any = None) -> TrialOutcome:
    loss = _loss(config)
    reporter.report(1, {"loss": loss})
    return TrialOutcome(metrics={"loss": loss}, best={"loss": loss}, epochs=1, best_epoch=1)


def _get(app: Any, path: str) -> Any:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:500])
    return json.loads(body)


# --- optuna-dashboard shows the values -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["optuna", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_the_dashboard_shows_an_ordered_choices_value(backend: str, tmp_path: Path, request: Any) -> None:
    dashboard = pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard (the test extra)")
    if backend == "ray":
        request.getfixturevalue("ray_instance")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    space = Space(lr=Float(1e-3, 1e-1, log=True), batch_size=Choice([32, 64, 128], ordered=True))
    tune(
        partial(build_builtin, "mlp", "digits", max_epochs=1, seed=0),
        space,
        metric="val_acc",
        mode="max",
        backend=backend,
        trials=3,
        max_epochs=1,
        search="tpe",  # sampled through OrderedChoices on both backends
        seed=0,
        progress=False,
        accelerator="cpu",
        storage=storage,
        study="dash",
        ray={"storage_path": str(tmp_path / "ray")} if backend == "ray" else None,
    )
    app = dashboard.wsgi(storage)
    (summary,) = _get(app, "/api/studies")["study_summaries"]
    detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == 3
    for trial in detail["trials"]:
        shown = {p["name"]: p["param_external_value"] for p in trial["params"]}
        config = next(json.loads(a["value"]) for a in trial["user_attrs"] if a["key"] == "config")
        assert shown["batch_size"] in ("32", "64", "128") and int(shown["batch_size"]) == config["batch_size"]


# --- the model-based samplers still see the order -------------------------------------------------------------


class _Spy(optuna.samplers.TPESampler):
    """A real TPE sampler that records what it is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[tuple[str, BaseDistribution]] = []
        self.read: list[FrozenTrial] = []

    def sample_independent(
        self, study: Any, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self.seen.append((param_name, param_distribution))
        self.read.extend(study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True))
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_the_inner_sampler_sees_ordered_choices_as_indices_and_the_study_stores_values() -> None:
    spy = _Spy(seed=0, n_startup_trials=2, multivariate=False)
    sampler = OrderedChoices(spy, {"units": (16, 32, 64), "batch_size": (32, 64, 128)})
    study = optuna.create_study(sampler=sampler)
    for _ in range(5):
        trial = study.ask()
        study.tell(trial, _loss(suggest(trial, SPACE)))
    kinds = {name.split("/")[0]: type(d) for name, d in spy.seen}
    assert kinds["units"] is kinds["batch_size"] is IntDistribution
    assert kinds["optimizer"] is CategoricalDistribution and kinds["lr"] is FloatDistribution
    assert {t.params["batch_size"] for t in spy.read} <= {0, 1, 2}  # indices, as the sampler models them
    for t in study.trials:
        assert t.distributions["batch_size"] == CategoricalDistribution((32, 64, 128))
        assert t.params["batch_size"] in (32, 64, 128) and t.params["units/0"] in (16, 32, 64)


def _draws(space: Space, seed: int) -> collections.Counter[int]:
    """Where TPE samples next, by index, after trials that score better the larger the width, where
    the second largest width (index 7) was never tried."""
    sampler = make_sampler("tpe", seed=seed, space=space, options={"n_startup_trials": 1, "constant_liar": False})
    study = optuna.create_study(sampler=sampler)
    dist = CategoricalDistribution(WIDTHS)
    for i, loss in [*[(i, 10.0 - i) for i in range(7)], (8, 1.0)]:
        study.add_trial(create_trial(params={"width": WIDTHS[i]}, distributions={"width": dist}, value=loss))
    counts: collections.Counter[int] = collections.Counter()
    for _ in range(100):
        trial = study.ask()
        counts[WIDTHS.index(suggest(trial, space)["width"])] += 1
        study.tell(trial, state=TrialState.FAIL)  # not learned from: every draw comes from the same model
    return counts


def test_tpe_samples_the_untried_neighbour_of_the_best_value_only_when_the_choice_is_ordered() -> None:
    ordered = _draws(Space(width=Choice(WIDTHS, ordered=True)), seed=0)
    unordered = _draws(Space(width=Choice(WIDTHS)), seed=0)
    assert ordered[8] + ordered[7] == 100 and ordered[7] >= 5, ordered  # 128 lies next to the best, 256
    assert unordered[7] == 0, unordered  # a categorical knows nothing of 128 from 256


@pytest.mark.parametrize("search", ["tpe", "gp", "cmaes", "qmc", "nsga2"])
def test_every_model_based_sampler_draws_values_through_the_index(search: str) -> None:
    space = (
        SPACE
        if search in ("tpe", "nsga2")
        else Space(x=Float(0.0, 1.0), batch_size=Choice([32, 64, 128], ordered=True))
    )
    sampler = make_sampler(
        search, seed=0, space=space, options={"n_startup_trials": 2} if search in ("tpe", "gp") else None
    )
    assert isinstance(sampler, OrderedChoices)
    study = optuna.create_study(sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for _ in range(6):
            trial = study.ask()
            config = suggest(trial, space)
            study.tell(trial, abs(config["batch_size"] - 64) / 64 + float(config.get("x", config.get("lr", 0.0))))
    assert all(t.params["batch_size"] in (32, 64, 128) for t in study.trials)
    assert len({t.params["batch_size"] for t in study.trials}) > 1


@pytest.mark.parametrize("search", ["random", "grid"])
def test_order_free_samplers_are_not_wrapped(search: str) -> None:
    assert type(make_sampler(search, seed=0, space=SPACE)) is optuna.samplers.RandomSampler


def test_a_grid_holds_values_and_runs_every_point_once() -> None:
    space = Space(
        n_layers=Int(1, 2),
        units=Choice([16, 32, 64], ordered=True, per_layer="n_layers"),
        lr=Float(0.01, 0.02, step=0.01),
        batch_size=Choice([32, 64, 128], ordered=True),
    )
    opts = StudyOptions(space=space, metrics=["loss"], modes=["min"], search="grid", seed=0)
    grid = space.grid()
    study = run_study(opts, _objective, n_trials=len(grid))
    configs = [trial_config(space, t) for t in study.trials]
    assert len(configs) == len(grid) == 2 * (3 + 9) * 3
    assert sorted(map(str, configs)) == sorted(map(str, grid))
    assert all(decode(space, t.params, t.distributions) == trial_config(space, t) for t in study.trials)
    assert {t.params["batch_size"] for t in study.trials} == {32, 64, 128}


# --- studies that stored the index ---------------------------------------------------------------------------

OLD = Space(lr=Float(1e-3, 1e-1, log=True), batch_size=Choice([32, 64, 128], ordered=True))


def _old_study(storage: str) -> optuna.Study:
    """A study as tunebridge wrote it before values were stored: the index under an IntDistribution."""
    study = optuna.create_study(storage=storage, study_name="old")
    dists = {"lr": FloatDistribution(1e-3, 1e-1, log=True), "batch_size": IntDistribution(0, 2)}
    for i, index in enumerate([0, 2, 1]):
        params = {"lr": 0.01 * (i + 1), "batch_size": index}
        study.add_trial(create_trial(params=params, distributions=dists, value=float(i)))
    study.enqueue_trial({"batch_size": 2})  # queued before the upgrade: an index
    study._storage.set_study_system_attr(study._study_id, READY_ATTR, True)
    return study


@pytest.mark.parametrize(
    ("raw", "dist", "expected"),
    [
        (64, CategoricalDistribution((32, 64, 128)), 64),
        (1, IntDistribution(0, 2), 64),
        (2, None, 128),  # no distribution: not a value, so an index
        (64, None, 64),
    ],
)
def test_decode_follows_the_stored_distribution(raw: Any, dist: BaseDistribution | None, expected: int) -> None:
    assert decode_value(OLD["batch_size"], raw, dist) == expected


def test_decode_refuses_a_raw_value_that_is_neither() -> None:
    with pytest.raises(ValueError, match=r"5 is neither one of \[32, 64, 128\] nor an index of one"):
        decode_value(OLD["batch_size"], 5)


def test_an_old_study_reads_and_resumes_with_the_index_encoding(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    old = _old_study(storage)
    assert [decode(OLD, t.params, t.distributions)["batch_size"] for t in old.trials[:3]] == [32, 128, 64]
    assert index_encoded(old, "batch_size") and not index_encoded(old, "other")

    opts = StudyOptions(
        space=OLD,
        metrics=["loss"],
        modes=["min"],
        search="tpe",
        search_options={"n_startup_trials": 2},
        seed=0,
        storage=storage,
        study="old",
    )
    study = run_study(opts, _objective, n_trials=8)
    new = [t for t in study.trials if t.number >= 3]
    assert len(new) == 5 and all(t.state == TrialState.COMPLETE for t in new)
    for t in new:
        assert t.distributions["batch_size"] == IntDistribution(0, 2)  # the study keeps its encoding
        assert trial_config(OLD, t)["batch_size"] == decode(OLD, t.params, t.distributions)["batch_size"]
    assert trial_config(OLD, new[0])["batch_size"] == 128  # the trial queued before the upgrade

    # The Ray backend's mirror adds trials in the study's own encoding.
    params, dists = params_and_distributions(OLD, {"lr": 0.01, "batch_size": 64}, study=study)
    assert (params["batch_size"], dists["batch_size"]) == (1, IntDistribution(0, 2))
    study.add_trial(create_trial(params=params, distributions=dists, value=0.5))


def test_a_config_enqueued_as_values_into_an_old_study_keeps_its_meaning(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    old = _old_study(storage)
    old.enqueue_trial({"lr": 0.05, "batch_size": 64})  # after the upgrade tunebridge enqueues values
    opts = StudyOptions(
        space=OLD, metrics=["loss"], modes=["min"], search="random", seed=0, storage=storage, study="old"
    )
    study = run_study(opts, _objective, n_trials=5)
    assert [trial_config(OLD, t)["batch_size"] for t in study.trials[3:5]] == [128, 64]


def test_an_index_enqueued_into_a_new_study_is_read_as_the_value_it_named() -> None:
    study = optuna.create_study(sampler=make_sampler("tpe", seed=0, space=OLD))
    study.enqueue_trial({"batch_size": 2})  # a queue written before the upgrade, run after it
    trial = study.ask()
    assert suggest(trial, OLD)["batch_size"] == 128
    assert trial.params["batch_size"] == 128 and not index_encoded(study, "batch_size")
