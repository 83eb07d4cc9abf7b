"""Ordered choices are stored as their values (optuna-dashboard shows 32, not 0) and sampled over their
index by the model-based samplers (``backends/optuna/_ordered.py``)."""

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
    make_sampler,
    suggest,
    trial_config,
)
from tunebridge.backends.optuna._ordered import OrderedChoices
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
        storage=storage,
        study="dash",
        trainer={"accelerator": "cpu"},
        run={"progress": False, "ray": {"storage_path": str(tmp_path / "ray")} if backend == "ray" else None},
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
    assert all(decode(space, t.params) == trial_config(space, t) for t in study.trials)
    assert {t.params["batch_size"] for t in study.trials} == {32, 64, 128}
