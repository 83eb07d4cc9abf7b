"""A trial on two devices with DDP (CPU, gloo): rank 0 reports, a pruned trial stops on every rank."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from tunebridge.backends.optuna import make_storage

PROJECT = Path(__file__).parent.parent / "user_project" / "my_project.py"


@pytest.mark.slow
def test_a_ddp_trial_is_pruned_cleanly_and_the_next_trial_runs(tmp_path: Path) -> None:
    (tmp_path / "my_project.py").write_text(PROJECT.read_text())
    spec = tmp_path / "ddp.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            study: ddp
            builder: my_project:build
            space:
              lr: {type: choice, values: [0.2, 0.0]}   # the grid runs lr 0.2, then lr 0 (a flat curve)
            metric: val_loss
            mode: min
            search: grid
            trials: 2
            max_epochs: 5
            pruner: {policy: asha, grace_period: 1, reduction_factor: 2}
            accelerator: cpu
            trainer: {devices: 2, strategy: ddp, limit_train_batches: 2}
            threads: 1
            """
        )
    )
    storage = f"sqlite:///{tmp_path}/ddp.db"
    env = {**os.environ, "TB_LIGHTNING": "lightning.pytorch", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tunebridge", "run", str(spec), "--storage", storage, "--no-progress"],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    study = optuna.load_study(study_name="ddp", storage=make_storage(storage))
    by_lr = {t.user_attrs["config"]["lr"]: t for t in study.trials}
    flat, learning = by_lr[0.0], by_lr[0.2]
    assert flat.state == optuna.trial.TrialState.PRUNED
    # ASHA stops it at its first rung (worse than lr 0.2 there): one report per epoch, from rank 0 only
    assert flat.user_attrs["epochs"] == 1 and list(flat.intermediate_values) == [1]
    assert learning.state == optuna.trial.TrialState.COMPLETE
    assert list(learning.intermediate_values) == [1, 2, 3, 4, 5]
    assert len(study.trials) == 2  # the ranks Lightning launched joined the trial, not the study
