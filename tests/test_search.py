"""``search:`` in words: names and options (``parse_search``), and a user's own objects recognised by class."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from tunebridge import _search
from tunebridge._search import SEARCH_OPTIONS, check_object, custom_name, object_kind, parse_search
from tunebridge._vocab import SEARCH_ALGORITHMS
from tunebridge.backends.optuna import StudyOptions, make_sampler
from tunebridge.errors import ConversionError, SchemaError
from tunebridge.schema import Choice, Float, Int, Space

FLAT = Space(x=Float(-2.0, 2.0), k=Int(0, 4))
CONDITIONAL = Space(opt=Choice(["a", "b"]), m=Float(0.1, 0.9, when={"opt": "b"}))

# --- parse_search -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tpe", ("tpe", {})),
        ("grid", ("grid", {})),
        ({"name": "random"}, ("random", {})),
        (
            {"name": "tpe", "multivariate": False, "n_startup_trials": 20, "constant_liar": False},
            ("tpe", {"multivariate": False, "n_startup_trials": 20, "constant_liar": False}),
        ),
        ({"name": "gp", "deterministic_objective": True}, ("gp", {"deterministic_objective": True})),
        ({"name": "cmaes", "popsize": 8, "with_margin": True}, ("cmaes", {"popsize": 8, "with_margin": True})),
        ({"name": "qmc", "qmc_type": "halton", "scramble": False}, ("qmc", {"qmc_type": "halton", "scramble": False})),
        # probabilities are floats whatever the YAML wrote
        (
            {"name": "nsga2", "mutation_prob": 0, "crossover_prob": 1},
            ("nsga2", {"mutation_prob": 0.0, "crossover_prob": 1.0}),
        ),
    ],
)
def test_parse_search_reads_names_and_options(value: object, expected: tuple[str, dict[str, Any]]) -> None:
    name, options = parse_search(value)
    assert (name, options) == expected
    assert all(type(options[k]) is type(v) for k, v in expected[1].items())


@pytest.mark.parametrize(
    ("value", "path", "match"),
    [
        ("tpr", "search", r"search: unknown search algorithm, but got 'tpr'\. Did you mean 'tpe'\? Known: grid"),
        ({"name": "bayes"}, "search.name", r"search\.name: unknown search algorithm.*Known: grid, random, tpe"),
        (
            {"multivariate": True},
            "search.name",
            r"a `search` mapping needs the algorithm's `name`.*Add e\.g\. name: tpe",
        ),
        (
            {"name": "tpe", "n_startup_trails": 5},
            "search.n_startup_trails",
            r"unknown option of search 'tpe', but got 'n_startup_trails'\. Did you mean 'n_startup_trials'\?",
        ),
        ({"name": "tpe", "seed": 3}, "search.seed", r"seeded by the run's own `seed:`"),
        ({"name": "random", "n_startup_trials": 3}, "search.n_startup_trials", r"random takes no options"),
        ({"name": "cmaes", "sigma0": 0.5}, "search.sigma0", r"Optuna 4\.9 deprecated it; drop it"),
        (
            {"name": "tpe", "multivariate": "yes"},
            "search.multivariate",
            r"`multivariate` must be true or false, but got 'yes'",
        ),
        ({"name": "tpe", "n_startup_trials": -1}, "search.n_startup_trials", r"must be an integer >= 0, but got -1"),
        (
            {"name": "tpe", "n_startup_trials": True},
            "search.n_startup_trials",
            r"must be an integer >= 0, but got True",
        ),
        ({"name": "tpe", "n_ei_candidates": 2.5}, "search.n_ei_candidates", r"must be an integer >= 1"),
        (
            {"name": "nsga2", "mutation_prob": 1.5},
            "search.mutation_prob",
            r"must be a number in \[0, 1\], but got 1\.5",
        ),
        ({"name": "nsga2", "population_size": 1}, "search.population_size", r"an integer >= 2 \(NSGA-II mates pairs\)"),
        ({"name": "qmc", "qmc_type": "lhs"}, "search.qmc_type", r"must be 'sobol' or 'halton', but got 'lhs'"),
        (
            {"name": "tpe", "group": True, "multivariate": False},
            "search.group",
            r"`group: true` needs `multivariate: true`",
        ),
        ({"name": "cmaes", "lr_adapt": True, "with_margin": True}, "search.lr_adapt", r"`lr_adapt` cannot be combined"),
        (3, "search", r"must be an algorithm name or a mapping.*an optuna sampler \(Optuna backend\)"),
    ],
)
def test_parse_search_refuses_with_path_rule_and_fix(value: object, path: str, match: str) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        parse_search(value)
    assert info.value.path == path


def test_search_options_cover_every_algorithm_and_are_keywords_of_optuna_samplers() -> None:
    assert tuple(SEARCH_OPTIONS) == SEARCH_ALGORITHMS
    samplers = {
        "tpe": optuna.samplers.TPESampler,
        "gp": optuna.samplers.GPSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "qmc": optuna.samplers.QMCSampler,
        "nsga2": optuna.samplers.NSGAIISampler,
    }
    for name, cls in samplers.items():
        keywords = set(inspect.signature(cls.__init__).parameters)
        assert set(SEARCH_OPTIONS[name]) <= keywords, name
        assert not set(SEARCH_OPTIONS[name]) & set(_search._RETIRED), f"{name} allows a deprecated argument"
    assert SEARCH_OPTIONS["grid"] == SEARCH_OPTIONS["random"] == ()


@pytest.mark.parametrize(
    ("search", "options", "attrs"),
    [
        ("tpe", {}, {"_multivariate": True, "_group": True, "_constant_liar": True}),  # today's defaults
        ("tpe", {"n_startup_trials": 20, "constant_liar": False}, {"_constant_liar": False}),
        ("tpe", {"multivariate": False}, {"_multivariate": False, "_group": False}),  # group follows multivariate
        ("qmc", {}, {"_scramble": True, "_qmc_type": "sobol"}),
        ("qmc", {"qmc_type": "halton", "scramble": False}, {"_scramble": False, "_qmc_type": "halton"}),
        ("cmaes", {"popsize": 6}, {"_popsize": 6}),
        ("gp", {"deterministic_objective": True}, {"_deterministic": True}),
    ],
)
def test_make_sampler_applies_options_over_its_defaults(
    search: str, options: dict[str, Any], attrs: dict[str, Any]
) -> None:
    sampler = make_sampler(search, seed=0, space=CONDITIONAL, options=options)
    for attr, value in attrs.items():
        assert getattr(sampler, attr) == value, attr
    if "n_startup_trials" in options:
        assert sampler._n_startup_trials == options["n_startup_trials"]  # type: ignore[attr-defined]


def test_the_same_options_and_seed_give_the_same_configs() -> None:
    def draws(options: dict[str, Any]) -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=make_sampler("tpe", seed=3, space=FLAT, options=options))
        study.optimize(lambda t: t.suggest_float("x", -2, 2) ** 2, n_trials=8)
        return [t.params for t in study.trials]

    assert draws({"n_startup_trials": 2}) == draws({"n_startup_trials": 2})


def test_make_sampler_validates_options_given_without_parse_search() -> None:
    with pytest.raises(SchemaError, match=r"search\.multivariat: unknown option.*Did you mean 'multivariate'"):
        make_sampler("tpe", seed=0, space=FLAT, options={"multivariat": True})


def test_search_module_is_standard_library_only() -> None:
    tree = ast.parse(Path(_search.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    outside = {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and m != "__future__"}
    # schema modules are standard library only themselves (tests/test_layout.py)
    assert outside <= {"tunebridge._vocab", "tunebridge.errors", "tunebridge._hints", "tunebridge._rules"}
    # and importing it imports neither optuna nor ray
    code = "import sys, tunebridge._search; print('optuna' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- a user's own objects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        (optuna.samplers.TPESampler(seed=0), "optuna-sampler"),
        (optuna.samplers.RandomSampler(), "optuna-sampler"),
        (optuna.pruners.MedianPruner(), "optuna-pruner"),
        ("tpe", None),
        ({"name": "tpe"}, None),
        (object(), None),
    ],
)
def test_object_kind_recognises_optuna_objects(obj: object, kind: str | None) -> None:
    assert object_kind(obj) == kind


@pytest.mark.parametrize(
    ("option", "obj", "backend", "match"),
    [
        (
            "search",
            optuna.pruners.MedianPruner(),
            "optuna",
            r"optuna cannot express 'search' with an optuna pruner \(optuna\.pruners\._median\.MedianPruner\)\. "
            r"It is an optuna pruner: pass it as pruner=",
        ),
        (
            "pruner",
            optuna.pruners.MedianPruner(),
            "ray",
            r"ray cannot express 'pruner' with an optuna pruner .*MedianPruner.*needs backend='optuna'",
        ),
        (
            "pruner",
            optuna.samplers.TPESampler(),
            "optuna",
            r"an optuna sampler \(optuna\.samplers\._tpe\.sampler\.TPESampler\).*pass it as search=",
        ),
    ],
)
def test_check_object_names_option_class_backend_and_fix(option: str, obj: object, backend: str, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        check_object(option, obj, backend)


def test_an_optuna_sampler_is_accepted_by_both_backends() -> None:
    for backend in ("optuna", "ray"):
        check_object("search", optuna.samplers.TPESampler(), backend)


def test_study_options_name_a_users_sampler_custom() -> None:
    sampler = optuna.samplers.TPESampler(seed=1)
    opts = StudyOptions(space=FLAT, metrics=["y"], modes=["min"], sampler=sampler, search_options={"x": 1})
    assert opts.search == custom_name(sampler) == "custom:TPESampler"
    assert opts.search_options == {}
    with pytest.raises(
        SchemaError, match=r"search: a `custom:` search name stands for a user's sampler, which is missing"
    ):
        StudyOptions(space=FLAT, metrics=["y"], modes=["min"], search="custom:TPESampler")
