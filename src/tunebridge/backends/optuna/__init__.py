"""The Optuna backend: a space compiled to define-by-run, samplers, pruners, storages, the trial loop."""

from __future__ import annotations

from tunebridge.backends.optuna._compile import check_convertible, decode, distribution, distributions, encode, suggest
from tunebridge.backends.optuna._factories import (
    SEARCH_ALGORITHMS,
    make_pruner,
    make_sampler,
    make_storage,
    normalize_db_url,
    storage_kind,
)
from tunebridge.backends.optuna._queue import claim, count_finished, ensure_budget, fail_stale, open_study, requeue
from tunebridge.backends.optuna._study import OptunaReporter, StudyOptions, run_trials, trial_config

__all__ = [
    "SEARCH_ALGORITHMS",
    "OptunaReporter",
    "StudyOptions",
    "check_convertible",
    "claim",
    "count_finished",
    "decode",
    "distribution",
    "distributions",
    "encode",
    "ensure_budget",
    "fail_stale",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "normalize_db_url",
    "open_study",
    "requeue",
    "run_trials",
    "storage_kind",
    "suggest",
    "trial_config",
]
