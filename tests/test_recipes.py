"""Every recipe runs as a user would run it, with smaller trial counts (issue: "executed by the tests")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from tunebridge.cli import app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def test_the_four_recipes_exist() -> None:
    assert sorted(p.name for p in RECIPES.iterdir() if p.suffix in (".yaml", ".py")) == [
        "custom_module.py",
        "digits_cnn.yaml",
        "digits_mlp.yaml",
        "grid_vs_random_vs_tpe.py",
    ]


@pytest.mark.parametrize(("recipe", "trials"), [("digits_mlp.yaml", 3), ("digits_cnn.yaml", 2)])
def test_spec_recipe_runs_through_the_cli(
    recipe: str, trials: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["run", str(RECIPES / recipe), "--trials", str(trials), "--no-progress"])
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    study_name = yaml.safe_load((RECIPES / recipe).read_text())["study"]
    out = tmp_path / "tunebridge-runs" / study_name
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["study"] == study_name and best["config"]
    study = optuna.load_study(study_name=study_name, storage="sqlite:///tunebridge-runs/tunebridge.db")
    states = [t.state for t in study.trials]
    assert len(states) == trials and TrialState.FAIL not in states
    assert TrialState.COMPLETE in states
    assert 0 < best["value"] <= 1  # val_acc


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("custom_module.py", ["--trials", "3"], ["best val_loss:", "best config:"]),
        (
            "grid_vs_random_vs_tpe.py",
            ["--trials", "3", "--epochs", "2"],
            ["grid size: 36 configs", "  grid: best val_acc", "random: best val_acc", "   tpe: best val_acc"],
        ),
    ],
)
def test_script_recipe_runs(script: str, args: list[str], expected: list[str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, str(RECIPES / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stdout, proc.stdout
    assert "GPU available" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # the Python API keeps studies in memory by default
