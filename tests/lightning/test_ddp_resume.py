"""A DDP trial (2 ranks, CPU, gloo) writes resume points (rank 0 writes, every rank takes part in the save) and,
interrupted after epoch k and re-queued, goes on from epoch k + 1 on every rank: the study holds one whole curve,
the same as a DDP run never interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tunebridge import _record
from tunebridge.backends import Resume
from tunebridge.backends.optuna import make_storage
from tunebridge.lightning._ddp import TRIAL_ENV, follower_trial, trial_environment

PROJECT = Path(__file__).parent.parent / "user_project" / "my_project.py"
EPOCHS, K = 4, 2

SPEC = """\
study: {study}
builder: my_project:build
space:
  lr: {{type: choice, values: [0.2]}}
metric: val_loss
mode: min
search: grid
trials: 1
max_epochs: {epochs}
accelerator: cpu
trainer: {{devices: 2, strategy: ddp, limit_train_batches: 2, deterministic: true}}
threads: 1
callbacks: [interrupt:Interrupt]
keep_checkpoints: {keep}
"""

CALLBACK = """\
import os
import lightning.pytorch as pl


class Interrupt(pl.Callback):
    '''Logs every batch each rank trains; Ctrl-C on rank 0 at the end of epoch TB_INTERRUPT_AT.'''

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(os.environ["TB_EPOCH_LOG"], "a") as f:
            f.write(f"{trainer.global_rank} {trainer.current_epoch + 1}\\n")

    def on_validation_end(self, trainer, pl_module):  # after tunebridge's reporter wrote the epoch's point
        at = os.environ.get("TB_INTERRUPT_AT")
        if at and trainer.global_rank == 0 and trainer.current_epoch + 1 == int(at):
            raise KeyboardInterrupt
"""


def _start(folder: Path, study: str, keep: int, interrupt_at: int | None = None) -> subprocess.Popen[bytes]:
    """``tunebridge run`` of a one-trial DDP study; ``keep``: how many trials' weights it keeps."""
    folder.mkdir(exist_ok=True)
    (folder / "my_project.py").write_text(PROJECT.read_text())
    (folder / "interrupt.py").write_text(CALLBACK)
    spec = folder / "ddp.yaml"
    spec.write_text(SPEC.format(study=study, epochs=EPOCHS, keep=keep))
    env = {
        **os.environ,
        "TB_LIGHTNING": "lightning.pytorch",
        "OMP_NUM_THREADS": "1",
        "TB_EPOCH_LOG": str(folder / "epochs.log"),
        "PYTHONPATH": str(folder),
    }
    env.pop("TB_INTERRUPT_AT", None)
    if interrupt_at is not None:
        env["TB_INTERRUPT_AT"] = str(interrupt_at)
    storage = f"sqlite:///{folder}/ddp.db"
    command = [sys.executable, "-m", "tunebridge", "run", str(spec), "--storage", storage, "--no-progress"]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Its exit code and the end of its stderr."""
    err = proc.communicate(timeout=300)[1]
    return proc.returncode, err.decode()[-3000:]


def _trials(folder: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=make_storage(f"sqlite:///{folder}/ddp.db")).trials


def _batches(folder: Path) -> list[tuple[int, int]]:
    """(rank, epoch) of every batch trained, in order."""
    lines = (folder / "epochs.log").read_text().split("\n")
    return [(int(rank), int(epoch)) for rank, epoch in (line.split() for line in lines if line)]


def _curve(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]


@pytest.mark.slow
def test_an_interrupted_ddp_trial_goes_on_from_its_resume_point_on_every_rank(tmp_path: Path) -> None:
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    # Both at once: most of either run is starting processes. The run never interrupted keeps its weights (its
    # points link the epoch's kept weights when it is the best so far); the interrupted one keeps none, so each
    # of its points is a save that both ranks take part in.
    uninterrupted = _start(whole, "whole", keep=1)
    first = _start(stopped, "ddp", keep=0, interrupt_at=K)
    code, err = _finish(uninterrupted)
    assert code == 0, err
    (reference,) = _trials(whole, "whole")
    assert list(reference.intermediate_values) == list(range(1, EPOCHS + 1))
    assert Path(reference.user_attrs["checkpoint"]).is_file()  # its kept weights

    code, err = _finish(first)
    assert code != 0, err  # interrupted: the config is re-queued with its resume point
    (point,) = {Path(str(p)) for t in _trials(stopped, "ddp") if (p := _record.bookkeeping(t, _record.RESUME_POINT))}
    meta = json.loads((point / "resume.json").read_text())
    assert meta["epoch"] == K
    slot = point / meta["slot"]
    assert (slot / "checkpoint.ckpt").stat().st_size > 0  # written by rank 0 in the save both ranks took part in
    assert not (slot / "kept.ckpt").exists()

    code, err = _finish(_start(stopped, "ddp", keep=0))
    assert code == 0, err
    complete = [t for t in _trials(stopped, "ddp") if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 1
    (trial,) = complete
    assert _record.bookkeeping(trial, _record.RESUMED_AT) == K
    assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1))  # one whole curve in the study
    assert _curve(trial) == _curve(reference)  # exactly the curve of the run never interrupted

    # Every rank trained epochs 1..k, then (in the re-run) k+1.. from the point: no batch trained twice.
    trained = _batches(stopped)
    for rank in (0, 1):
        assert [e for r, e in trained if r == rank] == [e for e in range(1, EPOCHS + 1) for _ in range(2)], trained
    assert not any(point.parent.glob("trial_*")), "the resume points are gone once the trial completed"


def test_the_ranks_ddp_launches_learn_the_point_rank_0_goes_on_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRIAL_ENV, raising=False)
    with trial_environment({"lr": 0.2}, "trial_3", Resume("/runs/resume/trial_1")):
        monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's launcher gives rank 1
        follower = follower_trial()
    assert follower is not None
    config, reporter, resume = follower
    assert (config, reporter.label, resume) == ({"lr": 0.2}, "trial_3", Resume("/runs/resume/trial_1"))
    with trial_environment({"lr": 0.2}, "trial_3"):
        monkeypatch.setenv("LOCAL_RANK", "1")
        follower = follower_trial()
    assert follower is not None and follower[2] is None  # a trial from epoch 0
    assert TRIAL_ENV not in os.environ
