"""Where a study's files go (README: "Checkpoints live next to the study")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunebridge._setup import run_folder


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
