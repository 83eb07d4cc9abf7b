"""``Space.sample``: the configs a backend's random search draws, without training.

Each backend's sample is compared with the real thing: a tunebridge Optuna study with ``search: random``,
and a real Ray Tune run with ``BasicVariantGenerator(random_state=seed)`` over Ray's domains.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunebridge import presets
from tunebridge.errors import SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Space

#: Flat and unconditional, every parameter a Ray domain that draws as Optuna does: Ray's own sampler.
FLAT = Space(
    x=Float(-2.0, 2.0),
    lr=Float(1e-4, 1e-1, log=True),
    k=Int(0, 4),
    units=Int(16, 1024),
    optimizer=Choice(["sgd", "adam", "rmsprop"]),
    batch_size=Choice([16, 32, 64], ordered=True),
    bn=Bool(),
    epochs=Fixed(3),
)
#: Flat but stepped or log-scaled ints: Ray's qrandint/quniform/lograndint would draw them with other
#: weights than Optuna (issue 8), so Ray draws the space through OptunaSearch like Optuna does.
STEPPED = Space(
    dropout=Float(0.0, 0.5, step=0.1),
    width=Int(8, 64, step=8),
    act=Choice(["relu", "tanh"]),
    units=Int(16, 1024, log=True),
)
#: Conditions and per-layer copies (the MLP preset): OptunaSearch with tunebridge's define-by-run.
CONDITIONAL = presets.mlp_full()
SPACES = {"flat": FLAT, "stepped": STEPPED, "conditional": CONDITIONAL}

BACKENDS = [pytest.param("optuna", id="optuna"), pytest.param("ray", id="ray", marks=pytest.mark.ray)]


def _needs(backend: str) -> None:
    if backend == "ray":
        pytest.importorskip("ray.tune")


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """As in tests/backends/conftest.py: one local Ray with 2 CPUs, started once, never re-initialised."""
    pytest.importorskip("ray.tune")
    import torch

    from tunebridge.backends.ray import ensure_ray

    torch.set_num_threads(1)
    ensure_ray(num_cpus=2)
    yield


# --- what every sample is ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SPACES))
def test_samples_fit_the_space_and_repeat_with_the_seed(backend: str, name: str) -> None:
    _needs(backend)
    space = SPACES[name]
    configs = space.sample(12, seed=3, backend=backend)
    assert len(configs) == 12
    for config in configs:
        space.validate(config)
    assert space.sample(12, seed=3, backend=backend) == configs
    assert space.sample(12, seed=4, backend=backend) != configs
    assert space.sample(5, seed=3, backend=backend) == configs[:5]  # the first n of a longer run
    assert space.sample(0, seed=3, backend=backend) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_conditional_samples_cover_inactive_parameters_and_layer_counts(backend: str) -> None:
    _needs(backend)
    configs = CONDITIONAL.sample(40, seed=0, backend=backend)
    assert {c["n_layers"] for c in configs} == {1, 2, 3}
    for c in configs:
        assert sorted(k for k in c if k.startswith("units/")) == [f"units/{i}" for i in range(int(c["n_layers"]))]
        assert ("momentum" in c) == (c["optimizer"] in ("momentum", "rmsprop"))


def test_the_default_is_optuna_with_seed_0() -> None:
    assert FLAT.sample(4) == FLAT.sample(4, seed=0, backend="optuna")


def test_seed_none_draws_valid_configs() -> None:
    for config in CONDITIONAL.sample(3, seed=None):
        CONDITIONAL.validate(config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"n": 3, "backend": "rya"},
            r"^backend: unknown backend, but got 'rya'\. Did you mean 'ray'\? Use one of: optuna, ray\.$",
        ),
        (
            {"n": 3, "backend": "hyperopt"},
            r"^backend: unknown backend, but got 'hyperopt'\. Use one of: optuna, ray\.$",
        ),
        ({"n": 3, "backend": None}, r"^backend: unknown backend, but got None\."),
        ({"n": -1}, r"^n: `n` must be an int >= 0, but got -1\. Pass how many configs"),
        ({"n": 2.0}, r"^n: `n` must be an int >= 0, but got 2\.0\."),
        ({"n": True}, r"^n: `n` must be an int >= 0, but got True\."),
        (
            {"n": 3, "seed": -1},
            r"^seed: `seed` must be an int in \[0, 2\*\*32 - 1\] or None, but got -1\. Pass the run's seed",
        ),
        ({"n": 3, "seed": 2**32}, r"^seed: .* but got 4294967296\."),
        ({"n": 3, "seed": 1.5}, r"^seed: .* but got 1\.5\."),
        ({"n": 3, "seed": False}, r"^seed: .* but got False\."),
        ({"n": 3, "seed": "0"}, r"^seed: .* but got '0'\."),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        FLAT.sample(**kwargs)


def test_importing_the_schema_imports_neither_optuna_nor_ray() -> None:
    code = (
        "import sys\n"
        "import tunebridge.schema\n"
        "from tunebridge.schema import Float, Space\n"
        "Space(x=Float(0.0, 1.0)).sample\n"
        "heavy = sorted(m for m in ('optuna', 'ray', 'numpy', 'torch') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('light')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "light"


# --- Optuna: the same configs as a real study with search: random ---------------------------------------------


@pytest.mark.parametrize("name", list(SPACES))
def test_optuna_sample_equals_a_real_random_study(name: str) -> None:
    from tunebridge.backends._base import Reporter, TrialOutcome
    from tunebridge.backends.optuna import StudyOptions, open_study, run_trials

    def objective(config: dict[str, Any], reporter: Reporter) -> TrialOutcome:
        metrics = {"val_loss": float(len(config))}
        reporter.report(1, metrics)
        return TrialOutcome(metrics=metrics, best=metrics, epochs=1, best_epoch=1)

    space = SPACES[name]
    opts = StudyOptions(space=space, metrics=["val_loss"], modes=["min"], search="random", seed=11, max_epochs=1)
    study = open_study(opts, n_trials=6)  # what tunebridge.tune(..., backend='optuna') runs
    run_trials(study, opts, objective, n_trials=6)
    ran = [t.user_attrs["config"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert ran == space.sample(6, seed=11, backend="optuna")


# --- Ray: Ray's own domains for a flat space, OptunaSearch (= Optuna's draws) otherwise ----------------------


@pytest.mark.ray
@pytest.mark.parametrize("name", ["stepped", "conditional"])
def test_ray_draws_other_spaces_as_optuna_does(name: str) -> None:
    pytest.importorskip("ray.tune")
    from tunebridge.backends.ray import native_param_space

    space = SPACES[name]
    assert native_param_space(space) is None
    assert space.sample(8, seed=2, backend="ray") == space.sample(8, seed=2, backend="optuna")


@pytest.mark.ray
def test_ray_draws_a_flat_space_with_its_own_domains() -> None:
    pytest.importorskip("ray.tune")
    from tunebridge.backends.optuna import StudyOptions
    from tunebridge.backends.ray import RayOptions, plan_run

    opts = StudyOptions(space=FLAT, metrics=["val_loss"], modes=["min"], search="random", seed=0, max_epochs=1)
    plan = plan_run(opts, RayOptions(), n_trials=4)
    assert plan.kind == "native" and list(plan.param_space) == list(FLAT)
    ray_configs = FLAT.sample(20, seed=0, backend="ray")
    assert ray_configs != FLAT.sample(20, seed=0, backend="optuna")
    assert {c["units"] for c in ray_configs} <= set(range(16, 1025))
    assert all(type(c["x"]) is float and type(c["k"]) is int and type(c["bn"]) is bool for c in ray_configs)


@pytest.mark.ray
@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.slow
def test_ray_sample_equals_a_real_tune_run(seed: int, ray_instance: None, tmp_path: Path) -> None:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from tunebridge.backends.ray import native_param_space, ray_config_to_config

    def trainable(config: dict[str, Any]) -> None:  # local, so Ray pickles it by value
        tune.report({"done": 1})

    n = 6
    tuner = tune.Tuner(
        trainable,
        param_space=native_param_space(FLAT),
        tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(random_state=seed), num_samples=n),
        run_config=tune.RunConfig(name=f"sample-{seed}", storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    results = sorted((grid[i] for i in range(len(grid))), key=lambda r: r.metrics["trial_id"])  # creation order
    assert [r.error for r in results] == [None] * n
    ran = [ray_config_to_config(r.config) for r in results]
    assert ran == FLAT.sample(n, seed=seed, backend="ray")
