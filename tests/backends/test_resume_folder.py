"""A worker is told at start when it cannot see the resume folder the study's other workers write to."""

from __future__ import annotations

from pathlib import Path

import optuna

from tunebridge.backends import ResumePlan
from tunebridge.backends.optuna._resuming import check_shared_folder


def test_a_worker_that_cannot_see_the_others_folder_is_told_at_start(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="shared")
    assert check_shared_folder(study, ResumePlan(str(tmp_path / "shared"))) is None  # the first worker
    assert check_shared_folder(study, ResumePlan(str(tmp_path / "shared"))) is None  # sees the first's marker
    message = check_shared_folder(study, ResumePlan(str(tmp_path / "elsewhere")))
    assert message is not None and str(tmp_path / "elsewhere") in message
    assert str(tmp_path / "shared") in message and "starts from epoch 0" in message
