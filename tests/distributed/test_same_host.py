"""A dead worker on this same host is detected at once, not after the heartbeat timeout.

A worker records which process runs a trial (its PID namespace and pid, with the first heartbeat).
Another worker of the same host (same PID namespace) that finds the process gone fails the trial
and re-queues its config at once; a worker elsewhere still waits for the heartbeat to go stale.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tunebridge._record import bookkeeping
from tunebridge.backends._base import Reporter, TrialOutcome
from tunebridge.backends.optuna import StudyOptions, WorkerOptions, fail_stale, make_storage, open_study, run_trials
from tunebridge.backends.optuna._liveness import HEARTBEAT_ATTR, PID_NAMESPACE, PROCESS_ATTR, waiting_for

pytestmark = pytest.mark.timeout(120)
WORKER = Path(__file__).with_name("_worker.py")
# Far longer than the test may take: only the same-host rule can fail the killed trial in time.
DEAD_AFTER = 600.0


def _worker_space() -> Any:
    spec = importlib.util.spec_from_file_location("_tb_distributed_worker", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SPACE


def objective(config: dict[str, Any], reporter: Reporter) -> TrialOutcome:
    value = config["n_layers"] + config["lr"]
    reporter.report(1, {"score": value})
    return TrialOutcome(metrics={"score": value}, best={"score": value}, epochs=1, best_epoch=1)


def _wait_for_running_trial(storage: str, name: str, pid: int) -> int:
    store = make_storage(storage)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            time.sleep(0.1)
            continue
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # Its config sampled too: the worker is recorded when a trial starts, before its config is
            # drawn, and a trial killed in between has no config to re-queue.
            if t.params and bookkeeping(t, "worker", "").endswith(f":{pid}"):
                return t.number
        time.sleep(0.1)
    raise AssertionError("the worker never started a trial")


@pytest.mark.slow
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_a_sigkilled_worker_on_this_host_is_failed_at_once_and_its_config_requeued(
    reaped: bool, tmp_path: Path
) -> None:
    storage, name = f"journal://{tmp_path}/study.log", f"same-host-{uuid.uuid4().hex[:8]}"
    # One worker, three trials of three 1-second epochs each, a heartbeat timeout of 10 minutes.
    args = [sys.executable, str(WORKER), storage, name, "3", "random", "1.0", str(DEAD_AFTER)]
    worker = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed = _wait_for_running_trial(storage, name, worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
        if reaped:
            worker.wait(timeout=30)
        # else: a zombie, like a `run --jobs` worker its busy parent has not reaped yet

        opts = StudyOptions(
            space=_worker_space(),
            metrics=["score"],
            modes=["max"],
            search="random",
            seed=0,
            storage=storage,
            study=name,
            spec_hash="distributed-test",
        )
        study = open_study(opts, n_trials=3)
        started = time.monotonic()
        rerun = WorkerOptions(heartbeat=0.5, heartbeat_timeout=DEAD_AFTER, join=True, poll=0.2)
        run_trials(study, opts, objective, n_trials=3, worker=rerun)
        elapsed = time.monotonic() - started
    finally:
        worker.kill()
        worker.communicate(timeout=30)

    assert elapsed < 30, f"the rerun waited {elapsed:.0f} s for a worker that is gone"
    trials = study.get_trials(deepcopy=False)
    dead = trials[killed]
    assert dead.state == TrialState.FAIL and bookkeeping(dead, "requeued") is True
    reason = dead.user_attrs["fail_reason"]
    assert f"is no longer running on this host (process {worker.pid} is gone)" in reason
    assert bookkeeping(dead, "worker") in reason
    retry = [t for t in trials if bookkeeping(t, "retry_of") == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == dead.params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []


def _running_trial(study: optuna.Study, process: list[Any] | None, beat_age: float) -> int:
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, "tb_worker", "somewhere:1")  # as the loop records it
    if process is not None:
        study._storage.set_trial_system_attr(trial._trial_id, PROCESS_ATTR, process)
    study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time() - beat_age)
    return trial.number


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    ("case", "beat_age", "failed", "reason"),
    [
        ("dead pid here", 1.0, True, "is no longer running on this host"),
        ("live pid here", 1.0, False, None),
        ("pid 1 (another user's, or init)", 1.0, False, None),  # PermissionError counts as alive
        ("dead pid, another PID namespace", 1.0, False, None),  # a container sharing the hostname
        ("dead pid, another PID namespace, stale heartbeat", 60.0, True, "stopped sending heartbeats for over 30 s"),
        ("live pid here, stale heartbeat", 60.0, True, "stopped sending heartbeats"),  # hung: the heartbeat rules
        ("no process record (older trial)", 1.0, False, None),
    ],
)
def test_fail_stale_looks_up_only_processes_of_its_own_pid_namespace(
    case: str, beat_age: float, failed: bool, reason: str | None
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = {
            "dead pid here": [PID_NAMESPACE, _dead_pid()],
            "live pid here": [PID_NAMESPACE, sleeper.pid],
            "pid 1 (another user's, or init)": [PID_NAMESPACE, 1],
            "dead pid, another PID namespace": ["other-host/boot/4026531836", _dead_pid()],
            "dead pid, another PID namespace, stale heartbeat": ["other-host/boot/4026531836", _dead_pid()],
            "live pid here, stale heartbeat": [PID_NAMESPACE, sleeper.pid],
            "no process record (older trial)": None,
        }[case]
        study = optuna.create_study()
        number = _running_trial(study, process, beat_age)
        assert fail_stale(study, 30.0, max_retry=3) == int(failed)
    finally:
        sleeper.kill()
        sleeper.wait()
    trial = study.get_trials(deepcopy=False)[number]
    assert (trial.state == TrialState.FAIL) is failed
    if reason is not None:
        assert reason in trial.user_attrs["fail_reason"]


def test_waiting_for_says_which_trial_and_when_it_counts_as_dead() -> None:
    study = optuna.create_study()
    assert waiting_for(study, 30.0) is None  # nothing running: nothing to wait for
    study.ask()  # running without a heartbeat: nobody announced it, so nobody is waited for
    assert waiting_for(study, 30.0) is None
    number = _running_trial(study, None, 12.2)
    assert waiting_for(study, 30.0) == (
        f"trial {number} on somewhere:1, last heartbeat 12 s ago; it counts as dead after 30 s"
    )
    _running_trial(study, None, 3.0)
    assert waiting_for(study, 30.0) == (
        f"2 trials running elsewhere; the stalest: trial {number} on somewhere:1, last heartbeat 12 s ago; "
        "it counts as dead after 30 s"
    )
