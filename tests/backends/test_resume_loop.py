"""The study loop's resume points with a plain objective: one point per running trial, deleted when the trial
ends for good, kept (and carried to the re-queued trial) when it is interrupted, refused when it cannot be
trusted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from tunebridge import _record
from tunebridge.backends import CHECKPOINT_FILE, Resume, ResumeOptions, ResumePlan, ResumeWriter, TrialOutcome
from tunebridge.backends.optuna import StudyOptions, WorkerOptions, open_study, run_trials
from tunebridge.backends.optuna._attrs import write_attrs
from tunebridge.backends.optuna._internals import storage_of, trial_id_of
from tunebridge.backends.optuna._liveness import HEARTBEAT_ATTR, PID_NAMESPACE, PROCESS_ATTR
from tunebridge.backends.optuna._queue import claim
from tunebridge.backends.optuna._study import abandon_trial, start_trial
from tunebridge.schema import Float, Space

SPACE = Space(lr=Float(0.01, 0.1, log=True))
EPOCHS = 4


class Objective:
    """Trains ``EPOCHS`` epochs of a curve from its config; its state is the epoch it reached."""

    def __init__(self, interrupt_at: int | None = None, fail: bool = False, sleep: float = 0.0) -> None:
        self.interrupt_at, self.fail, self.sleep = interrupt_at, fail, sleep
        self.started: list[int] = []  # the first epoch each call trained

    def __call__(self, config: dict[str, Any], reporter: Any, *, resume: Resume | None = None) -> TrialOutcome:
        first = 1
        if resume is not None:
            first = int(Path(resume.checkpoint).read_text()) + 1
        self.started.append(first)
        value = 0.0
        for epoch in range(first, EPOCHS + 1):
            value = config["lr"] * epoch

            def save(folder: str, epoch: int = epoch) -> None:
                Path(folder, CHECKPOINT_FILE).write_text(str(epoch))

            time.sleep(self.sleep)
            reporter.report(epoch, {"score": value}, save)
            if epoch == self.interrupt_at:
                raise KeyboardInterrupt
        if self.fail:
            raise RuntimeError("a real failure")
        return TrialOutcome(metrics={"score": value}, best={"score": value}, epochs=EPOCHS, best_epoch=EPOCHS)


def _opts(tmp_path: Path) -> StudyOptions:
    return StudyOptions(
        space=SPACE, metrics=["score"], modes=["max"], search="random", seed=0,
        storage=f"sqlite:///{tmp_path}/s.db", study="loop", spec_hash="h",
    )  # fmt: skip


def _run(tmp_path: Path, objective: Callable[..., Any], n_trials: int = 1, **plan: Any) -> optuna.Study:
    opts = _opts(tmp_path)
    study = open_study(opts, n_trials=n_trials)
    resume = ResumePlan(str(tmp_path / "resume"), meta={"spec_hash": "h"}, **plan)
    run_trials(study, opts, objective, n_trials=n_trials, worker=WorkerOptions(heartbeat=None), resume=resume)
    return study


def _points(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "resume").glob("trial_*"))


def test_points_go_when_trials_end_and_stay_when_they_are_interrupted(tmp_path: Path) -> None:
    _run(tmp_path, Objective(), n_trials=2)
    assert _points(tmp_path) == []  # complete: gone

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, Objective(interrupt_at=2), n_trials=3)
    assert _points(tmp_path) == ["trial_2"]  # interrupted: kept for the trial that re-runs its config

    again = Objective()
    study = _run(tmp_path, again, n_trials=3)
    assert again.started == [3]  # it went on after epoch 2
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    resumed = [t for t in done if _record.bookkeeping(t, _record.RESUMED_AT) == 2]
    assert len(resumed) == 1 and sorted(resumed[0].intermediate_values) == [1, 2, 3, 4]  # one whole curve
    assert _points(tmp_path) == []


def test_a_failed_trial_leaves_no_point(tmp_path: Path) -> None:
    _run(tmp_path, Objective(fail=True))
    assert _points(tmp_path) == []


def test_a_point_from_another_spec_is_refused_and_the_trial_starts_over(tmp_path: Path, capfd: Any) -> None:
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, Objective(interrupt_at=2))
    meta = tmp_path / "resume" / "trial_0" / "resume.json"
    meta.write_text(meta.read_text().replace('"spec_hash": "h"', '"spec_hash": "other"'))
    again = Objective()
    study = _run(tmp_path, again)
    assert again.started == [1]
    (retry,) = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert "another spec_hash" in _record.bookkeeping(retry, _record.RESUME_REFUSED)
    assert "starts from epoch 0" in capfd.readouterr().err


def test_every_epochs_and_every_minutes_decide_when_a_point_is_written(tmp_path: Path) -> None:
    writer = ResumeWriter(str(tmp_path), "t", ResumeOptions(every_epochs=3))
    assert [writer.due(e) for e in (1, 2, 3)] == [False, False, True]
    by_time = ResumeWriter(str(tmp_path), "t", ResumeOptions(every_epochs=None, every_minutes=0.001))
    assert not by_time.due(1)
    time.sleep(0.07)
    assert by_time.due(1)
    assert not os.path.exists(tmp_path / "t")


@pytest.mark.slow
def test_a_dead_workers_trial_comes_back_while_the_queue_still_holds_others_and_resumes(tmp_path: Path) -> None:
    opts, plan = _opts(tmp_path), ResumePlan(str(tmp_path / "resume"), meta={"spec_hash": "h"})
    study = open_study(opts, n_trials=4)
    # A worker of this host claimed trial 0, wrote its point at epoch 2 and was SIGKILLed.
    trial = claim(study)
    assert trial is not None
    config = start_trial(study, trial, opts, WorkerOptions())
    assert config is not None
    writer = plan.writer("trial_0", config)
    writer.write(
        2, {e: {"score": config["lr"] * e} for e in (1, 2)}, lambda f: Path(f, CHECKPOINT_FILE).write_text("2")
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    system = {PROCESS_ATTR: [PID_NAMESPACE, gone.pid], HEARTBEAT_ATTR: time.time()}
    write_attrs(storage_of(study), trial_id_of(trial), {_record.RESUME_POINT: writer.folder}, system=system)

    objective = Objective(sleep=0.05)
    run_trials(study, opts, objective, n_trials=4, worker=WorkerOptions(heartbeat=0.1), resume=plan)

    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE"]
    # The dead worker's trial went on after its epoch 2, claimed ahead of the fresh trials still queued.
    assert objective.started == [1, 3, 1, 1]
    resumed = trials[4]
    assert resumed.params == trials[0].params and list(resumed.intermediate_values) == [1, 2, 3, 4]
    # Found between this worker's trials, not once the queue was empty: before the last fresh trial began.
    assert trials[0].datetime_complete is not None and trials[3].datetime_start is not None
    assert trials[0].datetime_complete < trials[3].datetime_start
    assert _points(tmp_path) == []


class Peaked(Objective):
    """A plain objective whose score peaks at epoch 1 and falls after it; its outcome names the best of the
    epochs *this call* trained (a plain objective does not know about the epochs before a resume)."""

    def __call__(self, config: dict[str, Any], reporter: Any, *, resume: Resume | None = None) -> TrialOutcome:
        first = int(Path(resume.checkpoint).read_text()) + 1 if resume is not None else 1
        self.started.append(first)
        own: dict[int, float] = {}
        for epoch in range(first, EPOCHS + 1):
            own[epoch] = 1.0 / epoch

            def save(folder: str, epoch: int = epoch) -> None:
                Path(folder, CHECKPOINT_FILE).write_text(str(epoch))

            reporter.report(epoch, {"score": own[epoch]}, save)
            if epoch == self.interrupt_at:
                raise KeyboardInterrupt
        best = max(own, key=own.__getitem__)
        return TrialOutcome(metrics={"score": own[EPOCHS]}, best={"score": own[best]}, epochs=EPOCHS, best_epoch=best)


def test_a_resumed_plain_objectives_value_is_chosen_over_the_epochs_before_the_resume_too(tmp_path: Path) -> None:
    # The same rule as a Ray trial resumed from a checkpoint (test_ray_run.py's HyperBand test): one home,
    # backends._base.over_whole_history, called by both loops.
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, Peaked(interrupt_at=2))
    again = Peaked()
    study = _run(tmp_path, again)
    assert again.started == [3]
    (trial,) = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert trial.value == 1.0 and trial.user_attrs[_record.BEST_EPOCH] == 1  # epoch 1, before the interruption


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory", "postgres", "redis"])
def test_re_queued_configs_are_claimed_before_the_fresh_ones(kind: str, tmp_path: Path, request: Any) -> None:
    urls = {"sqlite": f"sqlite:///{tmp_path}/q.db", "journal": str(tmp_path / "q.log"), "memory": None}
    url = urls[kind] if kind in urls else request.getfixturevalue(f"{kind}_url")
    opts = StudyOptions(
        space=SPACE, metrics=["score"], modes=["max"], search="random", seed=0, storage=url,
        study=f"order-{uuid.uuid4().hex[:8]}", spec_hash="h",
    )  # fmt: skip
    study = open_study(opts, n_trials=4)
    first = claim(study)
    assert first is not None and start_trial(study, first, opts, WorkerOptions()) is not None
    abandon_trial(study, first, KeyboardInterrupt())  # re-queued behind the 3 fresh trials still waiting
    order = []
    while (trial := claim(study)) is not None:
        order.append(_record.bookkeeping(storage_of(study).get_trial(trial_id_of(trial)), _record.RETRY_OF))
    assert order == [first.number, None, None, None]
