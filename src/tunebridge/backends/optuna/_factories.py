"""Search algorithms, pruners and storages by name: the user's vocabulary -> Optuna objects."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import random
import time
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from tunebridge._rules import check_choice
from tunebridge._search import check_object, object_kind, parse_search
from tunebridge._storage_url import journal_path, storage_kind
from tunebridge._vocab import SEARCH_ALGORITHMS
from tunebridge.backends._mo_asha import MoAsha
from tunebridge.backends._options import StudyOptions
from tunebridge.backends.optuna._mo_pruner import MoAshaPruner
from tunebridge.backends.optuna._ordered import with_order
from tunebridge.errors import ConversionError, SchemaError
from tunebridge.schema import PruningSpec, Space

__all__ = [
    "SEARCH_ALGORITHMS",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "normalize_db_url",
    "storage_kind",
    "study_pruner",
    "study_sampler",
]

BACKEND = "optuna"


def make_sampler(
    search: str,
    *,
    seed: int | None,
    space: Space,
    n_objectives: int = 1,
    options: Mapping[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """An Optuna sampler for a search algorithm name; the same seed gives the same configs.

    ``grid`` returns a seeded random sampler: the grid itself is enqueued as waiting trials (see
    ``backends/optuna/_queue.py``), which several workers claim atomically, and the random sampler
    only fills parameters the queue does not fix (none, for a complete grid).

    Over a space with ordered choices, a model-based sampler (tpe, gp, cmaes, qmc, nsga2) comes
    wrapped in :class:`~tunebridge.backends.optuna._ordered.OrderedChoices` (its ``inner``): the
    study stores the values, the sampler models their order over the index.

    Args:
        options: The algorithm's options (``tunebridge._search.SEARCH_OPTIONS``); each one left out
            keeps tunebridge's default: TPE is multivariate, grouped for conditional spaces, with a
            constant liar and 10 startup trials; QMC is scrambled.

    Raises:
        SchemaError: An unknown algorithm or option, or an option value of the wrong type.
        MissingDependencyError: ``cmaes`` without the ``cmaes`` package (before any trial runs).
    """
    check_choice(
        search,
        SEARCH_ALGORITHMS,
        path="search",
        rule="unknown search algorithm",
        fix=f"Known: {', '.join(SEARCH_ALGORITHMS)}.",
    )
    # Validated here too: StudyOptions may be built without study_options().
    _, kw = parse_search({"name": search, **(options or {})})
    if n_objectives > 1 and search == "cmaes":
        raise ConversionError(
            backend=BACKEND,
            param="search",
            option="cmaes with several objectives",
            fix="Use nsga2, tpe or random for multi-objective studies.",
        )
    return with_order(_sampler(search, seed=seed, space=space, kw=kw), space)


def independent_params(search: str, space: Space) -> list[str]:
    """Parameters a model-based search cannot model and draws at random (Optuna's independent sampling).

    CMA-ES and QMC model the numeric parameters every config has (ordered choices count: they see the
    position); GP models every parameter every config has. What is left (conditional parameters, per-layer
    copies beyond the fewest layers, and for CMA-ES/QMC unordered choices and booleans) is drawn at random:
    Optuna warns once per trial, which tunebridge silences, so ``tunebridge check`` lists them instead.
    """
    if search not in ("cmaes", "qmc", "gp"):
        return []
    from tunebridge.backends.optuna._compile import distributions
    from tunebridge.schema import Bool, Choice, Fixed

    modelled = set(distributions(space))
    out: list[str] = []
    for name in space.order:
        p = space[name]
        if isinstance(p, Fixed):
            continue
        numeric = not isinstance(p, Bool) and not (isinstance(p, Choice) and not p.ordered)
        if search != "gp" and not numeric:
            out.append(name)
        elif p.per_layer is not None:
            copies = sum(key.startswith(f"{name}/") for key in modelled)  # the layers every config has
            last = space.max_layers(name) - 1
            if copies <= last:
                out.append(f"{name}/{copies}" if copies == last else f"{name}/{copies}..{name}/{last}")
        elif name not in modelled:
            out.append(name)
    return out


def _sampler(search: str, *, seed: int | None, space: Space, kw: dict[str, Any]) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search in ("grid", "random"):
            return optuna.samplers.RandomSampler(seed=seed)
        if search == "tpe":
            multivariate = kw.pop("multivariate", True)
            # Grouped TPE keeps conditional parameters apart; Optuna requires multivariate for it.
            group = kw.pop("group", multivariate and space.is_conditional())
            tpe = {"constant_liar": True, "n_startup_trials": 10, **kw}
            return optuna.samplers.TPESampler(seed=seed, multivariate=multivariate, group=group, **tpe)
        if search == "gp":
            return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False, **kw)
        if search == "cmaes":
            from tunebridge._compat import require

            require("cmaes", "search: cmaes")
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **kw)
        if search == "qmc":
            qmc = {"scramble": True, **kw}
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False, **qmc)
        return optuna.samplers.NSGAIISampler(seed=seed, **kw)


def study_sampler(opts: StudyOptions, *, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler of a study on the Optuna backend: the user's own, else the named algorithm's.

    A user's TPE, GP, CMA-ES, QMC or NSGA-II sampler is used as given, wrapped in
    :class:`~tunebridge.backends.optuna._ordered.OrderedChoices` when the space has ordered choices
    (so it models their order); any other sampler of theirs sees the values as categorical.

    Raises:
        ConversionError: ``opts.sampler`` is not an optuna sampler (e.g. a Ray Tune searcher).
    """
    if opts.sampler is not None:
        check_object("search", opts.sampler, BACKEND)
        if object_kind(opts.sampler) is None:
            raise SchemaError(
                "`sampler` must be an optuna.samplers.BaseSampler",
                path="search",
                value=type(opts.sampler).__name__,
                fix="Pass e.g. optuna.samplers.TPESampler(seed=0), or a search name.",
            )
        return with_order(opts.sampler, opts.space)
    return make_sampler(
        opts.search, seed=seed, space=opts.space, n_objectives=len(opts.metrics), options=opts.search_options
    )


def make_pruner(
    spec: PruningSpec,
    *,
    max_epochs: int,
    n_objectives: int = 1,
    metrics: Sequence[str] = (),
    modes: Sequence[str] = (),
) -> optuna.pruners.BasePruner:
    """Optuna's pruner for the backend-neutral spec; steps are epochs counted from 1.

    With several objectives, ``asha`` and ``hyperband`` are MO-ASHA (:class:`MoAshaPruner`, the rule of
    ``backends/_mo_asha.py``, the Ray backend's too), which needs the objectives' ``metrics`` and ``modes``.

    Raises:
        SchemaError: A policy that cannot prune several objectives (``median``, ``patience``), or a
            tie-break with one objective.
    """
    n_objectives = max(n_objectives, len(metrics))
    spec.check_objectives(list(metrics) if metrics else [f"objective {i + 1}" for i in range(n_objectives)])
    budget = spec.budget(max_epochs)
    if spec.policy == "none":
        return optuna.pruners.NopPruner()
    if n_objectives > 1:  # asha or hyperband: check_objectives refused the others
        return MoAshaPruner(MoAsha.of(spec, modes=modes, max_epochs=max_epochs), metrics)
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


def study_pruner(opts: StudyOptions) -> optuna.pruners.BasePruner:
    """The pruner of a study on the Optuna backend: the user's own (as given), else the pruning spec's.

    Raises:
        ConversionError: ``opts.scheduler`` is not an optuna pruner (e.g. a Ray Tune scheduler), or a
            pruner for several objectives other than a :class:`MoAshaPruner`.
        SchemaError: A pruning spec that cannot prune the study's objectives (see :func:`make_pruner`).
    """
    n_objectives = len(opts.metrics)
    if opts.scheduler is None:
        return make_pruner(opts.pruning, max_epochs=opts.max_epochs, metrics=list(opts.metrics), modes=list(opts.modes))
    check_object("pruner", opts.scheduler, BACKEND)
    if object_kind(opts.scheduler) is None:
        raise SchemaError(
            "`pruner` must be a pruning spec or an optuna.pruners.BasePruner",
            path="pruner",
            value=type(opts.scheduler).__name__,
            fix="Pass e.g. optuna.pruners.MedianPruner(), or pruner={'policy': 'median'}.",
        )
    if n_objectives > 1 and not isinstance(opts.scheduler, (optuna.pruners.NopPruner, MoAshaPruner)):
        raise ConversionError(
            backend=BACKEND,
            param="pruner",
            option=f"{type(opts.scheduler).__name__} with several objectives",
            fix="Optuna's pruners compare one value: pass pruner={'policy': 'asha'} or {'policy': 'hyperband'} "
            "(MO-ASHA, by Pareto rank at each rung), or drop the pruner.",
        )
    return opts.scheduler  # type: ignore[no-any-return]


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

    Workers may start together on a fresh database server: the first ones create Optuna's tables
    one at a time (see :func:`_server_rdb`), so every one of them joins the study.

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
        if url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
        return _server_rdb(url, {"pool_pre_ping": True})
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage

    if kind == "journal-redis":
        from tunebridge._compat import require

        require("redis", "Redis journal storage")
        with warnings.catch_warnings():  # "experimental since 3.1": tunebridge supports it and tests it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend: Any = JournalRedisBackend(url)
    else:
        path = journal_path(url)
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileOpenLock

        backend = JournalFileBackend(os.path.expanduser(path), lock_obj=JournalFileOpenLock(os.path.expanduser(path)))
    return JournalStorage(backend)


# Any 64-bit key works for a PostgreSQL advisory lock; this one is tunebridge's (sha256 of its purpose).
_SCHEMA_LOCK_KEY = int.from_bytes(hashlib.sha256(b"tunebridge: create optuna tables").digest()[:8], "big", signed=True)
_SCHEMA_RETRIES = 5


def _server_rdb(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)`` on a database server, safe when several processes open a fresh database at once.

    ``RDBStorage`` creates Optuna's tables and stamps ``alembic_version`` on first use, which two
    processes doing it at the same moment turn into ``DuplicateTable`` / ``UniqueViolation``. On
    PostgreSQL the first-time set-up is serialised by an advisory lock (held on its own connection,
    released when it closes). Everywhere (MySQL included) a collision is retried with a short
    backoff: the second try finds the tables and the stamp in place and only reads them.
    """
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(_SCHEMA_RETRIES):
        try:
            with _schema_lock(url):
                return optuna.storages.RDBStorage(url, engine_kwargs=dict(engine_kwargs))
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            if attempt == _SCHEMA_RETRIES - 1 or not _schema_race(exc):
                raise
            time.sleep(0.05 * 2**attempt + random.uniform(0, 0.05))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _schema_race(exc: Exception) -> bool:
    """Whether an error is two processes creating Optuna's schema at once (not a wrong URL or password)."""
    text = str(exc).lower()
    return any(word in text for word in ("already exists", "duplicate", "unique", "alembic_version", "deadlock"))


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Hold tunebridge's PostgreSQL advisory lock while the block runs (a no-op for other databases)."""
    if not url.startswith(("postgresql", "postgres")):
        yield
        return
    import sqlalchemy

    with _lock_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # A bounded wait: a holder that hangs must not hang every other worker (the retry still guards).
        conn.execute(sqlalchemy.text("SET lock_timeout = '60s'"))
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        yield  # closing the connection releases the lock


@functools.lru_cache(maxsize=8)
def _lock_engine(url: str) -> Any:
    """One engine per URL for the lock, kept for the process's life: it holds no idle connection
    (``NullPool``), and an engine thrown away after each call would leave garbage whose clean-up
    callbacks run at a random later moment, where a worker's SIGTERM handler may land and be lost.
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(url, poolclass=NullPool)
