"""One Ray Tune function trainable for every trial: it runs the backend-neutral objective.

Only ``ray.tune.report`` and ``ray.tune.get_checkpoint`` are used: in Ray 2.60 ``ray.train.report``
and ``RayTrainReportCallback`` raise inside a Tune function. The trial's final
:class:`~tunebridge.backends._base.TrialOutcome` goes back to the driver as one last result
(``tb_done``), which the driver writes into the Optuna study.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

from tunebridge import _record
from tunebridge.backends._base import (
    Objective,
    Resume,
    TrialOutcome,
    finite_objective_values,
    may_prune,
    over_whole_history,
)
from tunebridge.backends.ray._convert import ray_config_to_config
from tunebridge.backends.ray._schedulers import TIME_ATTR
from tunebridge.errors import MetricNotFoundError
from tunebridge.schema import Space

__all__ = [
    "HISTORY_FILE",
    "RayReporter",
    "TrialPlan",
    "TrialStopped",
    "final_result",
    "load_objective",
    "train_config",
]

HISTORY_FILE = "tb_history.json"  # every epoch's metrics so far, saved with each checkpoint


class TrialStopped(BaseException):
    """Ray stopped the trial while it reported (scheduler decision, pause or end of run).

    Ray ends the training thread with ``SystemExit(0)`` inside ``tune.report``. It is carried out of
    the user's code as this ``BaseException`` (no ``except Exception`` swallows it, and Lightning's
    ``SystemExit`` handling, which touches signal handlers, is not involved) and turned back into
    ``SystemExit(0)`` at the top of the trainable.
    """


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a run needs to know (sent once through the object store).

    Attributes:
        metrics: The objectives; the first one is monitored per epoch.
        modes: ``min`` or ``max`` per objective.
        space: Configs are validated against it before they run.
        budget: The most epochs a trial runs (the pruning spec's budget); at that epoch the trial
            stops and finishes normally (it is not pruned).
        checkpoint_frequency: Save a Lightning checkpoint every this many epochs (0: never).
        threads: ``torch.set_num_threads`` in the trial (None: leave torch alone).
        apply_config_on_restore: PBT: the objective resumes with ``Resume(reapply_config=True)``, so
            the (mutated) config's training hyperparameters win over the restored optimizer state.
        objective: The objective, pickled by the driver and unpickled in the trial only after
            ``sys_path`` is in place (a spec's ``builder: module:fn`` lives next to the spec file).
        sys_path: The driver's import path; entries that exist on the trial's node are appended.
        cwd: The driver's working directory; trials run there when it exists on their node, so
            relative paths mean what they mean with the Optuna backend (Ray would chdir to the trial dir).
        rule: ``best_epoch`` or ``last_epoch`` (the spec's ``objective:``): which epoch of a trial
            resumed from a checkpoint gives its value, chosen over the epochs before the restore too.
    """

    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    space: Space
    budget: int
    checkpoint_frequency: int = 0
    threads: int | None = None
    apply_config_on_restore: bool = False
    objective: bytes = b""
    sys_path: tuple[str, ...] = ()
    cwd: str | None = None
    rule: str = "best_epoch"


class RayReporter:
    """The :class:`~tunebridge.backends._base.Reporter` of a Ray trial: one ``tune.report`` per epoch.

    Returns False (Ray's scheduler stops trials itself) except at the budget epoch, where it asks
    the trial to end; that epoch is not reported, so a scheduler whose ``max_t`` is the budget
    cannot kill the trial before its outcome is known.
    """

    def __init__(self, plan: TrialPlan, label: str | None = None) -> None:
        self.plan = plan
        self.label = label  # names the trial's files (kept weights, logs): ``ray_<trial id>``
        self.kept_checkpoint: str | None = None  # set by the objective when it keeps this trial's weights
        self.history: dict[int, dict[str, float]] = {}
        self.budget_reached = False
        self.restored = False
        self._send_curve = False

    @property
    def curve(self) -> dict[int, float]:
        """The monitored metric per epoch (the study's intermediate values)."""
        metric = self.plan.metrics[0]
        return {epoch: metrics[metric] for epoch, metrics in sorted(self.history.items())}

    def restore(self, folder: str) -> None:
        """Pick up the epochs saved with a checkpoint (their curve goes to the driver with the next report)."""
        path = os.path.join(folder, HISTORY_FILE)
        if os.path.exists(path):
            with open(path) as f:
                self.history = {int(k): v for k, v in json.load(f).items()}
            self.restored = self._send_curve = True

    def best(self, outcome: TrialOutcome) -> TrialOutcome:
        """``outcome`` with its objective epoch chosen over the epochs before a restore too
        (:func:`~tunebridge.backends._base.over_whole_history`)."""
        if not self.restored:
            return outcome
        return over_whole_history(outcome, self.history, self.plan.metrics[0], self.plan.modes[0], self.plan.rule)

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        from ray import tune

        metric = self.plan.metrics[0]
        if metric not in metrics:
            raise MetricNotFoundError(metric, list(metrics))
        if self.history and epoch <= max(self.history):
            return False  # a second validation within one epoch is not reported again
        self.history[epoch] = {str(k): float(v) for k, v in metrics.items()}
        if not may_prune(epoch, self.plan.budget):
            self.budget_reached = True
            return True
        result: dict[str, Any] = {**self.history[epoch], TIME_ATTR: epoch, _record.RAY_NODE: node_id()}
        if self.kept_checkpoint:  # the driver deletes it if the scheduler stops this trial for good
            result["tb_kept"] = self.kept_checkpoint
        if self._send_curve:
            result["tb_curve"] = json.dumps(self.curve)
            self._send_curve = False
        freq = self.plan.checkpoint_frequency
        folder = None
        try:
            if checkpoint is not None and freq and epoch % freq == 0:
                folder = tempfile.mkdtemp(prefix="tunebridge-ckpt-")
                checkpoint(folder)
                with open(os.path.join(folder, HISTORY_FILE), "w") as f:
                    json.dump(self.history, f)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
            else:
                tune.report(result)
        except SystemExit as exc:
            raise TrialStopped from exc
        finally:
            if folder is not None:  # Ray has copied it into the trial's storage by now
                shutil.rmtree(folder, ignore_errors=True)
        return False


