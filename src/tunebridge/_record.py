"""The trial record: what every finished or failed trial stores, written and read in one place.

Every backend writes a trial's attributes through :func:`outcome_attrs` / :func:`failure_attrs`
(the Optuna loop directly, the Ray backend when it mirrors a Ray trial into the study), and every
reader (:mod:`tunebridge.results`, :mod:`tunebridge.api`, reports, ``tunebridge show``) goes through
the readers below, so a key is spelt once. Standard library only.

The keys, as Optuna user attributes:

- ``config``: the config the trial ran with (values, never Optuna's indices of ordered choices);
- ``final_<metric>``: every final validation metric (``final_val_loss``, ``final_n_params``, …);
  a non-finite value is stored as its text (``"nan"``), since JSON storages refuse NaN;
- ``epochs`` (where it stopped), ``best_epoch``, ``early_stopped``;
- ``fail_reason`` (at most :data:`REASON_LIMIT` characters) and ``traceback`` (its last
  :data:`TRACEBACK_LIMIT` characters) for a failed trial;
- ``checkpoint`` and ``module_class``: the kept weights of the trial's reported epoch (a Lightning
  checkpoint) and ``module:Class`` of its LightningModule, while the trial is among the best kept;
- ``requeued`` / ``cancelled``: a failed trial whose config was queued again (an interrupted or dead
  worker's) or a surplus waiting trial that was cancelled: both are outside the trial budget;
- ``ray_node`` and ``ray_retries`` (Ray backend): the id of the Ray node that ran the trial's last
  attempt, and how often Ray retried it after a failure (a lost node: ``ray: {max_failures: N}``).
"""

from __future__ import annotations

import json
import math
import traceback as _traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunebridge.backends._base import TrialOutcome

__all__ = [
    "BEST_EPOCH",
    "CANCELLED",
    "CHECKPOINT",
    "CONFIG",
    "EARLY_STOPPED",
    "EPOCHS",
    "FAIL_REASON",
    "FINAL_PREFIX",
    "MODULE_CLASS",
    "REASON_LIMIT",
    "RAY_NODE",
    "RAY_RETRIES",
    "REQUEUED",
    "TRACEBACK",
    "TRACEBACK_LIMIT",
    "WORKER",
    "config_attrs",
    "config_of",
    "failure_attrs",
    "final_metrics",
    "outcome_attrs",
    "outside_budget",
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
REASON_LIMIT = 2000
TRACEBACK_LIMIT = 8000


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


def final_metrics(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The final metrics of a trial from its attributes (``final_val_acc`` -> ``val_acc``)."""
    return {k[len(FINAL_PREFIX) :]: v for k, v in attrs.items() if k.startswith(FINAL_PREFIX)}


def config_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config a trial ran with, or None when it never got one (failed before sampling)."""
    config = attrs.get(CONFIG)
    return dict(config) if isinstance(config, Mapping) else None


def outside_budget(attrs: Mapping[str, Any]) -> bool:
    """A failed trial that does not count towards the budget: re-queued or cancelled."""
    return bool(attrs.get(REQUEUED) or attrs.get(CANCELLED))
