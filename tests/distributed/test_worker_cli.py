"""``tunebridge worker`` and ``tunebridge run --jobs``: real processes, real Lightning, real PostgreSQL."""

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
from tunebridge.backends import PREEMPTED_EXIT_CODE
from tunebridge.backends.optuna import make_storage

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]

SPEC = """
study: {study}
model: mlp
data: digits
space:
  n_layers: {{type: int, low: 1, high: 2}}
  units: {{type: choice, values: [16, 32], per_layer: n_layers}}
  lr: {{type: float, low: 0.001, high: 0.05, log: true}}
metric: val_acc
mode: max
max_epochs: {epochs}
search: random
trials: {trials}
seed: 0
threads: 1
"""


def _spec(tmp_path: Path, study: str, trials: int, epochs: int = 3) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(study=study, trials=trials, epochs=epochs))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunebridge", *args]


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=make_storage(storage)).get_trials(deepcopy=False)
    except KeyError:
        return []


def _wait_running(storage: str, study: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        running = [t for t in _trials(storage, study) if t.state == TrialState.RUNNING]
        # Wait until the config is sampled (the trial's params; its `config` attribute comes when it ends)
        # and Lightning is past its import and in its first epoch.
        if running and any(t.params for t in running):
            time.sleep(0.3)
            return running[0].number
        time.sleep(0.2)
    raise AssertionError("no trial started")


def test_sigterm_is_a_preemption_that_requeues_the_running_trial_then_a_rerun_finishes(
    tmp_path: Path, postgres_url: str
) -> None:
    study = f"term-{uuid.uuid4().hex[:8]}"
    spec = _spec(tmp_path, study, trials=2, epochs=30)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _cli("worker", str(spec), "--storage", postgres_url, "--heartbeat", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    number = _wait_running(postgres_url, study, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err.decode()[-2000:]  # schedulers retry on it
    interrupted = _trials(postgres_url, study)[number]
    assert interrupted.state == TrialState.FAIL
    assert bookkeeping(interrupted, "requeued") is True
    assert "interrupted" in interrupted.user_attrs["fail_reason"]

    # The same command again: the worker resumes and re-runs the re-queued config.
    done = subprocess.run(
        _cli("worker", str(spec), "--storage", postgres_url), capture_output=True, env=env, timeout=240
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    trials = _trials(postgres_url, study)
    states = collections.Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == 2 and states[TrialState.FAIL] == 1, states
    retry = [t for t in trials if bookkeeping(t, "retry_of") == number]
    assert len(retry) == 1 and retry[0].params == interrupted.params


def test_drain_lets_the_running_trial_finish(tmp_path: Path, postgres_url: str) -> None:
    study = f"drain-{uuid.uuid4().hex[:8]}"
    spec = _spec(tmp_path, study, trials=5, epochs=4)
    proc = subprocess.Popen(
        _cli("worker", str(spec), "--storage", postgres_url, "--drain"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    number = _wait_running(postgres_url, study, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"draining" in err
    trials = _trials(postgres_url, study)
    assert trials[number].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) < 5  # it stopped after that trial


def test_run_jobs_starts_processes_that_share_one_budget(tmp_path: Path) -> None:
    study = f"jobs-{uuid.uuid4().hex[:8]}"
    spec = _spec(tmp_path, study, trials=6, epochs=2)
    done = subprocess.run(
        _cli("run", str(spec), "--jobs", "2", "--no-progress"), capture_output=True, cwd=tmp_path, timeout=240
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    storage = f"journal://{tmp_path}/tunebridge-runs/{study}.journal.log"
    trials = _trials(storage, study)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert len({bookkeeping(t, "worker") for t in trials}) == 2, "two processes ran trials"
    assert (tmp_path / "tunebridge-runs" / study / "best.yaml").is_file()
    # The study was opened with the options tune() builds (one study_options()), so it records them.
    attrs = optuna.load_study(study_name=study, storage=make_storage(storage)).user_attrs
    assert attrs["backend"] == "optuna"
    assert {"python", "torch", "optuna", "lightning", "tunebridge"} <= set(attrs["versions"])
    assert attrs["versions"]["optuna"] == optuna.__version__
