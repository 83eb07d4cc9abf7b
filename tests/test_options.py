"""``tune()``'s two option groups: a readable signature, mappings that read like the spec, and options a
backend would ignore refused before any trial."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest

import tunebridge
from tunebridge import Float, SchemaError, Space
from tunebridge.options import Checkpoints, RunOptions, StudyLimits, TrainerOptions, WorkerOptions

SPACE = Space(lr=Float(1e-3, 1e-1, log=True))


def _never_built(config: dict[str, Any]) -> Any:
    raise AssertionError("no trial may start when an option is refused")


def test_tune_takes_at_most_15_parameters() -> None:
    params = list(inspect.signature(tunebridge.tune).parameters)
    assert len(params) <= 15, params
    assert params[-2:] == ["trainer", "run"]


def test_a_mapping_reads_like_the_spec_sections() -> None:
    trainer = TrainerOptions.of({"accelerator": "cpu", "threads": 1, "precision": "64-true", "logger": "csv"})
    assert (trainer.accelerator, trainer.threads, trainer.logger) == ("cpu", 1, "csv")
    assert trainer.options == {"precision": "64-true"}  # any other key is a Trainer keyword
    run = RunOptions.of(
        {"fuse": "auto", "checkpoints": {"keep": 2}, "stop": {"timeout": 60, "target": 0.9}, "workers": {"join": True}}
    )
    assert run.fuse == "auto" and run.checkpoints == Checkpoints(keep=2)
    assert run.stop == StudyLimits(timeout=60, target=0.9)
    assert run.workers == WorkerOptions(join=True) and run.workers.heartbeat == 10.0  # heartbeats stay on


def test_an_in_memory_study_needs_no_heartbeat() -> None:
    assert RunOptions().worker_options(in_memory=True).heartbeat is None
    assert RunOptions().worker_options(in_memory=False).heartbeat == 10.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"run": {"fuze": 2}}, r"run: unknown key, but got 'fuze'.*Did you mean 'fuse'"),
        ({"run": {"checkpoints": {"kept": 2}}}, r"checkpoints: unknown key, but got 'kept'.*Did you mean 'keep'"),
        ({"run": {"checkpoints": {"keep": -1}}}, r"checkpoints\.keep: `checkpoints\.keep` must be an integer >= 0"),
        ({"run": {"objective": "best"}}, r"run\.objective: .*'best'"),
        ({"run": {"progress": "no"}}, r"run\.progress: `progress` must be true or false"),
        ({"run": {"stop": {"timeout": 0}}}, r"timeout: `timeout` must be a number of seconds > 0"),
        ({"run": 3}, r"run: `run` must be a RunOptions or a mapping of its fields"),
        ({"trainer": {"precison": "64-true"}}, r"trainer\.precison: not an argument of Lightning's Trainer.*precision"),
        ({"trainer": {"max_epochs": 3}}, r"trainer\.max_epochs: tunebridge sets this Trainer argument itself"),
        ({"trainer": {"logger": "wandb"}}, r"trainer\.logger: .*'wandb'"),
        ({"trainer": ["cpu"]}, r"trainer: `trainer` must be TrainerOptions or a mapping"),
        ({"run": {"ray": {"address": "auto"}}}, r"run\.ray: Ray options need the Ray backend.*Pass backend='ray'"),
    ],
)
def test_bad_options_are_refused_with_the_rule_and_the_fix(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        tunebridge.tune(_never_built, SPACE, metric="val_loss", trials=1, max_epochs=1, **kwargs)


@pytest.mark.parametrize(
    "workers",
    [{"trial_timeout": 5.0}, {"stop": threading.Event()}, {"heartbeat": 2.0}, {"join": True}, {"max_retry": 0}],
    ids=["trial_timeout", "stop", "heartbeat", "join", "max_retry"],
)
def test_ray_refuses_the_worker_options_it_would_ignore(workers: dict[str, Any]) -> None:
    """Ray runs and retries trials in its own actors: these used to be dropped without a word."""
    with pytest.raises(SchemaError, match=r"run\.workers: Ray runs and retries trials in its own actors") as info:
        tunebridge.tune(
            _never_built, SPACE, metric="val_loss", backend="ray", trials=1, max_epochs=1, run={"workers": workers}
        )
    assert next(iter(workers)) in str(info.value) and "max_failures" in str(info.value)


def test_a_fused_ray_run_cannot_restore_a_ray_experiment() -> None:
    with pytest.raises(SchemaError, match=r"run\.ray\.restore: fused cohorts on Ray resume from the study's queue"):
        tunebridge.tune(
            _never_built,
            SPACE,
            metric="val_loss",
            backend="ray",
            trials=1,
            max_epochs=1,
            run={"fuse": 2, "ray": {"restore": True}},
        )


def test_the_groups_are_typed_and_frozen() -> None:
    run = RunOptions(fuse=2, checkpoints=Checkpoints(keep=0))
    with pytest.raises(AttributeError):
        run.fuse = 4  # type: ignore[misc]
    assert RunOptions.of(run) is run and TrainerOptions.of(None) == TrainerOptions()
