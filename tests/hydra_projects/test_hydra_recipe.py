"""The hydra recipe as a user runs it (issue 19): `tunebridge run` from a folder outside the clone tunes with
pruning on Optuna, in local workers and on Ray; the printed best command trains the best config with the
recipe's own train.py, and Hydra reads back the same overrides."""

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

pytest.importorskip("hydra")

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "hydra"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250", "PYTHONWARNINGS": "ignore"}


def _tunebridge(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tunebridge", *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=_env()
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _states(study: str, cwd: Path) -> list[TrialState]:
    storage = f"sqlite:///{cwd / 'tunebridge-runs' / 'tunebridge.db'}"
    return [t.state for t in optuna.load_study(study_name=study, storage=storage).trials]


@pytest.mark.slow
def test_the_recipe_tunes_with_pruning_and_its_best_command_trains_with_train_py(tmp_path: Path) -> None:
    out = _tunebridge(
        "run", str(RECIPE / "spec.yaml"), "--trials", "6", "--threads", "1", "--no-progress", cwd=tmp_path
    )
    states = _states("hydra-digits", tmp_path)
    assert len(states) == 6 and TrialState.FAIL not in states
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states  # what the sweeper cannot do
    run = tmp_path / "tunebridge-runs" / "hydra-digits"
    best = yaml.safe_load((run / "best.yaml").read_text())
    overrides = yaml.safe_load((run / "best_overrides.yaml").read_text())
    values = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in overrides)}
    assert {k: values[k] for k in best["config"]} == pytest.approx(best["config"])
    assert values["trainer.max_epochs"] == 10 and isinstance(values["seed"], int)
    command = (run / "best_command.sh").read_text().splitlines()[-1]
    assert command == f"python {RECIPE / 'train.py'} {' '.join(overrides)}"
    assert "best command" in out and f"python {RECIPE / 'train.py'} model.optimizer.lr=" in out  # in the summary
    assert json_record(run)["best_command"] == command

    # The user's own entry point trains it (one epoch), and Hydra read back exactly these overrides.
    short = [o if not o.startswith("trainer.max_epochs=") else "trainer.max_epochs=1" for o in overrides]
    proc = subprocess.run(
        [sys.executable, str(RECIPE / "train.py"), *short],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in proc.stdout + proc.stderr
    (written,) = (tmp_path / "logs" / "train" / "runs").glob("*/.hydra/overrides.yaml")
    assert yaml.safe_load(written.read_text()) == short
    config = yaml.safe_load((written.parent / "config.yaml").read_text())
    assert config["model"]["net"]["lin1_size"] == best["config"]["model.net.lin1_size"]

    # load_best in another process and folder: the template module leaves its net out of save_hyperparameters,
    # so the project's config (composed with the best values) builds it, and the kept weights go in.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = (
        "import sys, torch, tunebridge.results as r\n"
        "m = r.load_best(sys.argv[1])\n"
        "kept = torch.load(sys.argv[2], weights_only=False)['state_dict']\n"
        "assert kept.keys() == m.state_dict().keys()\n"
        "assert all(torch.equal(v, m.state_dict()[k]) for k, v in kept.items())\n"
        "print(type(m).__name__, m.net.model[0].out_features)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check, str(run / "best.yaml"), best["checkpoint"]],
        capture_output=True, text=True, timeout=300, cwd=elsewhere, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.split() == ["DigitsLitModule", str(best["config"]["model.net.lin1_size"])]


def json_record(run: Path) -> dict[str, object]:
    import json

    record: dict[str, object] = json.loads((run / "record.json").read_text())
    return record


@pytest.mark.slow
def test_the_recipe_runs_in_local_workers(tmp_path: Path) -> None:
    _tunebridge(
        "run",
        str(RECIPE / "spec.yaml"),
        "--trials",
        "4",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--no-progress",
        "--study",
        "hydra-jobs",
        cwd=tmp_path,
    )
    storage = f"journal://{tmp_path / 'tunebridge-runs' / 'hydra-jobs.journal.log'}"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(
        study_name="hydra-jobs", storage=JournalStorage(JournalFileBackend(storage.removeprefix("journal://")))
    )
    states = [t.state for t in study.trials]
    assert len(states) == 4 and TrialState.FAIL not in states
    assert (tmp_path / "tunebridge-runs" / "hydra-jobs" / "best_overrides.yaml").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_the_recipe_runs_on_ray(ray_instance: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(
        app, ["run", "hydra", "--backend", "ray", "--trials", "3", "--no-progress", "--max-concurrent", "1"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    run = tmp_path / "tunebridge-runs" / "hydra-digits"
    best = yaml.safe_load((run / "best.yaml").read_text())
    overrides = yaml.safe_load((run / "best_overrides.yaml").read_text())
    assert f"model.net.lin2_size={best['config']['model.net.lin2_size']}" in overrides
    assert 0.5 < best["value"] <= 1
