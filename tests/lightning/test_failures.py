"""Failures inside a trial: out of memory fails that trial with the batch size, and the study goes on.

The hungry step allocates on the CPU, so these tests pin ``accelerator="cpu"``: on a GPU machine
"auto" would train on the GPU and the CPU allocation would not be the one that fails.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from optuna.trial import TrialState

from tunebridge.api import tune
from tunebridge.errors import TrialOutOfMemoryError
from tunebridge.lightning import LightningObjective, TrialSettings
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Space


def _build(config: dict[str, Any]) -> tuple[Any, Any]:
    module, data = build_builtin("mlp", "digits", config, max_epochs=1, seed=0)
    if config["batch_size"] == 128:
        original = module.training_step

        def hungry(*args: Any) -> Any:
            torch.empty(10**13)  # 40 TB: the allocator refuses at once ("can't allocate memory")
            return original(*args)

        module.training_step = hungry
    return module, data


def test_out_of_memory_names_the_batch_size() -> None:
    objective = LightningObjective(_build, TrialSettings(metric="val_acc", mode="max", max_epochs=1, accelerator="cpu"))
    with pytest.raises(TrialOutOfMemoryError, match=r"out of memory at batch_size=128: .*can't allocate memory"):
        objective({"batch_size": 128}, None)


def test_an_out_of_memory_trial_fails_and_the_study_goes_on() -> None:
    space = Space(batch_size=Choice([64, 128]))
    result = tune(
        _build,
        space,
        metric="val_acc",
        mode="max",
        search="grid",
        trials=2,
        max_epochs=1,
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    by_batch = {t.user_attrs["config"]["batch_size"]: t for t in result.study.trials}
    assert by_batch[64].state == TrialState.COMPLETE
    assert by_batch[128].state == TrialState.FAIL
    assert by_batch[128].user_attrs["fail_reason"].startswith("TrialOutOfMemoryError: out of memory at batch_size=128")
