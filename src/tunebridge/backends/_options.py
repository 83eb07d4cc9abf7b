"""The study contract, the same for every backend and executor.

What a study is opened with (:class:`StudyOptions`), how a worker runs in it (:class:`WorkerOptions`) and
when it stops before its trial budget (:class:`StudyLimits`). Standard library and the schema only: a
backend translates these at its boundary.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from tunebridge._rules import check_finite, check_int
from tunebridge._search import CUSTOM_PREFIX, custom_name
from tunebridge.errors import SchemaError, show
from tunebridge.schema import PruningSpec, Space

__all__ = ["StudyLimits", "StudyOptions", "WorkerOptions"]


@dataclass
class StudyOptions:
    """Everything needed to open (or resume) a study, in tunebridge's vocabulary.

    Build it with :func:`tunebridge.api.study_options`, which validates the options and records the
    package versions and the backend (``attrs``) on the study, for ``tune()``, the CLI and workers alike.

    Attributes:
        search: A search algorithm's name; with ``sampler`` set, ``custom:<class name>`` (e.g.
            ``custom:TPESampler``), which is what the study records and what no branch on a name
            (``grid``, ``random``) matches.
        search_options: The named algorithm's options (``tunebridge._search.SEARCH_OPTIONS``).
        sampler: A user's own ``optuna.samplers.BaseSampler`` (either backend) or Ray Tune searcher
            (Ray backend); it replaces the named algorithm and is used as given (its own seed).
        scheduler: A user's own ``optuna.pruners.BasePruner`` (Optuna backend) or Ray Tune
            ``TrialScheduler`` (Ray backend); it replaces ``pruning``'s policy.
        enqueue: Configs evaluated first (``enqueue:``/``warm_start:``, validated by ``tune()``); they
            take the first places of the budget when the study is created.
    """

    space: Space
    metrics: list[str]
    modes: list[str]
    search: str = "tpe"
    seed: int | None = 0
    pruning: PruningSpec = field(default_factory=PruningSpec)
    max_epochs: int = 20
    storage: str | None = None
    study: str | None = None
    spec_hash: str | None = None
    force: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    search_options: dict[str, Any] = field(default_factory=dict)
    sampler: Any = None
    scheduler: Any = None
    enqueue: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # One name per user object, however the options were built, so the record never claims "tpe"
        # for a study that a user's own sampler searched.
        if self.sampler is not None:
            self.search, self.search_options = custom_name(self.sampler), {}
        elif isinstance(self.search, str) and self.search.startswith(CUSTOM_PREFIX):
            raise SchemaError(
                "a `custom:` search name stands for a user's sampler, which is missing",
                path="search",
                value=repr(self.search),
                fix="Pass the sampler object itself (StudyOptions(sampler=...), tune(search=...)).",
            )

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """Optuna's directions for the modes (``min`` -> ``minimize``)."""
        return ["minimize" if m == "min" else "maximize" for m in self.modes]


@dataclass(frozen=True)
class WorkerOptions:
    """How one process runs trials of a shared study.

    Attributes:
        stop: Set this event to stop after the running trial (``--drain``).
        trial_timeout: Seconds after which a trial is stopped and failed.
        heartbeat: Seconds between heartbeats of the running trial; None or 0 disables them (and
            with them the detection of this worker's death by the others).
        heartbeat_timeout: Seconds without a heartbeat after which a trial's worker counts as dead
            (default: 3 heartbeat intervals). Not to be confused with the pruning spec's
            ``grace_period``, which counts epochs.
        max_retry: How often one config is re-queued after its worker died (None: no limit).
        join: Join a study another process started and follow its queue; the budget is the one the
            study was created with (``tunebridge worker``). Otherwise this process owns the budget
            and tops the queue up to it (``tunebridge run``, a resume with a larger budget).
        poll: Seconds between looks at the queue while other workers hold the remaining trials.
        preempt_grace: Seconds between SIGTERM and the end this process gets (Slurm's
            ``--signal=B:TERM@N``, Kubernetes' ``terminationGracePeriodSeconds``): running trials finish
            their epoch if they can, write a resume point and are re-queued; after 80 % of it they are
            interrupted and go on from their last point. None: SIGTERM keeps its default (the process ends).
    """

    stop: threading.Event | None = None
    trial_timeout: float | None = None
    heartbeat: float | None = 10.0
    heartbeat_timeout: float | None = None
    max_retry: int | None = 3
    join: bool = False
    poll: float = 0.5
    preempt_grace: float | None = 20.0

    @property
    def dead_after(self) -> float:
        """Seconds without a heartbeat before a running trial counts as dead.

        Without a heartbeat of our own, others' heartbeats still count: 30 s is 3 default intervals.
        """
        return self.heartbeat_timeout if self.heartbeat_timeout is not None else 3 * (self.heartbeat or 10.0)

    @property
    def stopped(self) -> bool:
        """True once :attr:`stop` is set."""
        return self.stop is not None and self.stop.is_set()


@dataclass(frozen=True)
class StudyLimits:
    """Stop conditions besides the trial budget.

    Attributes:
        timeout: Seconds of wall time for this run (like Optuna's ``optimize(timeout=)``): no trial
            starts after it; the running one finishes.
        target: Stop once the best value reaches it (``<=`` for min, ``>=`` for max).
        patience_trials: Stop when the best value has not improved over this many finished trials.
    """

    timeout: float | None = None
    target: float | None = None
    patience_trials: int | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and (
            isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0
        ):
            raise SchemaError("`timeout` must be a number of seconds > 0", path="timeout", value=show(self.timeout))
        if self.target is not None:
            check_finite(self.target, path="stop.target")
        if self.patience_trials is not None:
            fix = "Stop after this many finished trials without improvement, e.g. patience_trials=20."
            check_int(self.patience_trials, 1, path="stop.patience_trials", fix=fix)

    @property
    def active(self) -> bool:
        """Whether any condition is set."""
        return self.timeout is not None or self.target is not None or self.patience_trials is not None
