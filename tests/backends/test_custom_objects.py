"""Bring your own Optuna and Ray objects: a user's sampler, pruner, searcher or scheduler runs a study.

Real Optuna studies and a real local Ray; objectives are pure Python (``objective(config, reporter)``).
An object given to the backend that cannot use it is refused before any trial, naming the option,
the object's class, the backend and the fix.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tunebridge.api import run_study, study_options
from tunebridge.backends._base import Reporter, Resume, TrialOutcome
from tunebridge.backends.optuna import StudyOptions
from tunebridge.errors import ConversionError
from tunebridge.schema import Choice, Float, Int, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

FLAT = Space(x=Float(-2.0, 2.0), k=Int(0, 4))
CONDITIONAL = Space(opt=Choice(["a", "b"]), m=Float(0.1, 0.9, when={"opt": "b"}), x=Float(-2.0, 2.0))


class Curve:
    """A learning curve from the config: ``loss = |x| + k/10 + 1/epoch``, reported every epoch."""

    def __init__(self, epochs: int = 4) -> None:
        self.epochs = epochs

    def __call__(self, config: dict[str, Any], reporter: Reporter, *, resume: Resume | None = None) -> TrialOutcome:
        base = abs(float(config["x"])) + int(config.get("k", 0)) / 10
        metrics: dict[str, float] = {}
        for epoch in range(1, self.epochs + 1):
            metrics = {"loss": base + 1 / epoch}
            if reporter.report(epoch, metrics):
                return TrialOutcome(metrics, metrics, epoch, epoch, pruned=True)
        return TrialOutcome(metrics, metrics, self.epochs, self.epochs)


def _configs(study: optuna.Study) -> list[dict[str, Any]]:
    return [t.user_attrs["config"] for t in study.get_trials(deepcopy=False) if "config" in t.user_attrs]


# --- Optuna backend -----------------------------------------------------------------------------------------------


def test_a_users_tpe_sampler_and_median_pruner_run_a_study() -> None:
    sampler = optuna.samplers.TPESampler(seed=7, n_startup_trials=3)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    opts = study_options(FLAT, metric="loss", mode="min", search=sampler, pruner=pruner, max_epochs=4)
    assert (opts.sampler, opts.scheduler, opts.search, opts.pruning.policy) == (
        sampler,
        pruner,
        "custom:TPESampler",
        "none",
    )

    study = run_study(opts, Curve(), n_trials=12)
    assert study.sampler is sampler and study.pruner is pruner  # used as given, not rebuilt
    states = [t.state for t in study.trials]
    assert len(states) == 12 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert TrialState.PRUNED in states, "the user's MedianPruner pruned trials worse than the median"
    assert study.user_attrs["search"] == "custom:TPESampler"
    assert study.user_attrs["search_options"] == {}

    # The user's seed decides the configs: the same object built again gives the same study.
    again = study_options(
        FLAT,
        metric="loss",
        mode="min",
        search=optuna.samplers.TPESampler(seed=7, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        max_epochs=4,
    )
    assert _configs(run_study(again, Curve(), n_trials=12)) == _configs(study)


def test_a_search_spec_with_options_is_recorded_and_used() -> None:
    opts = study_options(
        FLAT, metric="loss", mode="min", search={"name": "tpe", "n_startup_trials": 2, "constant_liar": False}
    )
    assert (opts.search, opts.search_options) == ("tpe", {"n_startup_trials": 2, "constant_liar": False})
    study = run_study(opts, Curve(2), n_trials=4)
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert study.sampler._n_startup_trials == 2 and study.sampler._constant_liar is False
    assert study.user_attrs["search_options"] == {"n_startup_trials": 2, "constant_liar": False}


@pytest.mark.slow
def test_a_resumed_study_reseeds_a_users_sampler_so_it_does_not_replay_its_draws(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"

    def run(n_trials: int) -> optuna.Study:
        sampler = optuna.samplers.RandomSampler(seed=0)  # a fresh, identically seeded object each time
        opts = study_options(FLAT, metric="loss", mode="min", search=sampler, storage=storage, study="s")
        return run_study(opts, Curve(1), n_trials=n_trials)

    first = _configs(run(3))
    resumed = _configs(run(6))
    assert resumed[:3] == first
    keys = [tuple(sorted(c.items())) for c in resumed]
    assert len(set(keys)) == 6, "the resumed part drew new configs, not the first three again"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"search": optuna.pruners.MedianPruner()},
            r"optuna cannot express 'search' with an optuna pruner \(.*MedianPruner\)\. It is an optuna pruner: "
            r"pass it as pruner=",
        ),
        (
            {"pruner": optuna.samplers.TPESampler()},
            r"optuna cannot express 'pruner' with an optuna sampler .*pass it as search=",
        ),
    ],
)
def test_objects_in_the_wrong_option_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        study_options(FLAT, metric="loss", **kwargs)


def test_a_pruner_object_with_several_objectives_is_refused_before_any_trial() -> None:
    opts = study_options(FLAT, metric=["loss", "n_params"], mode=["min", "min"], pruner=optuna.pruners.MedianPruner())
    with pytest.raises(ConversionError, match=r"'pruner' with MedianPruner with several objectives.*drop the pruner"):
        run_study(opts, Curve(), n_trials=2)


# --- wrong backend ------------------------------------------------------------------------------------------------


def _ray_objects() -> dict[str, Any]:
    pytest.importorskip("ray.tune")
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    return {"searcher": BasicVariantGenerator(), "asha": ASHAScheduler(), "fifo": FIFOScheduler()}


@pytest.mark.parametrize(
    ("option", "key", "match"),
    [
        (
            "search",
            "searcher",
            r"optuna cannot express 'search' with a Ray Tune searcher "
            r"\(ray\.tune\.search\.basic_variant\.BasicVariantGenerator\)\. On the Optuna backend pass an "
            r"optuna\.samplers\.BaseSampler.*needs backend='ray'",
        ),
        (
            "pruner",
            "asha",
            r"optuna cannot express 'pruner' with a Ray Tune trial scheduler \(.*AsyncHyperBandScheduler\)\. "
            r"On the Optuna backend pass an optuna\.pruners\.BasePruner.*needs backend='ray'",
        ),
        ("pruner", "fifo", r"optuna cannot express 'pruner' with a Ray Tune trial scheduler \(.*FIFOScheduler\)"),
    ],
)
def test_ray_objects_on_the_optuna_backend_are_refused(option: str, key: str, match: str) -> None:
    obj = _ray_objects()[key]
    with pytest.raises(ConversionError, match=match):
        study_options(FLAT, metric="loss", backend="optuna", **{option: obj})


def test_a_ray_searcher_in_options_built_by_hand_is_refused_by_the_optuna_backend_before_any_trial() -> None:
    opts = StudyOptions(space=FLAT, metrics=["loss"], modes=["min"], sampler=_ray_objects()["searcher"])
    with pytest.raises(ConversionError, match=r"optuna cannot express 'search' with a Ray Tune searcher"):
        run_study(opts, Curve(), n_trials=2)


def test_an_optuna_pruner_on_the_ray_backend_is_refused() -> None:
    with pytest.raises(
        ConversionError, match=r"ray cannot express 'pruner' with an optuna pruner .*needs backend='optuna'"
    ):
        study_options(FLAT, metric="loss", backend="ray", pruner=optuna.pruners.MedianPruner())


# --- Ray backend: refusals in the plan (no trial, no Ray instance) ------------------------------------------------


def _plan(opts: StudyOptions, **ray: Any) -> Any:
    pytest.importorskip("ray.tune")
    from tunebridge.backends.ray import RayOptions, plan_run

    return plan_run(opts, RayOptions.from_dict(ray), n_trials=3)


def test_ray_plan_refuses_user_objects_it_cannot_run() -> None:
    pytest.importorskip("ray.tune")
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
    from ray.tune.search import BasicVariantGenerator

    def opts(space: Space = FLAT, **kw: Any) -> StudyOptions:
        return study_options(space, metric="loss", backend="ray", **kw)

    cases: list[tuple[StudyOptions, dict[str, Any], str]] = [
        (
            opts(CONDITIONAL, search=BasicVariantGenerator()),
            {},
            r"ray cannot express 'search' with a BasicVariantGenerator object over a space Ray's domains cannot "
            r"draw exactly.*Pass a search name",
        ),
        (
            opts(pruner=ASHAScheduler(metric="loss", mode="min")),
            {},
            r"AsyncHyperBandScheduler object built with its own metric or mode.*Leave metric and mode out",
        ),
        (
            opts(pruner=PopulationBasedTraining(hyperparam_mutations={"x": [0.0, 1.0]})),
            {},
            r"PopulationBasedTraining object.*ray=\{'scheduler': 'pbt'",
        ),
        (opts(pruner=ASHAScheduler()), {"scheduler": "pbt"}, r"Pass one scheduler"),
    ]
    for o, ray, match in cases:
        with pytest.raises(ConversionError, match=match):
            _plan(o, **ray)


def test_ray_plan_uses_copies_of_user_objects() -> None:
    pytest.importorskip("ray.tune")
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    asha, searcher = ASHAScheduler(max_t=4), BasicVariantGenerator(random_state=0)
    plan = _plan(study_options(FLAT, metric="loss", backend="ray", search=searcher, pruner=asha))
    assert (plan.kind, plan.policy, plan.trial.checkpoint_frequency) == ("native", "custom", 1)
    assert type(plan.search_alg) is BasicVariantGenerator and plan.search_alg is not searcher
    assert type(plan.scheduler) is type(asha) and plan.scheduler is not asha
    assert set(plan.param_space) == {"x", "k"}

    tpe = optuna.samplers.TPESampler(seed=0)
    plan = _plan(study_options(CONDITIONAL, metric="loss", backend="ray", search=tpe, pruner=HyperBandScheduler()))
    assert (plan.kind, plan.policy) == ("optuna", "hyperband")  # HyperBand's needs are kept for a user's one
    assert isinstance(plan.search_alg, OptunaSearch)
    assert type(plan.search_alg._sampler) is optuna.samplers.TPESampler and plan.search_alg._sampler is not tpe


# --- Ray backend: real runs ---------------------------------------------------------------------------------------


@pytest.fixture
def by_value() -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers need not import this module


@pytest.mark.ray
@pytest.mark.usefixtures("ray_instance", "by_value")
@pytest.mark.slow
def test_a_ray_basic_variant_generator_and_asha_scheduler_run_a_study(tmp_path: Path) -> None:
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    opts = study_options(
        FLAT,
        metric="loss",
        mode="min",
        backend="ray",
        search=BasicVariantGenerator(random_state=0),
        pruner=ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2),
        max_epochs=4,
        storage=f"sqlite:///{tmp_path}/s.db",
        study="s",
    )
    study = run_study(opts, Curve(4), backend="ray", n_trials=6, ray={"storage_path": str(tmp_path)})
    states = [t.state for t in study.trials]
    assert len(states) == 6 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert TrialState.PRUNED in states, "the user's ASHA stopped trials early"
    assert study.user_attrs["search"] == "custom:BasicVariantGenerator"
    for config in _configs(study):
        FLAT.validate(config)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_instance", "by_value")
def test_a_users_optuna_sampler_runs_on_the_ray_backend_over_a_conditional_space(tmp_path: Path) -> None:
    from ray.tune.schedulers import FIFOScheduler

    opts = study_options(
        CONDITIONAL,
        metric="loss",
        mode="min",
        backend="ray",
        search=optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
        pruner=FIFOScheduler(),
        max_epochs=2,
        storage=f"sqlite:///{tmp_path}/s.db",
        study="s",
    )
    study = run_study(opts, Curve(2), backend="ray", n_trials=4, ray={"storage_path": str(tmp_path)})
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.user_attrs["search"] == "custom:TPESampler"
    for config in _configs(study):
        CONDITIONAL.validate(config)
        assert ("m" in config) == (config["opt"] == "b")  # inactive parameters absent
