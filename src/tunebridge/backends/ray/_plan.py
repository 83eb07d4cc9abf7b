"""Everything a Ray run is made of, decided before Ray starts: search, scheduler, trial plan.

:func:`plan_run` is pure apart from building Ray objects, so every refusal (a space Ray cannot
express, PBT over a structural parameter, pruning several objectives) happens before any trial.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from tunebridge._search import check_object, object_kind
from tunebridge.backends.optuna import (
    StudyOptions,
    check_convertible,
    encode,
    make_sampler,
    sample_configs,
    with_order,
)
from tunebridge.backends.ray._convert import BACKEND, CONFIG_KEY, DefineByRun, config_key, native_param_space
from tunebridge.backends.ray._options import RayOptions
from tunebridge.backends.ray._sampler import savable
from tunebridge.backends.ray._schedulers import make_scheduler, pbt_interval, user_copy, user_scheduler
from tunebridge.backends.ray._trainable import TrialPlan
from tunebridge.errors import ConversionError

__all__ = ["RayPlan", "plan_run"]


@dataclass
class RayPlan:
    """One Ray experiment: what ``Tuner`` gets.

    Attributes:
        kind: ``native`` (Ray's domains), ``optuna`` (OptunaSearch over the define-by-run space) or
            ``list`` (an explicit list of whole configs: grid, PBT population).
        param_space: Ray's ``param_space``.
        search_alg: The searcher (None: Ray's BasicVariantGenerator over ``param_space``).
        scheduler: The trial scheduler (None: FIFO).
        num_samples: Ray's ``num_samples``.
        configs: The configs of a ``list`` plan.
        metric, mode: Ray's single metric and mode (None for several objectives).
        trial: What every trial needs to know.
        checkpoint_keep: Checkpoints kept per trial.
        policy: The scheduler's name (``none``, ``asha``, ``hyperband``, ``median``, ``patience``, ``pbt``;
            ``custom`` for a user's own scheduler object, ``hyperband`` for a user's HyperBandScheduler).
    """

    kind: str
    param_space: dict[str, Any]
    search_alg: Any
    scheduler: Any
    num_samples: int
    configs: list[dict[str, Any]] | None
    metric: str | None
    mode: str | None
    trial: TrialPlan
    checkpoint_keep: int | None
    policy: str


def plan_run(
    opts: StudyOptions,
    options: RayOptions,
    *,
    n_trials: int,
    objective: bytes = b"",
    done_configs: Collection[str] = (),
    warm_trials: Sequence[optuna.trial.FrozenTrial] = (),
    offset: int = 0,
    rule: str = "best_epoch",
) -> RayPlan:
    """Plan one Ray experiment of ``n_trials`` trials.

    Args:
        opts: The study's options (space, metrics, search, seed, pruning, budget).
        options: The Ray options.
        n_trials: Trials this experiment runs (the budget left).
        objective: The pickled objective (unpickled in the trial, after the driver's ``sys.path``).
        done_configs: :func:`config_key` of configs already evaluated (a grid skips them).
        warm_trials: Finished trials a model-based sampler learns from before its first suggestion.
        offset: Trials already run; a continuation seeds its random draws with ``seed + offset``
            so it does not repeat the first run's configs.
        rule: ``best_epoch`` or ``last_epoch``: which epoch gives a trial its value (``TrialPlan.rule``).

    A user's own objects (``opts.sampler``, ``opts.scheduler``) are copied for each plan: a Ray
    searcher draws from Ray's domains (flat spaces only); an optuna sampler runs inside Ray's
    ``OptunaSearch`` over tunebridge's define-by-run space, reseeded at random in a continuation.

    Raises:
        ConversionError: The space, search or scheduler cannot be expressed in Ray.
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    check_convertible(opts.space)  # the study mirror stores Optuna distributions
    if CONFIG_KEY in opts.space:
        raise ConversionError(
            backend=BACKEND,
            param=CONFIG_KEY,
            option="this parameter name",
            fix=f"The Ray backend reserves {CONFIG_KEY!r} for whole configs; rename the parameter.",
        )
    check_object("search", opts.sampler, BACKEND)
    check_object("pruner", opts.scheduler, BACKEND)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # OptunaSearch's own study would log at INFO
    n_obj = len(opts.metrics)
    budget = opts.pruning.budget(opts.max_epochs)
    interval = pbt_interval(budget, options.pbt_interval)
    if opts.scheduler is not None:
        scheduler, pruning_policy = user_scheduler(opts.scheduler, n_objectives=n_obj, ray_scheduler=options.scheduler)
    else:
        pruning_policy = opts.pruning.policy
        scheduler = make_scheduler(
            opts.pruning,
            max_epochs=opts.max_epochs,
            n_objectives=n_obj,
            mode=opts.modes[0],
            space=opts.space,
            scheduler=options.scheduler,
            pbt_mutate=options.pbt_mutate,
            pbt_every=interval,
            pbt_synch=options.pbt_synch,
            seed=opts.seed,
            metrics=opts.metrics,
            modes=opts.modes,
        )
    policy = options.policy(pruning_policy)
    seed = None if opts.seed is None else opts.seed + offset
    freq = options.checkpoint_every(pruning_policy, interval)
    if policy == "hyperband" and freq != 1:
        raise ConversionError(
            backend=BACKEND,
            param="checkpoint_frequency",
            option=f"{freq} with hyperband",
            fix="HyperBand pauses trials at any epoch; use checkpoint_frequency=1.",
        )
    if policy == "pbt":
        if not freq or interval % freq:
            raise ConversionError(
                backend=BACKEND,
                param="checkpoint_frequency",
                option=f"{freq} with pbt_interval={interval}",
                fix="PBT clones the checkpoint taken at each perturbation: make pbt_interval a "
                "multiple of checkpoint_frequency (default 1).",
            )
        if opts.search not in ("random", "grid"):
            raise ConversionError(
                backend=BACKEND,
                param="search",
                option=f"{opts.search} with pbt",
                fix="PBT explores by mutating a population; use search: random (or grid).",
            )
    trial = TrialPlan(
        metrics=tuple(opts.metrics),
        modes=tuple(opts.modes),
        space=opts.space,
        budget=budget,
        checkpoint_frequency=freq,
        threads=max(1, int(options.cpus_per_trial)),
        apply_config_on_restore=policy == "pbt",
        objective=objective,
        sys_path=tuple(p for p in sys.path if p),
        cwd=os.getcwd(),
        rule=rule,
    )
    single = n_obj == 1
    common = {
        "scheduler": scheduler,
        "metric": opts.metrics[0] if single else None,
        "mode": opts.modes[0] if single else None,
        "trial": trial,
        "checkpoint_keep": options.keep(pruning_policy),
        "policy": policy,
    }
    # Configs to evaluate first (enqueue / warm_start) belong to the study's first experiment only.
    first = [] if offset or done_configs else [dict(c) for c in opts.enqueue][: max(0, n_trials)]
    if opts.search == "grid" or policy == "pbt":
        if opts.search == "grid":
            done = set(done_configs) | {config_key(c) for c in first}
            rest = [c for c in opts.space.grid() if config_key(c) not in done]
        else:
            rest = sample_configs(opts.space, max(0, n_trials - len(first)), seed=seed)
        configs = (first + rest)[: max(0, n_trials)]
        return RayPlan(
            kind="list",
            param_space={CONFIG_KEY: tune.grid_search(configs)},
            search_alg=None,
            num_samples=1 if configs else 0,
            configs=configs,
            **common,
        )
    if object_kind(opts.sampler) == "ray-searcher":
        return RayPlan(
            kind="native",
            param_space=_searcher_space(opts),
            search_alg=user_copy(opts.sampler),
            num_samples=n_trials,
            configs=None,
            **common,
        )
    native = native_param_space(opts.space) if opts.search == "random" else None
    if native is not None:
        return RayPlan(
            kind="native",
            param_space=native,
            search_alg=BasicVariantGenerator(random_state=seed, points_to_evaluate=first or None),
            num_samples=n_trials,
            configs=None,
            **common,
        )
    if opts.sampler is not None:  # a user's optuna sampler (a Ray searcher returned above)
        sampler = with_order(user_copy(opts.sampler), opts.space)  # model-based: ordered choices keep their order
        if offset:
            sampler.reseed_rng()  # a continuation must not replay the first run's draws
    else:
        sampler = make_sampler(
            opts.search, seed=seed, space=opts.space, n_objectives=n_obj, options=opts.search_options
        )
    storage = optuna.storages.InMemoryStorage()
    if warm_trials or first:
        # OptunaSearch loads this study (its fixed name is "optuna"): a continuation keeps what TPE/GP
        # learned, and its define-by-run `ask()` takes the enqueued configs first.
        warm = optuna.create_study(storage=storage, study_name="optuna", directions=opts.directions)
        warm.add_trials([t for t in warm_trials if t.params])
        for config in first:
            warm.enqueue_trial(encode(opts.space, config))
    searcher = OptunaSearch(
        space=DefineByRun(opts.space),
        sampler=savable(sampler),  # Ray pickles the searcher; some samplers hold a lock (NSGA-II)
        storage=storage,
        metric=opts.metrics[0] if single else list(opts.metrics),
        mode=opts.modes[0] if single else list(opts.modes),
    )
    return RayPlan(kind="optuna", param_space={}, search_alg=searcher, num_samples=n_trials, configs=None, **common)


def _searcher_space(opts: StudyOptions) -> dict[str, Any]:
    """Ray's domains for a user's Ray searcher, which draws from them (and from nothing else).

    Raises:
        ConversionError: The space has no exact Ray domains, or the searcher has a metric or mode of its own.
    """
    name = type(opts.sampler).__name__
    if getattr(opts.sampler, "metric", None) is not None or getattr(opts.sampler, "mode", None) is not None:
        raise ConversionError(
            backend=BACKEND,
            param="search",
            option=f"a {name} object built with its own metric or mode",
            fix="Leave metric and mode out of the searcher: tunebridge gives it the study's metric and mode.",
        )
    native = native_param_space(opts.space)
    if native is None:
        raise ConversionError(
            backend=BACKEND,
            param="search",
            option=f"a {name} object over a space Ray's domains cannot draw exactly "
            "(conditions, per-layer copies, steps or log-scaled ints)",
            fix="Pass a search name (search='tpe') or an optuna sampler, which tunebridge runs through "
            "OptunaSearch over its define-by-run space; or flatten the space.",
        )
    return native
