"""What every backend shares: the objective and reporter contracts, a trial's outcome, and the trial rules.

Each rule below has one home and every backend (and the Lightning runner) calls it:

- :func:`objective_values` / :func:`finite_objective_values`: the value of a trial;
- :func:`best_epoch` / :func:`objective_epoch`: which epoch is the trial's best, and which one gives
  the trial its value (``objective: best_epoch | last_epoch``); :func:`declared_rule`: the rule an
  objective trains by; :func:`over_whole_history`: a resumed trial's objective epoch, chosen again over
  the epochs before the resume too (both loops call it when a trial went on from a checkpoint);
- :func:`check_epoch_metrics`: the monitored metric must be logged, and it and every loss finite;
- :func:`may_prune`: the budget's last epoch is never pruned;
- :func:`is_better` / :func:`best_of`: the best value so far (progress bars, summaries);
- :data:`CHECKPOINT_FILE`: the file a reporter's ``checkpoint(folder)`` writes.

The end of a trial's epoch (check, record, keep, early-stop, prune) puts these rules together once,
for Lightning trials and fused members alike: :class:`tunebridge.backends._epoch.TrialEpochs`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tunebridge.errors import MetricNotFoundError, NonFiniteMetricError
from tunebridge.schema import Scalar

__all__ = [
    "CHECKPOINT_FILE",
    "Objective",
    "Reporter",
    "Progress",
    "Resume",
    "StudyEvents",
    "TrialOutcome",
    "best_epoch",
    "best_of",
    "checkpoint_path",
    "check_epoch_metrics",
    "declared_rule",
    "finite_objective_values",
    "is_better",
    "silent",
    "may_prune",
    "objective_epoch",
    "objective_values",
    "over_whole_history",
    "trial_epochs",
    "trial_label",
]

#: The file inside a checkpoint folder that holds the trial's training state.
CHECKPOINT_FILE = "checkpoint.ckpt"


class Reporter(Protocol):
    """Receives a trial's validation metrics once per epoch (epochs count from 1)."""

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        """Record ``metrics`` for ``epoch``; return True when the trial should stop now (pruned).

        ``checkpoint(folder)``, when given, writes a resumable checkpoint into ``folder`` (its
        training state as :data:`CHECKPOINT_FILE`); a backend that pauses and resumes trials
        (Ray's ASHA/HyperBand/PBT) calls it.
        """
        ...


class StudyEvents(Protocol):
    """What a backend tells about a study as it runs (``tunebridge._progress`` shows it; backends never import it)."""

    def running(self, number: int, epoch: int, budget: int | None = None, value: float | None = None) -> None:
        """Trial ``number`` is at ``epoch`` (0: starting) of ``budget``, its monitored metric at ``value``."""
        ...

    def update(
        self, state: str, value: float | None = None, *, advance: bool = True, number: int | None = None
    ) -> None:
        """A trial finished as ``state`` (``complete``, ``pruned``, ``failed``) with ``value``."""
        ...

    def note(self, message: str) -> None:
        """Something worth a line of its own (e.g. why the study stopped before its budget)."""
        ...


#: How a caller shows a study's progress: ``progress(study, opts, n_trials)`` is a context manager whose
#: value receives the :class:`StudyEvents`, called by a backend once it has opened the study.
Progress = Callable[[Any, Any, int], AbstractContextManager[StudyEvents]]


