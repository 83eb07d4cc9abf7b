"""The trial record: what every finished or failed trial stores, written and read in one place.

Every backend writes a trial's attributes through :func:`outcome_attrs` / :func:`failure_attrs`
(the Optuna loop directly, the Ray backend when it mirrors a Ray trial into the study) and
:func:`split_attrs`, and every reader (:mod:`tunebridge.results`, :mod:`tunebridge.api`, reports,
``tunebridge show``) goes through the readers below, so a key is spelt once. Standard library only.

What the user reads are Optuna *user* attributes (optuna-dashboard and ``trials_dataframe()`` show
them as the user's own):

- ``config``: the config the trial ran with (its values);
  written when the trial ends (a trial still running, or killed, has only its params);
- ``final_<metric>``: every final validation metric (``final_val_loss``, ``final_n_params``, …);
  a non-finite value is stored as its text (``"nan"``), since JSON storages refuse NaN;
- ``epochs`` (where it stopped), ``best_epoch``, ``early_stopped``;
- ``fail_reason`` (at most :data:`REASON_LIMIT` characters) and ``traceback`` (its last
  :data:`TRACEBACK_LIMIT` characters) for a failed trial;
- ``checkpoint``: the kept weights of the trial's reported epoch (a Lightning checkpoint), while the
  trial is among the best kept.

tunebridge's own bookkeeping is kept out of the user's view, as Optuna *system* attributes named
``tb_<key>`` (:data:`BOOKKEEPING`; :func:`bookkeeping` reads them):

- ``module_class``: ``module:Class`` of the LightningModule of the kept ``checkpoint`` (to load it);
- ``worker``: ``host:pid`` of the worker that ran the trial (with heartbeats: several workers may
  share the study; its heartbeat and process are ``tb_heartbeat`` and ``tb_process``);
- ``requeued`` / ``cancelled``: a failed trial whose config was queued again (an interrupted or dead
  worker's) or a surplus waiting trial that was cancelled: both are outside the trial budget;
- the queue's marks on a waiting trial: ``slot`` (an open place of the budget), ``enqueued`` (a
  config given to evaluate first), ``grid_index``, ``retry_of`` and ``retries`` (a re-queued config);
- ``fused``: the trial was trained in a fused cohort;
- ``ray_trial_id`` and ``ray_experiment`` (Ray backend): the Ray trial a study trial mirrors;
  ``ray_node`` and ``ray_retries``: the id of the Ray node that ran the trial's last attempt, and how
  often Ray retried it after a failure (a lost node: ``ray: {max_failures: N}``).
"""

from __future__ import annotations

import json
import math
import traceback as _traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tunebridge.backends import TrialOutcome

__all__ = [
    "BEST_EPOCH",
    "BOOKKEEPING",
    "BUDGET",
    "CANCELLED",
    "CHECKPOINT",
    "CONFIG",
    "EARLY_STOPPED",
    "ENQUEUED",
    "EPOCHS",
    "FAIL_REASON",
    "FINAL_PREFIX",
    "FUSED",
    "GRID_INDEX",
    "MODULE_CLASS",
    "MO_RUNG_PREFIX",
    "PRUNER",
    "REASON_LIMIT",
    "RAY_EXPERIMENT",
    "RAY_NODE",
    "RAY_RETRIES",
    "RAY_TRIAL_ID",
    "REQUEUED",
    "RESUMED_AT",
    "RESUME_POINT",
    "RESUME_REFUSED",
    "RETRIES",
    "RETRY_OF",
    "SLOT",
    "SYSTEM_PREFIX",
    "TRACEBACK",
    "TRACEBACK_LIMIT",
    "WORKER",
    "bookkeeping",
    "config_attrs",
    "config_of",
    "checkpoint_attrs",
    "failure_attrs",
    "final_metrics",
    "outcome_attrs",
    "outside_budget",
    "split_attrs",
]

CONFIG = "config"
RAY_NODE = "ray_node"
RAY_RETRIES = "ray_retries"
FINAL_PREFIX = "final_"
EPOCHS = "epochs"
BEST_EPOCH = "best_epoch"
EARLY_STOPPED = "early_stopped"
FAIL_REASON = "fail_reason"
TRACEBACK = "traceback"
REQUEUED = "requeued"
CANCELLED = "cancelled"
WORKER = "worker"
CHECKPOINT = "checkpoint"
MODULE_CLASS = "module_class"
FUSED = "fused"
SLOT = "slot"
ENQUEUED = "enqueued"
GRID_INDEX = "grid_index"
RETRY_OF = "retry_of"
RETRIES = "retries"
RAY_TRIAL_ID = "ray_trial_id"
RAY_EXPERIMENT = "ray_experiment"
# The folder of a trial's latest resume point (carried to the trial that re-runs its config), the epoch a
# trial went on after, and why a resume point was not used (the trial then started from epoch 0).
RESUME_POINT = "resume_point"
RESUMED_AT = "resumed_at"
RESUME_REFUSED = "resume_refused"
# MO-ASHA's rung records (several objectives, Optuna backend): a trial's objective values at a rung, as the
# system attribute SYSTEM_PREFIX + MO_RUNG_PREFIX + "<bracket>_<epoch>" (backends/optuna/_mo_pruner.py).
MO_RUNG_PREFIX = "mo_rung_"
# tunebridge's bookkeeping: stored as the system attribute SYSTEM_PREFIX + key, out of the user's attributes.
SYSTEM_PREFIX = "tb_"
BOOKKEEPING = frozenset(
    {
        WORKER,
        MODULE_CLASS,
        REQUEUED,
        CANCELLED,
        SLOT,
        ENQUEUED,
        GRID_INDEX,
        RETRY_OF,
        RETRIES,
        FUSED,
        RAY_TRIAL_ID,
        RAY_EXPERIMENT,
        RAY_NODE,
        RAY_RETRIES,
        RESUME_POINT,
        RESUMED_AT,
        RESUME_REFUSED,
    }
)
REASON_LIMIT = 2000
TRACEBACK_LIMIT = 8000

