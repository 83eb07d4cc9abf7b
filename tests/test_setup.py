"""Where a study's files go (README: "Checkpoints live next to the study")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunebridge._setup import early_stopping_spec, run_folder
from tunebridge.backends import EarlyStopRule
from tunebridge.errors import SchemaError
from tunebridge.schema import EarlyStoppingSpec


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("sqlite:///tunebridge-runs/tunebridge.db", "tunebridge-runs/s/checkpoints"),  # the CLI's default
        ("sqlite:///runs/x.db", "runs/s/checkpoints"),
        ("journal://runs/s.journal.log", "runs/s/checkpoints"),
        ("postgresql://user@db/optuna", "tunebridge-runs/s/checkpoints"),  # a server: under the process's folder
        ("redis://cache:6379/0", "tunebridge-runs/s/checkpoints"),
    ],
)
def test_checkpoints_live_next_to_the_study(
    storage: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_folder(storage, "s", "checkpoints") == os.path.join(os.path.realpath(tmp_path), expected)


def test_an_in_memory_study_writes_into_a_fresh_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = run_folder(None, "s", "checkpoints")
    assert not folder.startswith(str(tmp_path)) and os.path.isdir(folder)


def test_early_stopping_on_another_metric_than_the_runs_says_its_mode() -> None:
    # tune(early_stopping=...) and the per-trial rule both refuse it: the run's mode is val_acc's, not val_loss's.
    with pytest.raises(SchemaError, match=r"early_stopping.mode: `mode` must be given when `monitor` \(val_loss\)"):
        early_stopping_spec({"monitor": "val_loss"}, metric="val_acc", mode="max")
    with pytest.raises(SchemaError, match="mode: min"):
        EarlyStopRule.of(EarlyStoppingSpec(monitor="val_loss"), metric="val_acc", mode="max")
    assert (
        EarlyStopRule.of(EarlyStoppingSpec(monitor="val_loss", mode="min"), metric="val_acc", mode="max").mode == "min"
    )
    assert early_stopping_spec({"monitor": "val_acc"}, metric="val_acc", mode="max") == EarlyStoppingSpec("val_acc")
    assert early_stopping_spec(True, metric="val_acc", mode="max") == EarlyStoppingSpec()
