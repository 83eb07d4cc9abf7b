"""The trial record: one module writes and reads what a trial stores, for every backend."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from tunebridge import _record
from tunebridge.backends._base import TrialOutcome


def test_outcome_attrs_hold_every_key_and_store_non_finite_values_as_text() -> None:
    outcome = TrialOutcome(
        metrics={"val_loss": 0.25, "val_acc": math.nan, "n_params": 10.0},
        best={"val_loss": 0.2},
        epochs=4,
        best_epoch=3,
        early_stopped=True,
        extra={"restored": True},
    )
    attrs = _record.outcome_attrs(outcome)
    assert attrs == {
        "epochs": 4,
        "best_epoch": 3,
        "early_stopped": True,
        "final_val_loss": 0.25,
        "final_val_acc": "nan",  # JSON storages refuse NaN
        "final_n_params": 10.0,
        "restored": True,
    }
    assert _record.final_metrics(attrs) == {"val_loss": 0.25, "val_acc": "nan", "n_params": 10.0}


def test_failure_attrs_from_an_exception_keep_the_reason_and_the_traceback_tail() -> None:
    try:
        raise ValueError("x" * 5000)
    except ValueError as exc:
        attrs = _record.failure_attrs(exc)
    assert attrs["fail_reason"].startswith("ValueError: xxx") and len(attrs["fail_reason"]) == _record.REASON_LIMIT
    assert "Traceback" in attrs["traceback"] or attrs["traceback"].endswith("x\n")
    assert len(attrs["traceback"]) <= _record.TRACEBACK_LIMIT


@pytest.mark.parametrize(
    ("error", "traceback", "reason", "text"),
    [
        ("worker died", None, "worker died", "worker died"),
        ("boom", "Traceback ...\nboom", "boom", "Traceback ...\nboom"),
    ],
)
def test_failure_attrs_from_text(error: str, traceback: str | None, reason: str, text: str) -> None:
    assert _record.failure_attrs(error, traceback=traceback) == {"fail_reason": reason, "traceback": text}


def test_config_attrs_round_trip_through_json() -> None:
    attrs = _record.config_attrs({"lr": 0.1, "units/0": 8, "act": "relu", "bn": True})
    assert attrs == {"config": {"lr": 0.1, "units/0": 8, "act": "relu", "bn": True}}
    assert _record.config_of(attrs) == attrs["config"]
    assert _record.config_of({}) is None


@dataclass
class _Trial:
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)


@pytest.mark.parametrize(
    ("trial", "outside"),
    [
        (_Trial(), False),
        (_Trial(system_attrs={"tb_requeued": True}), True),
        (_Trial(system_attrs={"tb_cancelled": True}), True),
        (_Trial(system_attrs={"tb_requeued": False}), False),
    ],
)
def test_outside_budget_reads_the_system_attributes(trial: _Trial, outside: bool) -> None:
    assert _record.outside_budget(trial) is outside


def test_bookkeeping_goes_to_system_attributes_and_results_stay_the_users() -> None:
    attrs = {
        **_record.config_attrs({"lr": 0.1}),
        "final_val_loss": 0.5,
        "epochs": 3,
        "checkpoint": "/ckpt",
        "module_class": "m:C",
        "worker": "h:1",
        "fused": True,
        "ray_node": "n",
    }
    user, system = _record.split_attrs(attrs)
    assert user == {"config": {"lr": 0.1}, "final_val_loss": 0.5, "epochs": 3, "checkpoint": "/ckpt"}
    assert system == {"tb_module_class": "m:C", "tb_worker": "h:1", "tb_fused": True, "tb_ray_node": "n"}
    trial = _Trial(user, system)
    assert [_record.bookkeeping(trial, k) for k in ("worker", "fused", "slot")] == ["h:1", True, None]


def test_the_record_module_is_standard_library_only() -> None:
    import ast
    import sys

    tree = ast.parse(open(_record.__file__).read())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not (isinstance(node, ast.ImportFrom) and node.level)
        for alias in node.names
    }
    assert imported - {"__future__", "tunebridge"} <= set(sys.stdlib_module_names)