# The study's own record (study user attributes), next to the trials' keys above.
#: Why the last run stopped before its budget (``timeout:``/``stop:``), None when it did not.
STOPPED_BY = "stopped_by"
#: The grid's size (``search: grid``): the budget a grid study cannot exceed.
GRID_SIZE = "grid_size"
#: The most epochs one trial may train (the pruners' budget: ``max_epochs``), and the pruning policy.
BUDGET = "budget"
PRUNER = "pruner"
#: Useful work over work paid by the fused cohorts of the last fused run, and its K.
FUSED_EFFICIENCY = "fused_efficiency"
FUSED_CAPACITY = "fused_capacity"
#: The kept checkpoint of the best trial.
BEST_CHECKPOINT = "best_checkpoint"
#: The spec's hash (a resume with another spec is refused), the package versions and the backend.
SPEC_HASH = "spec_hash"
VERSIONS = "versions"
BACKEND = "backend"


def _json_number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else str(value)


def config_attrs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``config`` attribute of a trial (a JSON round trip: what every storage gives back)."""
    return {CONFIG: json.loads(json.dumps(dict(config)))}


def outcome_attrs(outcome: TrialOutcome) -> dict[str, Any]:
    """The attributes of a trial whose objective returned (complete or pruned)."""
    attrs: dict[str, Any] = {
        EPOCHS: outcome.epochs,
        BEST_EPOCH: outcome.best_epoch,
        EARLY_STOPPED: outcome.early_stopped,
    }
    attrs.update({f"{FINAL_PREFIX}{k}": _json_number(v) for k, v in outcome.metrics.items()})
    attrs.update(outcome.extra)
    return attrs


def checkpoint_attrs(path: str, module: object) -> dict[str, Any]:
    """The attributes of a trial that kept weights: the checkpoint and the class that loads it (``module:Class``)."""
    cls = type(module)
    return {CHECKPOINT: path, MODULE_CLASS: f"{cls.__module__}:{cls.__qualname__}"}


def failure_attrs(error: BaseException | str, *, traceback: str | None = None) -> dict[str, Any]:
    """``fail_reason`` and ``traceback`` of a failed trial.

    Args:
        error: The exception the trial failed with (the reason is ``Type: message``), or the reason as text.
        traceback: The traceback text; default: formatted from ``error`` (or ``error`` itself when it is text).
    """
    if isinstance(error, BaseException):
        reason = f"{type(error).__name__}: {error}"
        text = traceback if traceback is not None else "".join(_traceback.format_exception(error))
    else:
        reason = error
        text = traceback if traceback is not None else error
    return {FAIL_REASON: reason[:REASON_LIMIT], TRACEBACK: text[-TRACEBACK_LIMIT:]}


def split_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(user, system)``: a trial's attributes as stored, the bookkeeping as ``tb_<key>`` system attributes."""
    user: dict[str, Any] = {}
    system: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in BOOKKEEPING:
            system[SYSTEM_PREFIX + key] = value
        else:
            user[key] = value
    return user, system


class _Trial(Protocol):
    @property
    def system_attrs(self) -> dict[str, Any]: ...


def bookkeeping(trial: _Trial, key: str, default: Any = None) -> Any:
    """A bookkeeping value of a trial (``worker``, ``requeued``, …): its ``tb_<key>`` system attribute."""
    return trial.system_attrs.get(SYSTEM_PREFIX + key, default)


def final_metrics(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The final metrics of a trial from its attributes (``final_val_acc`` -> ``val_acc``)."""
    return {k[len(FINAL_PREFIX) :]: v for k, v in attrs.items() if k.startswith(FINAL_PREFIX)}


def config_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config a trial ran with, or None when it never got one (failed before sampling)."""
    config = attrs.get(CONFIG)
    return dict(config) if isinstance(config, Mapping) else None


def outside_budget(trial: _Trial) -> bool:
    """A failed trial that does not count towards the budget: re-queued or cancelled."""
    return bool(bookkeeping(trial, REQUEUED) or bookkeeping(trial, CANCELLED))
