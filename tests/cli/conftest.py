"""Studies shared by the report and show tests: real runs of the CLI, made once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

DB = "tunebridge-runs/tunebridge.db"

MULTI = textwrap.dedent("""\
    study: tiny-multi
    model: mlp
    data: digits
    space:
      n_layers: {type: int, low: 1, high: 2}
      units: {type: choice, values: [16, 32], ordered: true, per_layer: n_layers}
      lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    metric: [val_loss, n_params]
    mode: [min, min]
    max_epochs: 1
    search: random
    trials: 5
    seed: 0
    threads: 1
    """)


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``tunebridge ARGS`` in a fresh process, as a user runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tunebridge", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def tb() -> Callable[..., subprocess.CompletedProcess[str]]:
    """:func:`cli`, for the test modules (conftest is not importable under --import-mode=importlib)."""
    return cli


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-trial run of the bundled ``digits_mlp`` recipe (TPE, ASHA pruning), plus one failed trial
    (as an interrupted worker leaves one), in a folder of its own: the working directory of the run."""
    folder = tmp_path_factory.mktemp("digits-run")
    ran = cli("run", "digits_mlp", "--no-progress", cwd=folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    study = optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{folder / DB}")
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "RuntimeError: out of memory"}))
    return folder


@pytest.fixture(scope="session")
def multi_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny two-objective study (val_loss and n_params, both minimized)."""
    folder = tmp_path_factory.mktemp("multi-run")
    (folder / "multi.yaml").write_text(MULTI)
    ran = cli("run", "multi.yaml", "--no-progress", cwd=folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return folder
