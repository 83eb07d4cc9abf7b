"""Resume points in an Optuna study: a re-queued trial goes on from its predecessor's last epoch.

A running trial records the folder of its latest resume point on itself (``tb_resume_point``). When its
worker dies (heartbeat, dead PID), is interrupted (Ctrl-C) or preempted (SIGTERM), :func:`requeue` carries
that folder to the trial that re-runs the config. When a worker claims that trial, :func:`resume_from`
checks the point (:meth:`~tunebridge.backends._resume.ResumePlan.read`), copies the epochs already
reported into the new trial, so the study holds one whole curve for the config, and hands the
objective a :class:`~tunebridge.backends._base.Resume`: training goes on at the next epoch. A point that
cannot be trusted is named in one warning line and on the trial (``tb_resume_refused``), and the trial
starts from epoch 0.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Mapping

import optuna

from tunebridge import _record
from tunebridge.backends._base import Resume
from tunebridge.backends._resume import ResumePlan, discard_point
from tunebridge.backends.optuna._attrs import write_attrs
from tunebridge.backends.optuna._internals import storage_of, study_id_of, trial_id_of

__all__ = ["check_shared_folder", "end_resume", "resume_from"]

_MARKER_ATTR = "tb_resume_marker:"


def resume_from(
    study: optuna.Study,
    trial: optuna.Trial,
    reporter: object,
    config: Mapping[str, object],
    plan: ResumePlan,
    source: str | None,
) -> Resume | None:
    """Where a claimed trial goes on from (None: epoch 0), with its reporter told the epochs before it.

    ``source``: the resume point the trial names (``tb_resume_point``, carried by :func:`requeue`).
    """
    if not source:
        return None
    point, reason = plan.read(str(source), config)
    if point is None:
        print(f"tunebridge: trial {trial.number} starts from epoch 0: {reason}", file=sys.stderr, flush=True)
        write_attrs(storage_of(study), trial_id_of(trial), {_record.RESUME_REFUSED: reason, _record.RESUME_POINT: None})
        discard_point(str(source))
        return None
    metric = getattr(reporter, "metric", None)
    if len(study.directions) == 1 and metric is not None:
        for epoch, metrics in sorted(point.history.items()):
            if metric in metrics:
                trial.report(float(metrics[metric]), step=epoch)
    reporter.history = dict(point.history)  # type: ignore[attr-defined]
    reporter.last_epoch = point.epoch  # type: ignore[attr-defined]
    write_attrs(storage_of(study), trial_id_of(trial), {_record.RESUMED_AT: point.epoch})
    return Resume(point.folder)


def end_resume(*folders: str | None) -> None:
    """A trial ended for good (complete, pruned, failed): its resume points (its own, the one it went on from) go."""
    for folder in folders:
        discard_point(folder)


def check_shared_folder(study: optuna.Study, plan: ResumePlan) -> str | None:
    """Whether this worker sees the resume folder the study's other workers write to.

    Each worker leaves a marker file in the folder and names it on the study; one that cannot see
    another host's marker is told so at start, not after a crash (its trials would start from epoch 0).
    """
    os.makedirs(os.path.join(plan.root, ".workers"), exist_ok=True)
    host = socket.gethostname()
    mine = os.path.join(plan.root, ".workers", f"{host}-{uuid.uuid4().hex[:8]}")
    with open(mine, "w", encoding="utf-8") as f:
        f.write(host)
    storage, study_id = storage_of(study), study_id_of(study)
    storage.set_study_system_attr(study_id, _MARKER_ATTR + os.path.basename(mine), {"host": host, "path": mine})
    # Another worker's marker must be in *this* folder: a different folder on the same host counts too.
    unseen = sorted(
        {
            f"{value.get('host')} ({os.path.dirname(os.path.dirname(str(value.get('path'))))})"
            for key, value in storage.get_study_system_attrs(study_id).items()
            if key.startswith(_MARKER_ATTR)
            and isinstance(value, dict)
            and not os.path.exists(os.path.join(plan.root, ".workers", os.path.basename(str(value.get("path")))))
        }
    )
    if not unseen:
        return None
    return (
        f"this worker's resume folder {plan.root} does not hold the points of the worker(s) on {', '.join(unseen)}: "
        "a trial they leave starts from epoch 0 here. Give every worker one shared folder (the same working "
        "directory on a shared filesystem, or run={'checkpoints': {'dir': ...}})."
    )
