"""``search:`` and ``pruner:`` in words: a search algorithm's name and options, or a user's own object.

Standard library only (``tunebridge check`` imports it without optuna or ray). The options allowed
per algorithm are keyword arguments of Optuna 5.0's samplers, minus those Optuna deprecated; the
values are checked here, so a spec is refused before any backend is imported. A user's own
Optuna or Ray object is recognised by its class without importing either library: an object can
only be an instance of a class whose module is already loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from tunebridge._hints import did_you_mean
from tunebridge._rules import is_int_at_least
from tunebridge._vocab import SEARCH_ALGORITHMS
from tunebridge.errors import ConversionError, SchemaError, show

__all__ = [
    "CUSTOM_PREFIX",
    "SEARCH_OPTIONS",
    "check_object",
    "custom_name",
    "object_kind",
    "parse_search",
]

#: The options each named algorithm takes (keyword arguments of the Optuna sampler it builds).
SEARCH_OPTIONS: dict[str, tuple[str, ...]] = {
    "grid": (),
    "random": (),
    "tpe": ("multivariate", "group", "constant_liar", "n_startup_trials", "n_ei_candidates"),
    "gp": ("n_startup_trials", "deterministic_objective"),
    "cmaes": ("n_startup_trials", "popsize", "use_separable_cma", "with_margin", "lr_adapt", "consider_pruned_trials"),
    "qmc": ("qmc_type", "scramble"),
    "nsga2": ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"),
}
#: ``StudyOptions.search`` of a study searched by a user's own sampler: ``custom:TPESampler``.
CUSTOM_PREFIX = "custom:"

# Sampler arguments Optuna 5.0 still accepts but deprecated (each warns and some are ignored):
# refused with the reason rather than passed on to a FutureWarning.
_RETIRED = {
    "consider_endpoints": "Optuna 4.9 deprecated it (TPE always considers the endpoints)",
    "consider_prior": "Optuna 4.4 deprecated it",
    "sigma0": "Optuna 4.9 deprecated it",
    "x0": "Optuna 4.9 deprecated it",
    "restart_strategy": "Optuna 4.4 deprecated it and ignores it (restarts moved to OptunaHub)",
    "inc_popsize": "Optuna 4.4 deprecated it and ignores it",
}


def _bool(value: object) -> object:
    return value if isinstance(value, bool) else None


def _int_at_least(minimum: int) -> Callable[[object], object]:
    def check(value: object) -> object:
        return value if is_int_at_least(value, minimum) else None

    return check


def _probability(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return float(value)
    return None


def _qmc_type(value: object) -> object:
    return value if value in ("sobol", "halton") else None


_BOOL = (_bool, "true or false")
_CHECKS: dict[str, tuple[Callable[[object], object], str]] = {
    "multivariate": _BOOL,
    "group": _BOOL,
    "constant_liar": _BOOL,
    "deterministic_objective": _BOOL,
    "use_separable_cma": _BOOL,
    "with_margin": _BOOL,
    "lr_adapt": _BOOL,
    "consider_pruned_trials": _BOOL,
    "scramble": _BOOL,
    "n_startup_trials": (_int_at_least(0), "an integer >= 0"),
    "n_ei_candidates": (_int_at_least(1), "an integer >= 1"),
    "popsize": (_int_at_least(2), "an integer >= 2 (CMA-ES ranks a population)"),
    "population_size": (_int_at_least(2), "an integer >= 2 (NSGA-II mates pairs)"),
    "mutation_prob": (_probability, "a number in [0, 1]"),
    "crossover_prob": (_probability, "a number in [0, 1]"),
    "swapping_prob": (_probability, "a number in [0, 1]"),
    "qmc_type": (_qmc_type, "'sobol' or 'halton'"),
}


def _name(value: object, path: str) -> str:
    if isinstance(value, str) and value in SEARCH_ALGORITHMS:
        return value
    hint = did_you_mean(value, SEARCH_ALGORITHMS)
    raise SchemaError(
        "unknown search algorithm",
        path=path,
        value=show(value),
        fix=(hint + " " if hint else "") + f"Known: {', '.join(SEARCH_ALGORITHMS)}.",
    )


def parse_search(value: object) -> tuple[str, dict[str, Any]]:
    """A search algorithm's name and options from ``"tpe"`` or ``{"name": "tpe", **options}``.

    Example:
        >>> parse_search("tpe")
        ('tpe', {})
        >>> parse_search({"name": "tpe", "n_startup_trials": 20, "constant_liar": False})
        ('tpe', {'n_startup_trials': 20, 'constant_liar': False})

    Raises:
        SchemaError: An unknown algorithm or option (with the nearest known name), a value of the
            wrong type or range, or options that contradict each other.
    """
    if isinstance(value, str):
        return _name(value, "search"), {}
    if not isinstance(value, Mapping):
        raise SchemaError(
            "`search` must be an algorithm name or a mapping with a `name`",
            path="search",
            value=show(value),
            fix="Write e.g. search: tpe or search: {name: tpe, n_startup_trials: 20}; from Python, an "
            "optuna sampler (Optuna backend) or a Ray Tune searcher (Ray backend) works too.",
        )
    if "name" not in value:
        raise SchemaError(
            "a `search` mapping needs the algorithm's `name`",
            path="search.name",
            value=show(dict(value)),
            fix=f"Add e.g. name: tpe (one of {', '.join(SEARCH_ALGORITHMS)}).",
        )
    name = _name(value["name"], "search.name")
    allowed = SEARCH_OPTIONS[name]
    options: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "name":
            continue
        options[str(key)] = _option(name, key, raw, allowed)
    if name == "tpe" and options.get("group") is True and options.get("multivariate") is False:
        raise SchemaError(
            "`group: true` needs `multivariate: true` (Optuna's grouped TPE is multivariate)",
            path="search.group",
            value="group=True, multivariate=False",
            fix="Drop `multivariate: false`, or set `group: false`.",
        )
    if name == "cmaes" and options.get("lr_adapt") and (options.get("use_separable_cma") or options.get("with_margin")):
        raise SchemaError(
            "`lr_adapt` cannot be combined with `use_separable_cma` or `with_margin` (Optuna's CMA-ES rule)",
            path="search.lr_adapt",
            value=show({k: options[k] for k in ("lr_adapt", "use_separable_cma", "with_margin") if k in options}),
            fix="Keep lr_adapt or the CMA-ES variant, not both.",
        )
    return name, options


def _option(name: str, key: object, raw: object, allowed: tuple[str, ...]) -> object:
    path = f"search.{key}"
    if not isinstance(key, str) or key not in allowed:
        if key == "seed":
            fix = "The search is seeded by the run's own `seed:` (tune(seed=...))."
        elif isinstance(key, str) and key in _RETIRED:
            fix = f"{_RETIRED[key]}; drop it."
        elif not allowed:
            fix = f"{name} takes no options: write search: {name}."
        else:
            hint = did_you_mean(key, allowed)
            fix = (hint + " " if hint else "") + f"{name} takes: {', '.join(allowed)}."
        raise SchemaError(f"unknown option of search {name!r}", path=path, value=show(key), fix=fix)
    check, rule = _CHECKS[key]
    checked = check(raw)
    if checked is None:
        raise SchemaError(f"`{key}` must be {rule}", path=path, value=show(raw))
    return checked


# The classes a user's object may be an instance of, by the module that defines them: ``object_kind``
# looks them up only in modules already imported, so it never imports optuna or ray itself.
_KINDS: tuple[tuple[str, str, str], ...] = (
    ("optuna-sampler", "optuna.samplers", "BaseSampler"),
    ("optuna-pruner", "optuna.pruners", "BasePruner"),
    ("ray-searcher", "ray.tune.search.searcher", "Searcher"),
    ("ray-searcher", "ray.tune.search.search_algorithm", "SearchAlgorithm"),
    ("ray-scheduler", "ray.tune.schedulers.trial_scheduler", "TrialScheduler"),
)
_KIND_WORDS = {
    "optuna-sampler": "an optuna sampler",
    "optuna-pruner": "an optuna pruner",
    "ray-searcher": "a Ray Tune searcher",
    "ray-scheduler": "a Ray Tune trial scheduler",
}
# What each option accepts per backend. The Ray backend runs an optuna sampler through Ray's own
# OptunaSearch (over tunebridge's define-by-run space); a pruner has no such bridge.
_ACCEPTED = {
    ("search", "optuna"): ("optuna-sampler",),
    ("search", "ray"): ("ray-searcher", "optuna-sampler"),
    ("pruner", "optuna"): ("optuna-pruner",),
    ("pruner", "ray"): ("ray-scheduler",),
}
_FIX = {
    ("search", "optuna"): "On the Optuna backend pass an optuna.samplers.BaseSampler or a search name "
    "(search='tpe'); a Ray Tune searcher needs backend='ray'.",
    ("search", "ray"): "On the Ray backend pass a Ray Tune Searcher, an optuna sampler or a search name "
    "(search='tpe'); a pruner object belongs in pruner=.",
    ("pruner", "optuna"): "On the Optuna backend pass an optuna.pruners.BasePruner or a pruning spec "
    "(pruner={'policy': 'asha'}); a Ray Tune scheduler needs backend='ray'.",
    ("pruner", "ray"): "On the Ray backend pass a Ray Tune TrialScheduler (e.g. ASHAScheduler) or a pruning "
    "spec (pruner={'policy': 'asha'}); an optuna pruner needs backend='optuna'.",
}


def object_kind(value: object) -> str | None:
    """``optuna-sampler``, ``optuna-pruner``, ``ray-searcher``, ``ray-scheduler``, or None for anything else."""
    for kind, module, cls_name in _KINDS:
        cls = getattr(sys.modules.get(module), cls_name, None)
        if isinstance(cls, type) and isinstance(value, cls):
            return kind
    return None


def custom_name(obj: object) -> str:
    """The search name recorded for a user's own sampler or searcher, e.g. ``custom:TPESampler``."""
    return CUSTOM_PREFIX + type(obj).__name__


def check_object(option: str, value: object, backend: str) -> None:
    """Refuse a user's object that the ``backend`` cannot use as ``option`` (``search`` or ``pruner``).

    None and names or specs (anything that is not an optuna/Ray object) pass; they are checked elsewhere.

    Raises:
        ConversionError: Naming the option, the object's class, the backend and the fix.
    """
    kind = object_kind(value)
    if kind is None or kind in _ACCEPTED[(option, backend)]:
        return
    other = "pruner" if option == "search" else "search"
    fix = _FIX[(option, backend)]
    if kind in _ACCEPTED[(other, backend)]:
        fix = f"It is {_KIND_WORDS[kind]}: pass it as {other}=. " + fix
    raise ConversionError(
        backend=backend,
        param=option,
        option=f"{_KIND_WORDS[kind]} ({type(value).__module__}.{type(value).__qualname__})",
        fix=fix,
    )
