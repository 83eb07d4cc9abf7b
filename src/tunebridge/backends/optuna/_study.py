"""Opening a study and running trials with ask/tell: failures isolated, budget shared by all workers."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge._progress import StudyProgress
from tunebridge.backends._base import Objective, TrialOutcome, objective_values
from tunebridge.backends.optuna._compile import check_convertible, decode, encode, suggest
from tunebridge.backends.optuna._factories import make_pruner, make_sampler, make_storage
from tunebridge.errors import SpecMismatchError, TrialTimeoutError
from tunebridge.schema import PruningSpec, Scalar, Space

__all__ = ["OptunaReporter", "StudyOptions", "count_finished", "enqueue_grid", "open_study", "run_trials", "trial_config"]

TRACEBACK_LIMIT = 8000
ATTR_CONFIG = "config"


@dataclass
class StudyOptions:
    """Everything needed to open (or resume) a study, in tunebridge's vocabulary."""

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
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    max_retry: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def directions(self) -> list[str]:
        return ["minimize" if m == "min" else "maximize" for m in self.modes]


def open_study(opts: StudyOptions) -> optuna.Study:
    """Create or load the study ``opts.study`` in ``opts.storage``; resume = same name + same storage.

    Raises:
        ConversionError: The space or options cannot be expressed in Optuna (before any trial runs).
        SpecMismatchError: The stored study was started from a different spec (unless ``force``).
    """
    check_convertible(opts.space)
    n_obj = len(opts.metrics)
    sampler = make_sampler(opts.search, seed=opts.seed, space=opts.space, n_objectives=n_obj)
    pruner = make_pruner(opts.pruning, max_epochs=opts.max_epochs, n_objectives=n_obj)
    storage = make_storage(opts.storage, heartbeat_interval=opts.heartbeat_interval,
                           grace_period=opts.grace_period, max_retry=opts.max_retry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=opts.study,
                                directions=opts.directions, load_if_exists=True)
    stored = study.user_attrs.get("spec_hash")
    if stored is None:
        record = {"spec_hash": opts.spec_hash, "space": opts.space.to_dict(), "metrics": opts.metrics,
                  "modes": opts.modes, "search": opts.search, "seed": opts.seed, **opts.attrs}
        for key, value in record.items():
            study.set_user_attr(key, value)
        if opts.search == "grid":
            enqueue_grid(study, opts.space)
    elif opts.spec_hash is not None and stored != opts.spec_hash and not opts.force:
        raise SpecMismatchError(
            f"study {study.study_name!r} in this storage was started from a different spec "
            f"(stored hash {stored[:12]}, this spec {opts.spec_hash[:12]}): resuming would mix two experiments. "
            "Use another --study name, or pass --force to resume anyway."
        )
    return study


def enqueue_grid(study: optuna.Study, space: Space) -> int:
    """Put every grid config in the study's queue once; workers then claim them atomically via ``ask``."""
    configs = space.grid()
    for i, cfg in enumerate(configs):
        study.enqueue_trial(encode(space, cfg), user_attrs={"grid_index": i})
    study.set_user_attr("grid_size", len(configs))
    return len(configs)


def trial_config(space: Space, trial: optuna.trial.FrozenTrial) -> dict[str, Scalar]:
    """The config a finished trial ran with (values, not Optuna indices)."""
    if ATTR_CONFIG in trial.user_attrs:
        return dict(trial.user_attrs[ATTR_CONFIG])
    return decode(space, trial.params)


