"""The Ray backend's compile step, without running trials: domains, plans, schedulers, PBT, options.

Ray's own domains and scheduler classes are used for real (no Ray instance is needed to build them).
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

pytest.importorskip("ray.tune")

from ray import cloudpickle, tune
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, MedianStoppingRule
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from tunebridge import presets
from tunebridge.backends.optuna import StudyOptions
from tunebridge.backends.ray import (
    CONFIG_KEY,
    DefineByRun,
    PatienceScheduler,
    RayOptions,
    SpaceExplorer,
    native_param_space,
    pbt_mutations,
    plan_run,
    plateaued,
    ray_config_to_config,
    ray_domain,
    storage_root,
)
from tunebridge.errors import ConversionError, SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, PruningSpec, Space

pytestmark = pytest.mark.ray

CONDITIONAL = Space(
    n_layers=Int(1, 3),
    units=Choice([16, 32, 64], ordered=True, per_layer="n_layers"),
    optimizer=Choice(["sgd", "adam"]),
    momentum=Float(0.5, 0.9, step=0.2, when={"optimizer": "sgd"}),
    lr=Float(1e-3, 1e-1, log=True),
)


def _opts(space: Space = CONDITIONAL, **kwargs: object) -> StudyOptions:
    defaults: dict[str, object] = {
        "metrics": ["loss"],
        "modes": ["min"],
        "search": "random",
        "seed": 0,
        "max_epochs": 9,
    }
    defaults.update(kwargs)
    return StudyOptions(space=space, **defaults)  # type: ignore[arg-type]


def _draws(domain: object, n: int) -> np.ndarray:
    return np.asarray(domain.sample(size=n, random_state=np.random.default_rng(0)))  # type: ignore[attr-defined]


# -- domains: inclusive bounds at both ends ------------------------------------------------------


# Log-scaled ints used to be pinned here too (lograndint(low, high + 1)); since issue 8 they have no
# native domain (see test_params_without_optunas_distribution_in_ray_are_sampled_through_optuna).
@pytest.mark.parametrize(("param", "n"), [(Int(1, 4), 2_000), (Int(-3, 3), 5_000), (Int(5, 5), 10)])
def test_int_domain_reaches_both_bounds_and_nothing_else(param: Int, n: int) -> None:
    values = set(_draws(ray_domain("x", param), n).tolist())
    assert values <= set(param.enumerate())
    assert param.low in values and param.high in values


def test_raw_ray_randint_never_reaches_its_upper_bound() -> None:
    # The trap ray_domain avoids: the same call without the +1 can never return 4.
    assert 4 not in set(_draws(tune.randint(1, 4), 2_000).tolist())


@pytest.mark.parametrize("param", [Float(0.1, 0.2), Float(1e-5, 1e-1, log=True)])
def test_float_domain_spans_the_whole_range(param: Float) -> None:
    values = _draws(ray_domain("x", param), 50_000)
    assert values.min() >= param.low and values.max() <= param.high
    width = math.log(param.high / param.low) if param.log else param.high - param.low
    lo = math.log(values.min() / param.low) if param.log else values.min() - param.low
    hi = math.log(param.high / values.max()) if param.log else param.high - values.max()
    assert lo < 1e-3 * width and hi < 1e-3 * width


def test_choice_domain_keeps_value_types() -> None:
    domain = ray_domain("c", Choice([None, "a", 2, 2.5, True]))
    rng = np.random.default_rng(0)
    draws = [domain.sample(random_state=rng) for _ in range(200)]
    assert {(type(v), v) for v in draws} == {(type(None), None), (str, "a"), (int, 2), (float, 2.5), (bool, True)}
    assert ray_domain("f", Fixed(3)) == 3
    assert set(_draws(ray_domain("b", Bool()), 100).tolist()) == {False, True}


@pytest.mark.parametrize(
    ("param", "match"),
    [
        (Int(0, 10, step=5), "with step=5. Ray's qrandint"),
        (Float(0.0, 1.0, step=0.25), "with step=0.25. Ray's quniform"),
        # Issue 8: lograndint floors a log-uniform draw on [low, high + 1), Optuna rounds one on
        # [low - 0.5, high + 0.5]; same values, other weights (tests/backends/test_sample_distribution.py).
        (Int(16, 1024, log=True), "with log=True. Ray's lograndint weights the values differently"),
        (Int(1, 2, log=True), "with log=True"),
    ],
)
def test_params_without_optunas_distribution_in_ray_are_sampled_through_optuna(param: Int | Float, match: str) -> None:
    with pytest.raises(ConversionError, match=rf"ray cannot express 'x' {re.escape(match)}"):
        ray_domain("x", param)
    assert native_param_space(Space(x=param)) is None
    assert native_param_space(Space(x=param, y=Int(1, 4))) is None  # one such parameter is enough
    assert plan_run(_opts(Space(x=param)), RayOptions(), n_trials=3).kind == "optuna"


def test_native_param_space_only_for_flat_spaces() -> None:
    assert native_param_space(CONDITIONAL) is None
    native = native_param_space(Space(a=Int(1, 4), b=Fixed("x")))
    assert native is not None and native["b"] == "x"


# -- define-by-run and configs ---------------------------------------------------------------------


def test_define_by_run_returns_decoded_valid_configs() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    fn = DefineByRun(CONDITIONAL)
    for _ in range(30):
        config = fn(study.ask())
        CONDITIONAL.validate(config)
        assert all(config[f"units/{i}"] in (16, 32, 64) for i in range(config["n_layers"]))  # values, not indices


def test_ray_config_to_config_undoes_unflattening_and_numpy() -> None:
    unflat = {"n_layers": np.int64(2), "units": {"0": 16, "1": np.int64(32)}, "optimizer": "adam", "lr": 0.01}
    config = ray_config_to_config(unflat)
    assert config == {"n_layers": 2, "units/0": 16, "units/1": 32, "optimizer": "adam", "lr": 0.01}
    assert type(config["n_layers"]) is int
    CONDITIONAL.validate(config)
    assert ray_config_to_config({CONFIG_KEY: {"units/0": 16}}) == {"units/0": 16}


# -- plans ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "search", "kind", "searcher"),
    [
        (Space(a=Int(1, 4), b=Float(0.0, 1.0)), "random", "native", BasicVariantGenerator),
        (Space(a=Int(1, 4), b=Int(1, 8, log=True)), "random", "optuna", OptunaSearch),  # issue 8
        (CONDITIONAL, "random", "optuna", OptunaSearch),
        (Space(a=Int(1, 4)), "tpe", "optuna", OptunaSearch),
        (CONDITIONAL.without("lr"), "grid", "list", type(None)),
    ],
)
def test_plan_kind_per_space_and_search(space: Space, search: str, kind: str, searcher: type) -> None:
    plan = plan_run(_opts(space, search=search), RayOptions(), n_trials=5)
    assert plan.kind == kind and isinstance(plan.search_alg, searcher)


def test_grid_plan_is_exactly_the_schema_grid_minus_done() -> None:
    grid = CONDITIONAL.without("lr").grid()
    opts = _opts(CONDITIONAL.without("lr"), search="grid")
    plan = plan_run(opts, RayOptions(), n_trials=1000)
    assert plan.configs == grid and plan.param_space[CONFIG_KEY] == tune.grid_search(grid)
    import json

    done = {json.dumps(c, sort_keys=True) for c in grid[:5]}
    assert plan_run(opts, RayOptions(), n_trials=3, done_configs=done).configs == grid[5:8]


@pytest.mark.parametrize("sampler", [None, optuna.samplers.NSGAIISampler(seed=3)], ids=["nsga2", "users-NSGAIISampler"])
def test_an_nsga2_searcher_survives_rays_pickling_and_save_restore(tmp_path: Path, sampler: object) -> None:
    # optuna 5.1's NSGAIISampler holds a threading.Lock. Ray pickles the searcher with cloudpickle when the
    # Tuner is built (tuner.pkl) and with pickle at every experiment checkpoint (OptunaSearch.save/restore).
    opts = _opts(CONDITIONAL, metrics=["loss", "n_params"], modes=["min", "min"], search="nsga2", sampler=sampler)
    searcher = plan_run(opts, RayOptions(), n_trials=8).search_alg
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        CONDITIONAL.validate(ray_config_to_config(config))
        searcher.on_trial_complete(f"t{i}", {"loss": float(config["lr"]), "n_params": float(config["n_layers"])})
    tuner_copy = cloudpickle.loads(cloudpickle.dumps(searcher))  # type: ignore[no-untyped-call]  # as tuner.pkl
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    # Both copies go on with the sampler's state (random state, NSGA-II caches): they draw what the original draws.
    expected = searcher.suggest("t3")
    assert restored.suggest("t3") == expected and tuner_copy.suggest("t3") == expected


@pytest.mark.parametrize(
    ("policy", "cls", "attrs"),
    [
        ("asha", ASHAScheduler, {"_time_attr": "epoch", "_max_t": 6, "_reduction_factor": 2}),
        ("hyperband", HyperBandScheduler, {"_time_attr": "epoch", "_max_t_attr": 6, "_eta": 2}),
        ("median", MedianStoppingRule, {"_time_attr": "epoch", "_grace_period": 2, "_min_samples_required": 5}),
        ("patience", PatienceScheduler, {"_patience": 3, "_grace": 2}),
    ],
)
def test_pruning_spec_maps_to_ray_schedulers(policy: str, cls: type, attrs: dict[str, object]) -> None:
    halving = {"reduction_factor": 2} if policy in ("asha", "hyperband") else {}  # the others refuse it
    grace = 1 if policy == "hyperband" else 2  # Ray's HyperBand has no grace period (refused below)
    spec = PruningSpec(policy=policy, grace_period=grace, max_budget=6, **halving)  # type: ignore[arg-type]
    plan = plan_run(_opts(pruning=spec), RayOptions(), n_trials=4)
    assert isinstance(plan.scheduler, cls)
    for name, value in attrs.items():
        assert getattr(plan.scheduler, name) == value
    assert plan.trial.budget == 6 and plan.trial.checkpoint_frequency == (1 if policy in ("asha", "hyperband") else 0)


def test_a_grace_period_ray_hyperband_would_ignore_is_refused() -> None:
    spec = PruningSpec(policy="hyperband", grace_period=2, reduction_factor=3)
    with pytest.raises(
        ConversionError, match=r"pruner.grace_period.*grace_period=2 with policy hyperband.*policy: asha"
    ):
        plan_run(_opts(pruning=spec), RayOptions(), n_trials=4)


def test_asha_grace_period_and_rungs() -> None:
    plan = plan_run(
        _opts(pruning=PruningSpec(policy="asha", grace_period=1, reduction_factor=3)), RayOptions(), n_trials=4
    )
    assert [m for m, _ in plan.scheduler._brackets[0]._rungs] == [9, 3, 1]  # grace_period * 3**k up to max_t
    assert plan.scheduler._max_t == 9 and plan.metric == "loss" and plan.mode == "min"


def test_no_pruning_is_fifo_and_several_objectives_are_pruned_by_mo_asha_only() -> None:
    from tunebridge.backends.ray._mo_scheduler import MoAshaScheduler

    assert plan_run(_opts(), RayOptions(), n_trials=2).scheduler is None
    opts = _opts(metrics=["loss", "n_params"], modes=["min", "min"], pruning=PruningSpec(policy="asha"))
    plan = plan_run(opts, RayOptions(), n_trials=2)
    assert isinstance(plan.scheduler, MoAshaScheduler) and plan.metric is None
    opts = _opts(metrics=["loss", "n_params"], modes=["min", "min"], pruning=PruningSpec(policy="median"))
    with pytest.raises(
        SchemaError, match=r"`policy: median` compares one metric.*Use pruner: asha or pruner: hyperband"
    ):
        plan_run(opts, RayOptions(), n_trials=2)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5, 4, 3, 2, 1], False),
        ([1, 2, 3, 4, 5], True),
        ([3, 1, 2, 2, 2], True),
        ([3, 2, 2, 2], False),
        ([4, 3, 3.1, 3.2, 2.9], False),
    ],
)
def test_plateau_rule_matches_optunas_patient_pruner(values: list[float], expected: bool) -> None:
    study = optuna.create_study(pruner=optuna.pruners.PatientPruner(None, patience=2, min_delta=0.0))
    trial = study.ask()
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
    assert trial.should_prune() is expected
    assert plateaued(values, patience=2, min_delta=0.0, mode="min") is expected


# -- PBT ---------------------------------------------------------------------------------------------------


FULL = presets.mlp() + presets.training() + presets.regularization()


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("units", r"'units'.*repeated per layer"),
        ("n_layers", r"'n_layers'.*depend on it \(units\)"),
        ("optimizer", r"'optimizer'.*depend on it \(momentum\)"),
        ("activation", r"'activation'.*architecture"),
        ("nope", r"'nope'.*not a parameter"),
    ],
)
def test_pbt_refuses_structural_params(name: str, match: str) -> None:
    opts = _opts(FULL)
    with pytest.raises(ConversionError, match=match):
        plan_run(opts, RayOptions(scheduler="pbt", pbt_mutate=(name,)), n_trials=4)


def test_pbt_default_mutations_are_the_training_params() -> None:
    assert pbt_mutations(FULL, None) == ["lr", "momentum", "weight_decay", "dropout", "l1", "lr_gamma", "lr_min_factor"]
    with pytest.raises(ConversionError, match="none of lr"):
        pbt_mutations(presets.mlp(), None)
    plan = plan_run(_opts(FULL), RayOptions(scheduler="pbt"), n_trials=4)
    assert plan.kind == "list" and len(plan.configs or []) == 4 and plan.checkpoint_keep is None
    with pytest.raises(ConversionError, match="use search: random"):
        plan_run(_opts(FULL, search="tpe"), RayOptions(scheduler="pbt"), n_trials=4)


def test_pbt_explorer_keeps_configs_in_the_space() -> None:
    space = Space(
        lr=Float(1e-4, 1e-1, log=True),
        dropout=Float(0.0, 0.5, step=0.1),
        batch=Int(16, 64, step=16),
        sched=Choice(["a", "b", "c"]),
        optimizer=Choice(["sgd", "adam"]),
        momentum=Float(0.5, 0.99, when={"optimizer": "sgd"}),
    )
    explorer = SpaceExplorer(space, ["lr", "dropout", "batch", "sched", "momentum"], seed=0)
    rng = random.Random(0)
    config = {"lr": 0.1, "dropout": 0.5, "batch": 64, "sched": "a", "optimizer": "adam"}
    for _ in range(500):
        config = explorer({CONFIG_KEY: config})[CONFIG_KEY]
        space.validate(config)
        if rng.random() < 0.1:  # a clone from another member of the population
            config = {**config, "optimizer": "sgd", "momentum": 0.99}
    assert "momentum" in config or config["optimizer"] == "adam"


# -- options --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cpus_per_trail": 1}, "Did you mean 'cpus_per_trial'"),
        ({"cpus_per_trial": 0}, "cpus_per_trial.*> 0"),
        ({"gpus_per_trial": -0.5}, "gpus_per_trial"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"scheduler": "bohb"}, "must be 'pbt'"),
        ({"reuse_actors": "yes"}, "reuse_actors"),
        ({"pbt_synch": 1}, "pbt_synch"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        RayOptions.from_dict(options)


def test_checkpoint_defaults_follow_the_scheduler() -> None:
    opts = RayOptions(gpus_per_trial=0.5)
    assert opts.checkpoint_every("asha") == 1 and opts.checkpoint_every("median") == 0
    assert RayOptions(checkpoint_frequency=3).checkpoint_every("asha") == 3
    with pytest.raises(ConversionError, match="hyperband"):
        plan_run(_opts(pruning=PruningSpec(policy="hyperband")), RayOptions(checkpoint_frequency=2), n_trials=2)


@pytest.mark.parametrize(
    ("storage", "options", "expected"),
    [
        ("sqlite:////data/runs/study.db", {}, "/data/runs/ray_results"),
        ("/data/runs/study.log", {}, "/data/runs/ray_results"),
        ("sqlite:////data/x.db", {"storage_path": "/scratch/ray"}, "/scratch/ray"),
    ],
)
def test_storage_root(storage: str, options: dict[str, str], expected: str) -> None:
    assert storage_root(RayOptions.from_dict(options), storage) == expected


def test_storage_root_default_is_in_home() -> None:
    assert storage_root(RayOptions(), None).endswith("tunebridge-ray")
    assert storage_root(RayOptions(), "postgresql://db/x").endswith("tunebridge-ray")


# -- the objective rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["best_epoch", "last_epoch"])
def test_a_lightning_objective_tells_ray_the_rule_it_trains_by(rule: str) -> None:
    pytest.importorskip("lightning.pytorch")
    from tunebridge.backends._base import declared_rule
    from tunebridge.lightning import LightningObjective, TrialSettings, builtin_builder

    settings = TrialSettings(metric="val_acc", mode="max", max_epochs=2, objective=rule)
    assert declared_rule(LightningObjective(builtin_builder("mlp", "digits", max_epochs=2, seed=0), settings)) == rule
    assert declared_rule(lambda config, reporter: None) == "best_epoch"  # an objective that declares none


def test_an_unknown_objective_rule_is_refused_before_ray_starts() -> None:
    from tunebridge.backends.ray import run_ray

    with pytest.raises(
        SchemaError,
        match=r"objective: `objective` must be one of best_epoch, last_epoch, but got 'last'\. Use e.g. objective: best_epoch",
    ):
        run_ray(_opts(), lambda config, reporter: None, n_trials=1, objective_rule="last")  # type: ignore[arg-type]


# -- layout ----------------------------------------------------------------------------------------------


def test_the_ray_backend_uses_only_the_optuna_backends_public_names() -> None:
    import ast
    from pathlib import Path

    import tunebridge.backends.ray as ray_backend

    private = "tunebridge.backends.optuna._"
    found = []
    for path in sorted(Path(ray_backend.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.append(node.value)  # importlib tables, docstrings
            found += [f"{path.name}:{node.lineno}" for name in names if private in name]  # type: ignore[attr-defined]
    assert not found, f"import these from tunebridge.backends.optuna (its __init__ re-exports them): {found}"
