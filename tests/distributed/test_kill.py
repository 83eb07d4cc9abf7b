"""Many workers, one study: a worker SIGKILLed mid-trial loses nothing and duplicates nothing.

Real PostgreSQL, Redis and journal-file storages; each worker is a separate process running
tunebridge's trial loop with a cheap objective (tests/distributed/_worker.py).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunebridge._record import bookkeeping
from tunebridge.backends.optuna import WorkerOptions, make_storage

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]
WORKER = Path(__file__).with_name("_worker.py")


def _start(storage: str, study: str, n_trials: int, search: str, n_workers: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, str(WORKER), storage, study, str(n_trials), search, "0.15"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_workers)
    ]


def _wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the workers")


def _kill_one_mid_trial(storage: str, study_name: str, workers: list[subprocess.Popen[str]]) -> tuple[int, int]:
    """SIGKILL the worker that holds a running trial once a few trials are done; return (pid, trial number)."""
    store = make_storage(storage)
    victim: dict[str, int] = {}

    def a_worker_is_mid_trial() -> bool:
        try:
            study = optuna.load_study(study_name=study_name, storage=store)
        except KeyError:
            return False
        trials = study.get_trials(deepcopy=False)
        if sum(t.state == TrialState.COMPLETE for t in trials) < 4:
            return False
        pids = {w.pid for w in workers}
        for t in trials:
            # Its config sampled too: a trial killed between its start and its first suggest has none to re-queue.
            if t.state == TrialState.RUNNING and t.params and bookkeeping(t, "worker") is not None:
                pid = int(bookkeeping(t, "worker").rsplit(":", 1)[1])
                if pid in pids:
                    victim.update(pid=pid, number=t.number)
                    return True
        return False

    def killed_mid_trial() -> bool:
        # Freeze the worker first, then check its trial is still running: a trial that finished between
        # the look and the kill would otherwise be taken for the killed one (a race seen on PostgreSQL).
        if not a_worker_is_mid_trial():
            return False
        os.kill(victim["pid"], signal.SIGSTOP)
        trial = optuna.load_study(study_name=study_name, storage=store).trials[victim["number"]]
        if trial.state == TrialState.RUNNING:
            os.kill(victim["pid"], signal.SIGKILL)
            return True
        os.kill(victim["pid"], signal.SIGCONT)
        return False

    _wait_for(killed_mid_trial, 150)
    return victim["pid"], victim["number"]


def _finish(workers: list[subprocess.Popen[str]], killed_pid: int) -> None:
    for w in workers:
        out, err = w.communicate(timeout=180)
        if w.pid != killed_pid:
            assert w.returncode == 0, err[-2000:]
            assert "done" in out


@pytest.mark.parametrize("backend", ["postgres", "redis", "journal"])
@pytest.mark.slow
def test_sigkilled_worker_trial_is_retried_and_budget_is_exact(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage = {
        "postgres": lambda: request.getfixturevalue("postgres_url"),
        "redis": lambda: request.getfixturevalue("redis_url"),
        "journal": lambda: f"journal://{tmp_path}/study.log",
    }[backend]()
    name = f"kill-{backend}-{uuid.uuid4().hex[:8]}"
    workers = _start(storage, name, 40, "tpe", 4)
    killed_pid, killed_number = _kill_one_mid_trial(storage, name, workers)
    _finish(workers, killed_pid)

    study = optuna.load_study(study_name=name, storage=make_storage(storage))
    trials = study.get_trials(deepcopy=False)
    states = collections.Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 40, states
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0
    killed = trials[killed_number]
    assert killed.state == TrialState.FAIL and bookkeeping(killed, "requeued") is True
    # The workers run on this host: the dead one is found at once, without waiting out its heartbeat.
    assert "is no longer running on this host" in killed.user_attrs["fail_reason"]
    retries = [t for t in trials if bookkeeping(t, "retry_of") == killed_number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    failed = [(t.number, t.user_attrs.get("fail_reason")) for t in trials if t.state == TrialState.FAIL]
    assert states[TrialState.FAIL] == 1, f"only the killed trial {killed_number} should fail: {failed}"


@pytest.mark.parametrize("backend", ["postgres", "redis"])
@pytest.mark.slow
def test_grid_across_workers_runs_each_point_exactly_once(backend: str, request: pytest.FixtureRequest) -> None:
    storage = request.getfixturevalue(f"{backend}_url")
    name = f"grid-{backend}-{uuid.uuid4().hex[:8]}"
    workers = _start(storage, name, 1000, "grid", 4)
    killed_pid, killed_number = _kill_one_mid_trial(storage, name, workers)
    _finish(workers, killed_pid)

    study = optuna.load_study(study_name=name, storage=make_storage(storage))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    per_point = collections.Counter(bookkeeping(t, "grid_index") for t in complete)
    grid_size = study.user_attrs["grid_size"]
    assert grid_size == 28
    missing = sorted(set(range(grid_size)) - set(per_point))
    seen = [
        (t.number, t.state.name, bookkeeping(t, "grid_index"), t.user_attrs.get("fail_reason"), dict(t.system_attrs))
        for t in study.get_trials(deepcopy=False)
        if bookkeeping(t, "grid_index") in missing or t.state != TrialState.COMPLETE
    ]
    assert not missing, f"every grid point ran: {missing} did not; trials: {seen}"
    assert set(per_point.values()) == {1}, "no grid point ran twice"
    configs = [str(sorted(t.user_attrs["config"].items())) for t in complete]
    assert len(set(configs)) == grid_size
    assert bookkeeping(study.get_trials(deepcopy=False)[killed_number], "requeued") is True


def test_a_joining_worker_follows_the_study_queue_not_its_own_budget(tmp_path: Path) -> None:
    from tunebridge.backends._base import TrialOutcome
    from tunebridge.backends.optuna import StudyOptions, open_study, run_trials
    from tunebridge.schema import Int, Space

    def objective(config: dict, reporter: object) -> TrialOutcome:
        return TrialOutcome(metrics={"y": config["x"]}, best={"y": config["x"]}, epochs=1, best_epoch=1)

    opts = StudyOptions(
        space=Space(x=Int(0, 9)),
        metrics=["y"],
        modes=["min"],
        search="random",
        storage=f"journal://{tmp_path}/q.log",
        study="q",
    )
    open_study(opts, n_trials=6)  # the creator fills the queue with six trials
    joiner = open_study(opts, n_trials=2)  # a worker started with a smaller --trials
    run_trials(joiner, opts, objective, n_trials=2, worker=WorkerOptions(join=True))
    assert sum(t.state == TrialState.COMPLETE for t in joiner.get_trials(deepcopy=False)) == 6