def count_finished(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards the budget: complete, pruned, and failed ones that were not retried."""
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    n = 0
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and t.number not in retried and not t.user_attrs.get("requeued"):
            n += 1
    return n


class OptunaReporter:
    """Reports the monitored metric once per epoch to an Optuna trial and asks its pruner."""

    def __init__(self, trial: optuna.Trial, metric: str, n_objectives: int) -> None:
        self.trial = trial
        self.metric = metric
        self.n_objectives = n_objectives
        self.last_epoch = 0

    def report(self, epoch: int, metrics: Mapping[str, float], checkpoint: Callable[[str], None] | None = None) -> bool:
        if self.n_objectives > 1 or epoch <= self.last_epoch:
            # Optuna cannot report multi-objective values, and one value per step: a second
            # validation within the same epoch (val_check_interval < 1) is not reported again.
            return False
        self.last_epoch = epoch
        self.trial.report(float(metrics[self.metric]), step=epoch)
        return bool(self.trial.should_prune())


def _record_outcome(trial: optuna.Trial, outcome: TrialOutcome) -> None:
    trial.set_user_attr("epochs", outcome.epochs)
    trial.set_user_attr("best_epoch", outcome.best_epoch)
    trial.set_user_attr("early_stopped", outcome.early_stopped)
    for key, value in outcome.metrics.items():
        trial.set_user_attr(f"final_{key}", value if math.isfinite(value) else str(value))
    for key, value in outcome.extra.items():
        trial.set_user_attr(key, value)


def _fail(study: optuna.Study, trial: optuna.Trial, exc: BaseException) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    trial.set_user_attr("fail_reason", reason[:2000])
    trial.set_user_attr("traceback", "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:])
    study.tell(trial, state=TrialState.FAIL)


class _Heartbeat:
    """Keeps a running trial's ``heartbeat`` attribute fresh (journal storages have no Optuna heartbeat)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float | None) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.study, self.trial = study, trial

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self._beat()
            self._thread = threading.Thread(target=self._run, daemon=True, name="tunebridge-heartbeat")
            self._thread.start()
        return self

    def _beat(self) -> None:
        self.study._storage.set_trial_system_attr(self.trial._trial_id, "tb_heartbeat", time.time())

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # a finished trial refuses writes; the loop ends right after
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def run_trials(study: optuna.Study, opts: StudyOptions, objective: Objective, *, n_trials: int,
               progress: bool = True, stop: threading.Event | None = None,
               on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
               heartbeat: float | None = None, poll: float = 0.5, trial_timeout: float | None = None) -> None:
    """Run trials until ``n_trials`` have finished in the whole study (every worker counts).

    A trial whose objective raises is marked FAIL with its reason and traceback as attributes, and
    the loop goes on. Ctrl-C marks the running trial FAIL, re-queues its config, and re-raises.
    """
    metric = opts.metrics[0]
    mode = opts.modes[0] if len(opts.metrics) == 1 else None
    done = count_finished(study.get_trials(deepcopy=False))
    with StudyProgress(n_trials, mode=mode, enabled=progress, done=min(done, n_trials)) as bar:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if len(opts.metrics) == 1 and t.value is not None:
                bar.best = t.value if bar.best is None else (min if mode == "min" else max)(bar.best, t.value)
        while stop is None or not stop.is_set():
            trials = study.get_trials(deepcopy=False)
            done = count_finished(trials)
            if done >= n_trials:
                return
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if not waiting and done + running >= n_trials:
                # Others hold the remaining trials; wait in case one dies and its trial is re-queued.
                _fail_stale(study, heartbeat)
                if opts.search == "grid" and not running:
                    return
                time.sleep(poll)
                continue
            if opts.search == "grid" and not waiting:
                return  # the grid is exhausted
            state, value = _run_one(study, opts, objective, metric, heartbeat, trial_timeout)
            if state is not None:
                bar.update(state, value)
            if on_trial is not None:
                on_trial(study.get_trials(deepcopy=False)[-1])


def _fail_stale(study: optuna.Study, heartbeat: float | None) -> None:
    """Fail running trials whose tunebridge heartbeat is older than 3 intervals, re-queueing their config."""
    if not heartbeat:
        return
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get("tb_heartbeat")
        if beat is not None and now - float(beat) > 3 * heartbeat:
            try:
                study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "worker stopped sending heartbeats")
                study._storage.set_trial_user_attr(t._trial_id, "requeued", True)
                if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number,
                                                                    **_keep(t.user_attrs, "grid_index")})
            except Exception:  # noqa: S112 - another worker failed it first
                continue


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeoutError` in the main thread once ``seconds`` have passed.

    A timer signal interrupts Python code (a training loop, a hung data loader in Python) wherever
    it is; Lightning tears the trainer down and re-raises, so the trial is failed cleanly.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TrialTimeoutError(f"the trial ran past trial_timeout={seconds:g} s and was stopped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _keep(attrs: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: attrs[k] for k in keys if k in attrs}


def _run_one(study: optuna.Study, opts: StudyOptions, objective: Objective, metric: str,
             heartbeat: float | None, trial_timeout: float | None) -> tuple[str | None, float | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        trial = study.ask()
    try:
        config = suggest(trial, opts.space)
    except Exception as exc:  # e.g. an enqueued config that no longer fits the space
        _fail(study, trial, exc)
        return "failed", None
    trial.set_user_attr(ATTR_CONFIG, json.loads(json.dumps(config)))
    reporter = OptunaReporter(trial, metric, len(opts.metrics))
    try:
        with _Heartbeat(study, trial, heartbeat), _deadline(trial_timeout):
            outcome = objective(config, reporter)
            _record_outcome(trial, outcome)
            if outcome.pruned:
                study.tell(trial, state=TrialState.PRUNED)
                return "pruned", None
            values = objective_values(outcome, opts.metrics)
            bad = [m for m, v in zip(opts.metrics, values) if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"metric {bad[0]!r} is {values[opts.metrics.index(bad[0])]}")
            study.tell(trial, values if len(values) > 1 else values[0])
            return "complete", values[0]
    except (KeyboardInterrupt, SystemExit) as exc:
        trial.set_user_attr("requeued", True)
        _fail(study, trial, KeyboardInterrupt(f"interrupted ({type(exc).__name__}); the config was re-queued"))
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number,
                                                            **_keep(trial.user_attrs, "grid_index")})
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise
    except Exception as exc:
        _fail(study, trial, exc)
        return "failed", None
