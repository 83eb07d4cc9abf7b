"""The Optuna backend: a space compiled to define-by-run, samplers, pruners, storages, the trial loop."""

from __future__ import annotations

from tunebridge.backends._options import StudyLimits, StudyOptions, WorkerOptions
from tunebridge.backends.optuna._checkpoints import keep_best_checkpoints
from tunebridge.backends.optuna._compile import (
    base_name,
    check_convertible,
    decode,
    decode_value,
    distribution,
    distributions,
    encode,
    params_and_distributions,
    suggest,
)
from tunebridge.backends.optuna._factories import (
    SEARCH_ALGORITHMS,
    independent_params,
    make_pruner,
    make_sampler,
    make_storage,
    normalize_db_url,
    storage_kind,
)
from tunebridge.backends.optuna._limits import limit_reached
from tunebridge.backends.optuna._loop import Executor, Finished, SingleExecutor, Slot, run_loop, run_trials
from tunebridge.backends.optuna._ordered import WrappedSampler, with_order
from tunebridge.backends.optuna._queue import claim, count_finished, ensure_budget, fail_stale, open_study, requeue
from tunebridge.backends.optuna._reads import one_read_per_pass
from tunebridge.backends.optuna._sample import sample_configs
from tunebridge.backends.optuna._study import (
    OptunaReporter,
    abandon_trial,
    fail_trial,
    settle_trial,
    start_trial,
    trial_config,
)

__all__ = [
    "Executor",
    "Finished",
    "SingleExecutor",
    "Slot",
    "SEARCH_ALGORITHMS",
    "OptunaReporter",
    "StudyLimits",
    "StudyOptions",
    "WorkerOptions",
    "WrappedSampler",
    "abandon_trial",
    "base_name",
    "check_convertible",
    "claim",
    "count_finished",
    "decode",
    "decode_value",
    "distribution",
    "distributions",
    "encode",
    "ensure_budget",
    "fail_stale",
    "fail_trial",
    "independent_params",
    "keep_best_checkpoints",
    "limit_reached",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "normalize_db_url",
    "one_read_per_pass",
    "open_study",
    "params_and_distributions",
    "requeue",
    "run_loop",
    "run_trials",
    "sample_configs",
    "settle_trial",
    "start_trial",
    "storage_kind",
    "suggest",
    "trial_config",
    "with_order",
]
