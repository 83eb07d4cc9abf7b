"""Trials that train on several devices with DDP: rank 0 reports, every rank stops together.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the same command again (its subprocess
script launcher), with ``LOCAL_RANK`` set. tunebridge tells those processes which trial they belong
to (:data:`TRIAL_ENV`, set around ``trainer.fit``): when :func:`tunebridge.tune` runs in such a
process, it trains that one config as a follower (:func:`follower_trial`) and exits, instead of
opening the study; a trial that goes on from a resume point names it, so every rank loads the same
checkpoint. Rank 0 (the worker that claimed the trial) alone reports to the study; its prune
decision is broadcast, so every rank stops at the same epoch (Optuna's own Lightning callback gets
this wrong: optuna#6043).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tunebridge.backends import Resume
from tunebridge.schema import Scalar

__all__ = ["TRIAL_ENV", "FollowerReporter", "follower_trial", "trial_environment"]

TRIAL_ENV = "TUNEBRIDGE_DDP_TRIAL"
# What Lightning's launcher writes into the launching process's environment; a later trial of the same
# worker must start from a clean slate, or it would believe it is a launched rank and wait forever.
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", TRIAL_ENV)


class FollowerReporter:
    """The reporter of ranks 1..N-1: reports nothing (rank 0's decision is broadcast to them)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Any = None) -> bool:
        return False


def follower_trial() -> tuple[dict[str, Scalar], FollowerReporter, Resume | None] | None:
    """The trial this process follows as a DDP rank > 0 (its config, reporter, and the resume point
    rank 0 goes on from: every rank loads the same checkpoint), or None for an ordinary process."""
    raw = os.environ.get(TRIAL_ENV)
    if not raw or int(os.environ.get("LOCAL_RANK", "0") or 0) == 0:
        return None
    job = json.loads(raw)
    point = job.get("resume")
    resume = None if not point else Resume(str(point["folder"]), reapply_config=bool(point.get("reapply_config")))
    return dict(job["config"]), FollowerReporter(str(job["label"])), resume


@contextmanager
def trial_environment(config: Mapping[str, Scalar], label: str, resume: Resume | None = None) -> Iterator[None]:
    """Name the trial (and the point it resumes from) for the ranks Lightning launches during ``fit``;
    restore the environment after."""
    saved = {key: os.environ.get(key) for key in _LAUNCHER_ENV}
    job: dict[str, Any] = {"config": dict(config), "label": label}
    if resume is not None:
        job["resume"] = {"folder": resume.folder, "reapply_config": resume.reapply_config}
    os.environ[TRIAL_ENV] = json.dumps(job)
    try:
        yield
    finally:
        # Lightning leaves the process group of a DDP trial initialised; the next trial must build its
        # own (with its own launched ranks), not talk to ranks that have exited.
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
