"""Search algorithms, pruners and storages by name: the user's vocabulary -> Optuna objects."""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import optuna

from tunebridge._storage_url import journal_path, storage_kind
from tunebridge._vocab import SEARCH_ALGORITHMS
from tunebridge.errors import ConversionError, SchemaError
from tunebridge.schema import PruningSpec, Space
from tunebridge.schema._hints import did_you_mean

__all__ = ["SEARCH_ALGORITHMS", "make_pruner", "make_sampler", "make_storage", "normalize_db_url", "storage_kind"]

BACKEND = "optuna"


def make_sampler(search: str, *, seed: int | None, space: Space, n_objectives: int = 1) -> optuna.samplers.BaseSampler:
    """An Optuna sampler for a search algorithm name; the same seed gives the same configs.

    ``grid`` returns a seeded random sampler: the grid itself is enqueued as waiting trials (see
    ``backends/optuna/_queue.py``), which several workers claim atomically, and the random sampler
    only fills parameters the queue does not fix (none, for a complete grid).

    Raises:
        MissingDependencyError: ``cmaes`` without the ``cmaes`` package (before any trial runs).
    """
    if search not in SEARCH_ALGORITHMS:
        hint = did_you_mean(search, SEARCH_ALGORITHMS)
        raise SchemaError(
            "unknown search algorithm",
            path="search",
            value=repr(search),
            fix=(hint + " " if hint else "") + f"Known: {', '.join(SEARCH_ALGORITHMS)}.",
        )
    if n_objectives > 1 and search == "cmaes":
        raise ConversionError(
            backend=BACKEND,
            param="search",
            option="cmaes with several objectives",
            fix="Use nsga2, tpe or random for multi-objective studies.",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search in ("grid", "random"):
            return optuna.samplers.RandomSampler(seed=seed)
        if search == "tpe":
            conditional = space.is_conditional()
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=conditional,
                constant_liar=True,
                n_startup_trials=10,
            )
        if search == "gp":
            return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
        if search == "cmaes":
            from tunebridge._compat import require

            require("cmaes", "search: cmaes")
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if search == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False, scramble=True)
        return optuna.samplers.NSGAIISampler(seed=seed)


def make_pruner(spec: PruningSpec, *, max_epochs: int, n_objectives: int = 1) -> optuna.pruners.BasePruner:
    """Optuna's pruner for the backend-neutral spec; steps are epochs counted from 1."""
    if spec.policy != "none" and n_objectives > 1:
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option=f"policy={spec.policy} with several objectives",
            fix="Optuna cannot prune multi-objective trials: set `pruner: none`.",
        )
    budget = spec.budget(max_epochs)
    if spec.policy == "none":
        return optuna.pruners.NopPruner()
    if spec.policy == "median":
        # A trial can be pruned from the end of epoch `grace_period` on (n_warmup_steps is exclusive).
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=spec.grace_period - 1)
    if spec.policy == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.grace_period, reduction_factor=spec.reduction_factor, min_early_stopping_rate=0
        )
    if spec.policy == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.grace_period, max_resource=budget, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.PatientPruner(None, patience=spec.patience, min_delta=spec.min_delta)


def _installed_drivers() -> set[str]:
    from tunebridge._compat import has_module

    return {name for name in ("psycopg", "psycopg2", "pymysql", "MySQLdb") if has_module(name)}


def normalize_db_url(url: str, *, drivers: Collection[str] | None = None) -> str:
    """Give bare ``postgresql://``/``mysql://`` URLs an installed driver.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 but older releases to psycopg2; tunebridge ships
    psycopg 3 (the ``[postgres]`` extra), so a bare URL is pinned to it. ``postgresql+psycopg2://``
    and other explicit drivers are kept as they are.

    Args:
        url: A database URL.
        drivers: The importable driver modules (default: those installed here).

    Raises:
        MissingDependencyError: A PostgreSQL URL and no PostgreSQL driver.
    """
    drivers = _installed_drivers() if drivers is None else set(drivers)
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        if "psycopg" in drivers:
            return f"postgresql+psycopg://{rest}"
        if "psycopg2" in drivers:
            return f"postgresql+psycopg2://{rest}"
        from tunebridge.errors import MissingDependencyError

        raise MissingDependencyError("PostgreSQL storage", "postgres", "psycopg[binary]")
    if scheme in ("mysql", "mariadb") and "pymysql" in drivers and "MySQLdb" not in drivers:
        return f"mysql+pymysql://{rest}"
    return url


def make_storage(url: str | None) -> Any:
    """An Optuna storage for a URL: memory, any SQLAlchemy database URL, a journal file, or Redis.

    Dead workers are detected by tunebridge's own heartbeat (``backends.optuna._queue``), which works
    the same on every storage; Optuna's RDB-only heartbeat is not used.
    """
    kind = storage_kind(url)
    if kind == "memory" or url is None:
        return optuna.storages.InMemoryStorage()
    if kind == "rdb":
        url = normalize_db_url(url)
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True} if not url.startswith("sqlite") else {}
        if url.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": 60}}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage

    if kind == "journal-redis":
        from tunebridge._compat import require

        require("redis", "Redis journal storage")
        backend: Any = JournalRedisBackend(url)
    else:
        path = journal_path(url)
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileOpenLock

        backend = JournalFileBackend(os.path.expanduser(path), lock_obj=JournalFileOpenLock(os.path.expanduser(path)))
    return JournalStorage(backend)