def final_result(outcome: TrialOutcome, plan: TrialPlan, curve: Mapping[int, float]) -> dict[str, Any]:
    """The trial's last result: objective values under the metric names, the outcome as JSON under ``tb_outcome``.

    Raises:
        MetricNotFoundError: An objective metric is in neither the best nor the final metrics.
        FloatingPointError: An objective value is NaN or infinite (the trial fails, as with Optuna).
    """
    metrics = list(plan.metrics)
    if outcome.pruned:
        values = [float(outcome.metrics.get(m, math.nan)) for m in metrics]
    else:
        values = finite_objective_values(outcome, metrics)
    # The driver rebuilds the TrialOutcome from its fields (see _mirror.py) and records it like the Optuna loop.
    record = {**asdict(outcome), "values": values, "curve": {str(k): v for k, v in curve.items()}}
    return {
        **dict(zip(metrics, values)),
        TIME_ATTR: outcome.epochs,
        "tb_done": True,
        "tb_outcome": json.dumps(record, default=str),
    }


_OBJECTIVES: dict[str, Objective] = {}


def load_objective(plan: TrialPlan) -> Objective:
    """The trial's objective (unpickled once per process; a reused actor keeps it)."""
    digest = hashlib.sha1(plan.objective).hexdigest()
    if digest not in _OBJECTIVES:
        from ray import cloudpickle

        for entry in plan.sys_path:
            if entry not in sys.path and os.path.isdir(entry):
                sys.path.append(entry)
        _OBJECTIVES.clear()
        _OBJECTIVES[digest] = cloudpickle.loads(plan.objective)
    return _OBJECTIVES[digest]


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` without importing torch for objectives that never use it.

    A fresh worker has not imported torch yet: ``OMP_NUM_THREADS`` then sets torch's thread count
    when the objective imports it (about 1.5 s saved per worker for pure-Python objectives).
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def train_config(ray_config: dict[str, Any], *, plan: TrialPlan) -> dict[str, Any]:
    """The function trainable: validate the config, resume from Ray's checkpoint if any, run the objective."""
    from ray import tune

    if plan.cwd and os.path.isdir(plan.cwd):
        os.chdir(plan.cwd)
    config = ray_config_to_config(ray_config)
    plan.space.validate(config)
    objective = load_objective(plan)
    if plan.threads:
        set_threads(plan.threads)
    reporter = RayReporter(plan, label=f"ray_{tune.get_context().get_trial_id()}")
    checkpoint = tune.get_checkpoint()
    try:
        with checkpoint.as_directory() if checkpoint is not None else nullcontext(None) as folder:
            if folder is None:
                outcome = objective(config, reporter)
            else:  # the Objective contract: ``resume`` is passed only when there is something to resume
                reporter.restore(folder)
                outcome = objective(
                    config, reporter, resume=Resume(folder, reapply_config=plan.apply_config_on_restore)
                )
    except TrialStopped:
        raise SystemExit(0) from None  # Ray's graceful end of a stopped training thread
    if reporter.budget_reached and outcome.pruned:
        outcome = replace(outcome, pruned=False)  # stopped because the budget is spent, not pruned
    outcome = reporter.best(outcome)
    return {**final_result(outcome, plan, reporter.curve), _record.RAY_NODE: node_id()}


def node_id() -> str:
    """The id of the Ray node this trial runs on (recorded as the trial's ``ray_node``)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())
