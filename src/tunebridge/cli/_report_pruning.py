"""What pruning and early stopping saved in a study: epochs trained against the budget the trials would
have had without them, and where each stopped trial stopped (the report's "What pruning saved")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunebridge import _record

__all__ = ["STOPS", "Savings", "savings"]

#: How a finished trial ended, in the order the report stacks them.
STOPS = ("pruned", "early stopped", "full budget", "other")


@dataclass
class Savings:
    """Epochs trained by a study's finished (complete and pruned) trials against their budget.

    Attributes:
        budget: Epochs one trial may train (the run's ``max_epochs``; the longest trial's for a study that
            does not record it).
        recorded: Whether :attr:`budget` is the run's own (False: inferred from the longest trial).
        trained: Epochs the finished trials trained.
        stopped_at: How each finished trial ended (:data:`STOPS`) -> the epoch it stopped at, per trial.
    """

    budget: int
    recorded: bool
    trained: int = 0
    stopped_at: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in STOPS})

    @property
    def trials(self) -> int:
        return sum(len(v) for v in self.stopped_at.values())

    @property
    def full(self) -> int:
        """Epochs the same trials would have trained with neither pruning nor early stopping."""
        return self.trials * self.budget

    @property
    def saved(self) -> float:
        """The share of :attr:`full` not trained (0..1)."""
        return 1.0 - self.trained / self.full if self.full else 0.0

    def text(self) -> str:
        """One sentence for the report."""
        if not self.trials:
            return "No trial has finished yet."
        n = {k: len(v) for k, v in self.stopped_at.items()}
        where = "" if self.recorded else " (the longest trial's; this study does not record its max_epochs)"
        return (
            f"{self.trials} finished trials trained {self.trained} epochs of the {self.full} they would have had "
            f"without pruning or early stopping ({self.budget} each{where}): {self.saved:.0%} saved. "
            f"{n['pruned']} pruned, {n['early stopped']} stopped early, {n['full budget']} ran the whole budget"
            + (f", {n['other']} ended otherwise." if n["other"] else ".")
        )


def savings(study: Any) -> Savings:
    """The savings of ``study``'s complete and pruned trials (failed and running ones are left out)."""
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    epochs = {t.number: _epochs(t) for t in finished}
    recorded = study.user_attrs.get(_record.BUDGET)
    budget = int(recorded) if isinstance(recorded, int) and recorded > 0 else max(epochs.values(), default=0)
    out = Savings(budget=budget, recorded=isinstance(recorded, int) and recorded > 0)
    for t in finished:
        e = epochs[t.number]
        out.trained += e
        if t.state == TrialState.PRUNED:
            kind = "pruned"
        elif t.user_attrs.get(_record.EARLY_STOPPED):
            kind = "early stopped"
        elif e >= budget:
            kind = "full budget"
        else:
            kind = "other"
        out.stopped_at[kind].append(e)
    return out


def _epochs(trial: Any) -> int:
    """Epochs a trial trained: its record, else its reported curve's last epoch."""
    epochs = trial.user_attrs.get(_record.EPOCHS)
    if isinstance(epochs, int | float) and epochs > 0:
        return int(epochs)
    return max(trial.intermediate_values, default=0)
