"""Preemption-safe trials on PostgreSQL with real ``tunebridge worker`` processes: a worker SIGKILLed mid-trial
leaves a resume point, and the next worker goes on from its last epoch; SIGTERM is a preemption that
exits with the documented code within the grace period."""

from __future__ import annotations

import json
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

from tunebridge import _record
from tunebridge.backends import PREEMPTED_EXIT_CODE
from tunebridge.backends.optuna import make_storage

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]

EPOCHS = 10
SPEC = """
study: {study}
model: mlp
data: digits
space:
  n_layers: {{type: int, low: 1, high: 1}}
  units: {{type: choice, values: [32], per_layer: n_layers}}
  lr: {{type: float, low: 0.05, high: 0.05}}
  dropout: {{type: float, low: 0.2, high: 0.2}}
metric: val_loss
mode: min
max_epochs: {epochs}
search: random
trials: 1
seed: 0
threads: 1
trainer: {{deterministic: true}}
callbacks: [slow_epochs:Slow]
"""

CALLBACK = """
import os, time
import lightning.pytorch as pl


class Slow(pl.Callback):
    '''Slows every epoch down (so a test can kill mid-trial) and logs each epoch trained, with its pid.'''

    def on_train_epoch_end(self, trainer, pl_module):
        with open(os.environ["TB_EPOCH_LOG"], "a") as f:
            f.write(f"{os.getpid()} {trainer.current_epoch + 1}\\n")
        time.sleep(float(os.environ.get("TB_EPOCH_SLEEP", "0.6")))
"""


def _project(tmp_path: Path, study: str) -> Path:
    (tmp_path / "slow_epochs.py").write_text(CALLBACK)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(study=study, epochs=EPOCHS))
    return spec


def _worker(spec: Path, storage: str, log: Path, *extra: str, sleep: str = "0.6") -> subprocess.Popen[bytes]:
    env = {**os.environ, "TB_EPOCH_LOG": str(log), "TB_EPOCH_SLEEP": sleep, "PYTHONPATH": str(spec.parent)}
    cmd = [sys.executable, "-m", "tunebridge", "worker", str(spec), "--storage", storage, *extra]
    return subprocess.Popen(cmd, cwd=spec.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=make_storage(storage)).get_trials(deepcopy=False)
    except KeyError:
        return []


def _wait_for_point(folder: Path, epoch: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
    """Wait until some trial's resume point in ``folder`` is at ``epoch`` or later; returns its epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for meta in folder.glob("trial_*/resume.json"):
            try:
                reached = json.loads(meta.read_text())["epoch"]
            except (OSError, ValueError, KeyError):
                continue
            if reached >= epoch:
                return int(reached)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""  # type: ignore[union-attr]
        time.sleep(0.05)
    raise AssertionError(f"no resume point reached epoch {epoch} in {timeout} s")


def _curve(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]


def _uninterrupted(tmp_path: Path, storage: str) -> list[float]:
    study = f"whole-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "whole"
    folder.mkdir()
    spec = _project(folder, study)
    proc = _worker(spec, storage, folder / "epochs.log", sleep="0")
    assert proc.wait(timeout=240) == 0, proc.stdout.read().decode() if proc.stdout else ""  # type: ignore[union-attr]
    (trial,) = _trials(storage, study)
    return _curve(trial)


def test_a_sigkilled_trial_resumes_from_its_last_epoch_on_the_next_worker(postgres_url: str, tmp_path: Path) -> None:
    study = f"resume-{uuid.uuid4().hex[:8]}"
    spec = _project(tmp_path, study)
    log = tmp_path / "epochs.log"
    first = _worker(spec, postgres_url, log)
    k = _wait_for_point(tmp_path / "tunebridge-runs" / study / "resume", 3, first)
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = _worker(spec, postgres_url, log)  # same host: the dead PID is seen at once
    out = second.communicate(timeout=240)[0].decode()
    assert second.returncode == 0, out

    trials = _trials(postgres_url, study)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 1, [(t.number, t.state, t.system_attrs) for t in trials]
    (trial,) = done
    assert _record.bookkeeping(trial, _record.RESUMED_AT) >= k  # it went on from the dead worker's point
    assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1))  # one whole curve in the study
    assert _curve(trial) == _uninterrupted(tmp_path, postgres_url)  # the same values as never interrupted

    epochs = [tuple(map(int, line.split())) for line in log.read_text().split("\n") if line]
    pids = sorted({pid for pid, _ in epochs})
    trained = [e for _, e in epochs]
    assert len(pids) == 2 and sorted(set(trained)) == list(range(1, EPOCHS + 1))
    assert len(trained) - EPOCHS <= 1, trained  # at most the epoch the kill interrupted is trained twice
    assert not any((tmp_path / "tunebridge-runs" / study / "resume").glob("trial_*")), "points left behind"


def test_sigterm_is_a_preemption_exit_75_and_the_next_worker_resumes(postgres_url: str, tmp_path: Path) -> None:
    study = f"preempt-{uuid.uuid4().hex[:8]}"
    spec = _project(tmp_path, study)
    log = tmp_path / "epochs.log"
    first = _worker(spec, postgres_url, log)
    k = _wait_for_point(tmp_path / "tunebridge-runs" / study / "resume", 2, first)
    sent = time.monotonic()
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=60)[0].decode()
    assert first.returncode == PREEMPTED_EXIT_CODE, out
    assert time.monotonic() - sent < 20, "it must exit within the default grace of 20 s"
    assert "preempted" in out

    (left,) = _trials(postgres_url, study)[:1]
    assert left.state == TrialState.FAIL and _record.bookkeeping(left, _record.REQUEUED) is True

    second = _worker(spec, postgres_url, log)
    assert second.wait(timeout=240) == 0
    done = [t for t in _trials(postgres_url, study) if t.state == TrialState.COMPLETE]
    assert len(done) == 1 and sorted(done[0].intermediate_values) == list(range(1, EPOCHS + 1))
    assert _record.bookkeeping(done[0], _record.RESUMED_AT) >= k
    # Lightning stops at the next batch on SIGTERM: the epoch it was in is all that is trained again.
    trained = [int(line.split()[1]) for line in log.read_text().split("\n") if line]
    assert len(trained) - EPOCHS <= 1, log.read_text()