class _Silent:
    """Events nobody shows."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def running(self, number: int, epoch: int, budget: int | None = None, value: float | None = None) -> None:
        return None

    def update(
        self, state: str, value: float | None = None, *, advance: bool = True, number: int | None = None
    ) -> None:
        return None

    def note(self, message: str) -> None:
        return None


def silent(study: Any, opts: Any, n_trials: int) -> AbstractContextManager[StudyEvents]:
    """The :data:`Progress` of a run that shows nothing."""
    return _Silent()


@dataclass(frozen=True)
class Resume:
    """Where a paused or cloned trial goes on from.

    Attributes:
        folder: A folder that a reporter's ``checkpoint(folder)`` wrote.
        reapply_config: The config was changed since the checkpoint was taken (PBT mutated it):
            training hyperparameters (lr, momentum, weight decay) come from the config, not from
            the restored optimizer state.
    """

    folder: str
    reapply_config: bool = False

    @property
    def checkpoint(self) -> str:
        """The training-state file in :attr:`folder` (the folder itself when no such file exists)."""
        path = os.path.join(self.folder, CHECKPOINT_FILE)
        return path if os.path.exists(path) else self.folder


@dataclass
class TrialOutcome:
    """How one trial ended.

    Attributes:
        metrics: Final validation metrics (every logged one) plus ``n_params`` when known.
        best: The metrics of the epoch where the monitored metric was best.
        epochs: The epoch the trial stopped at (1-based).
        best_epoch: The epoch of ``best``.
        pruned: Stopped by the pruner/scheduler.
        early_stopped: Stopped by within-trial early stopping.
        extra: More trial attributes to record (JSON values).
    """

    metrics: dict[str, float]
    best: dict[str, float]
    epochs: int
    best_epoch: int
    pruned: bool = False
    early_stopped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Objective(Protocol):
    """What every backend runs for one trial.

    ``objective(config, reporter)`` trains ``config``, calls ``reporter.report`` once per epoch and
    returns the :class:`TrialOutcome`. A backend that pauses trials (Ray's schedulers, PBT) calls it
    again with ``resume=`` to go on from a checkpoint the objective wrote through the reporter; a
    backend passes ``resume`` only then, so an objective that never writes checkpoints may leave it out.
    """

    def __call__(
        self, config: dict[str, Scalar], reporter: Reporter, *, resume: Resume | None = None
    ) -> TrialOutcome: ...


def objective_values(outcome: TrialOutcome, metrics: list[str]) -> list[float]:
    """The objective values of a trial: each metric at the best epoch of the first one.

    The best epoch (not the last) is used because within-trial early stopping runs ``patience``
    epochs past the best one; the same rule holds for every backend.

    Raises:
        MetricNotFoundError: A metric is in neither the best nor the final metrics.
    """
    out = []
    for m in metrics:
        if m in outcome.best:
            out.append(float(outcome.best[m]))
        elif m in outcome.metrics:
            out.append(float(outcome.metrics[m]))
        else:
            raise MetricNotFoundError(m, list(outcome.metrics))
    return out


def finite_objective_values(outcome: TrialOutcome, metrics: list[str]) -> list[float]:
    """:func:`objective_values`, refusing NaN and infinities (the trial then fails, on every backend).

    Raises:
        FloatingPointError: An objective value is not finite.
    """
    values = objective_values(outcome, metrics)
    for m, v in zip(metrics, values):
        if not math.isfinite(v):
            raise FloatingPointError(f"metric {m!r} is {v}")
    return values


def best_epoch(history: Mapping[int, Mapping[str, float]], metric: str, mode: str) -> int | None:
    """The trial's best epoch: the first epoch with the best finite value of ``metric`` (None: none).

    Example:
        >>> best_epoch({1: {"loss": 0.5}, 2: {"loss": 0.3}, 3: {"loss": 0.3}}, "loss", "min")
        2
    """
    sign = 1.0 if mode == "min" else -1.0
    epochs = [e for e in sorted(history) if metric in history[e] and not math.isnan(history[e][metric])]
    return min(epochs, key=lambda e: sign * history[e][metric]) if epochs else None


def objective_epoch(history: Mapping[int, Mapping[str, float]], metric: str, mode: str, rule: str) -> int | None:
    """The epoch whose metrics are the trial's value (and whose weights are kept).

    ``best_epoch`` (the default rule): the best epoch, since within-trial early stopping trains
    ``patience`` epochs past it, and those are the weights worth keeping. ``last_epoch``: the last
    epoch trained, for metrics that only mean something at the end (e.g. with an LR schedule).
    """
    if rule == "last_epoch":
        return max(history) if history else None
    return best_epoch(history, metric, mode)


def declared_rule(objective: object) -> str:
    """The rule ``objective`` trains by: a ``LightningObjective``'s ``settings.objective``, else ``best_epoch``."""
    rule = getattr(getattr(objective, "settings", None), "objective", None)
    return rule if isinstance(rule, str) else "best_epoch"


def over_whole_history(
    outcome: TrialOutcome, history: Mapping[int, Mapping[str, float]], metric: str, mode: str, rule: str
) -> TrialOutcome:
    """``outcome`` with its objective epoch chosen by ``rule`` over every epoch of ``history`` it trained up to.

    A trial that went on from a checkpoint (Ray's pause and resume, PBT, a resume point after a preemption)
    runs an objective that sees only the epochs it trains itself: a plain objective's outcome then names the
    best of those. Its reporter's ``history`` holds the epochs before the resume as well, and the trial's
    value is the same rule's choice over all of them. An outcome already chosen over them (a Lightning
    trial's :class:`~tunebridge.backends._epoch.TrialEpochs`) comes back unchanged.
    """
    seen = {e: m for e, m in history.items() if e <= outcome.epochs}
    chosen = objective_epoch(seen, metric, mode, rule)
    if chosen is None or chosen == outcome.best_epoch:
        return outcome
    extra = {k: v for k, v in outcome.best.items() if k not in seen[chosen]}  # e.g. n_params
    return replace(outcome, best={**seen[chosen], **extra}, best_epoch=chosen)


def trial_label(reporter: object, config: Mapping[str, Any]) -> str:
    """A file-name-safe name for a trial: its reporter's ``label`` (``trial_7``), else one from the config."""
    label = getattr(reporter, "label", None)
    if isinstance(label, str) and label:
        return label
    import hashlib
    import json

    return "config_" + hashlib.sha1(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()[:12]


def checkpoint_path(folder: str, label: str) -> str:
    """Where the kept weights of the trial ``label`` live in ``folder``."""
    return os.path.join(folder, f"{label}.ckpt")


def check_epoch_metrics(epoch: int, metrics: Mapping[str, float], metric: str) -> None:
    """The rule for one epoch's validation metrics.

    Raises:
        MetricNotFoundError: ``metric`` is not logged (lists those that are).
        NonFiniteMetricError: ``metric`` or any loss is NaN or infinite.
    """
    if metric not in metrics:
        raise MetricNotFoundError(metric, list(metrics))
    for key, value in metrics.items():
        if (key == metric or "loss" in key) and not math.isfinite(value):
            raise NonFiniteMetricError(f"metric {key!r} is {value} at epoch {epoch}")


def trial_epochs(config: Mapping[str, Any], max_epochs: int) -> int:
    """A trial's epoch budget: the run's ``max_epochs``, or fewer when the config has an ``epochs`` value.

    Example:
        >>> trial_epochs({"epochs": 5}, 20), trial_epochs({"epochs": 50}, 20), trial_epochs({}, 20)
        (5, 20, 20)
    """
    return min(int(config.get("epochs", max_epochs)), max_epochs)


def may_prune(epoch: int, budget: int | None) -> bool:
    """A trial may be pruned at ``epoch`` unless it has trained the whole budget.

    A trial that trained its last epoch is complete, whatever the pruner says (Optuna's successive
    halving would otherwise prune it at the top rung).
    """
    return budget is None or epoch < budget


def is_better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` beats ``best`` (None: nothing yet) in ``mode``; NaN never does."""
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def best_of(values: Iterable[float | None], mode: str) -> float | None:
    """The best finite value of ``values`` in ``mode`` (None when there is none)."""
    best: float | None = None
    for v in values:
        if v is not None and is_better(v, best, mode):
            best = v
    return best
