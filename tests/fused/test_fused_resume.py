"""A fused member writes its own resume points and goes on from one in any later cohort (issue 17).

A member stopped after epoch ``AT`` and resumed, beside other members, trains the curve it would have
trained had it never stopped: its weights, optimizer state and step count, schedule, batch-norm statistics,
data order, early stopping, train loss and kept weights all come back. Resumed beside the members it left
with (or alone, as it was), the curve is the same bit for bit; beside other members it differs by the
float rounding that a cohort's composition changes in any fused run (batched matmuls over other members
and other padding: ``test_fused.py`` holds companions equal in float64), checked here in float64 to 1e-9.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tunebridge import _record, tune
from tunebridge.backends import CHECKPOINT_FILE, _preempt
from tunebridge.backends._preempt import Preempted
from tunebridge.backends._resume import META_FILE
from tunebridge.backends.optuna import OptunaReporter
from tunebridge.cli._recipes import BUNDLED
from tunebridge.fused._cohort import Cohort, Member
from tunebridge.fused._loop import FuseStats, _place_all, _seed_before_build
from tunebridge.fused._mlp import stack_widths
from tunebridge.fused._user import UserCohort, UserMember
from tunebridge.fused._vmap import VmapCohort
from tunebridge.lightning import TrialSettings, builtin_builder
from tunebridge.schema import Choice, EarlyStoppingSpec, Float, Int, Space

torch.set_num_threads(1)

EPOCHS, AT = 5, 2
MLP = builtin_builder("mlp", "digits", max_epochs=EPOCHS, seed=0)
CNN = builtin_builder("cnn", "digits", max_epochs=EPOCHS, seed=0)
SETTINGS = TrialSettings(metric="val_loss", mode="min", max_epochs=EPOCHS, seed=0, accelerator="cpu")
# Improves at epoch 1 only (no later epoch beats it by 10): stops after 3 epochs without improvement, at
# epoch 4, only if the point carried its count (1 at epoch 2) and its best value.
STOPS_AT_4 = EarlyStoppingSpec(monitor="val_loss", patience=3, min_delta=10.0)

X = {"n_layers": 2, "units/0": 32, "units/1": 16, "activation": "relu", "lr": 0.01, "optimizer": "adam"}
X.update(batch_norm=True, lr_schedule="cosine", batch_size=64)
Y = {"n_layers": 3, "units/0": 20, "units/1": 30, "units/2": 10, "activation": "gelu", "lr": 0.003}
Y.update(optimizer="rmsprop", momentum=0.5, l1=1e-4, lr_schedule="exponential", lr_gamma=0.9, batch_size=64)
A = {"n_layers": 1, "units/0": 16, "activation": "tanh", "lr": 0.05, "optimizer": "momentum", "momentum": 0.9}
A.update(weight_decay=1e-3, batch_size=64)
C = {"n_layers": 2, "units/0": 64, "units/1": 48, "activation": "leaky_relu", "lr": 0.002, "optimizer": "adamw"}
C.update(weight_decay=0.01, batch_size=64)


class Recorder:
    """A reporter: every epoch's metrics; at epoch ``at`` it has the member write its point into ``folder``."""

    def __init__(self, folder: Path | None = None, at: int = AT) -> None:
        self.history: dict[int, dict[str, float]] = {}
        self.folder, self.at = folder, at

    def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
        self.history[epoch] = dict(metrics)
        if self.folder is not None and epoch == self.at:
            assert checkpoint is not None, "a member hands its reporter a checkpoint(folder)"
            self.folder.mkdir(parents=True)
            checkpoint(str(self.folder))
        return False

    @property
    def point(self) -> str:
        assert self.folder is not None
        return str(self.folder / CHECKPOINT_FILE)


def _member(build: Any, config: dict[str, Any], reporter: Any, cls: type[Member] = Member, **kw: Any) -> Member:
    _seed_before_build(SETTINGS, config)
    module, datamodule = build(dict(config))
    return cls(dict(config), module, datamodule, reporter, EPOCHS, "val_loss", "min", keep=True, **kw)


def _stack(members: list[Member], dtype: torch.dtype) -> Cohort:
    """One stacked MLP cohort of ``members`` (padded to the widest), whatever the padding bound says."""
    shapes = [m.shape for m in members if m.shape is not None]
    cohort = Cohort(members[0].signature, widths=stack_widths(shapes), capacity=len(members), dtype=dtype)
    for m in members:
        cohort.add(m)
    return cohort


def _train(cohorts: list[Any], members: list[Member]) -> None:
    while not all(m.done for m in members):
        for cohort in cohorts:
            cohort.train_epoch()


def _close(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], tolerance: float) -> None:
    assert sorted(a) == sorted(b)
    for epoch in a:
        assert set(a[epoch]) == set(b[epoch])
        for key in a[epoch]:
            assert a[epoch][key] == pytest.approx(b[epoch][key], abs=tolerance), (epoch, key)


def test_a_member_resumed_alone_trains_bit_for_bit_the_curve_it_trained(tmp_path: Path) -> None:
    """Alone before and after (float32, the run's dtype): every bit of its state came back."""
    once = Recorder(tmp_path / "x")
    first = _member(MLP, X, once, early_stopping=STOPS_AT_4)
    _train([_stack([first], torch.float32)], [first])
    again = Recorder()
    resumed = _member(MLP, X, again, early_stopping=STOPS_AT_4)
    resumed.load(once.point)
    assert resumed.epoch == AT and resumed.history == {e: once.history[e] for e in range(1, AT + 1)}
    _train([_stack([resumed], torch.float32)], [resumed])
    assert sorted(again.history) == [3, 4]  # stopped early at epoch 4, counting the epochs before the point
    assert resumed.history == first.history and resumed.early_stopped and first.early_stopped
    assert resumed.outcome() == first.outcome()
    assert first.kept is not None and resumed.kept is not None
    assert all(torch.equal(first.kept[k], resumed.kept[k]) for k in first.kept)


def test_mlp_members_resumed_in_another_cohort_train_the_curves_they_would_have(tmp_path: Path) -> None:
    """Padded into a stack with other members, at other rows: the same curves to float64 rounding."""
    x_once, y_once = Recorder(tmp_path / "x"), Recorder(tmp_path / "y")
    x, y = _member(MLP, X, x_once, early_stopping=STOPS_AT_4), _member(MLP, Y, y_once)
    first = [_member(MLP, A, None), x, y]
    _train([_stack(first, torch.float64)], first)
    x_again, y_again = Recorder(), Recorder()
    x2, y2 = _member(MLP, X, x_again, early_stopping=STOPS_AT_4), _member(MLP, Y, y_again)
    x2.load(x_once.point)
    y2.load(y_once.point)
    later = [y2, _member(MLP, C, None), x2]  # another companion, another order, other widths
    _train([_stack(later, torch.float64)], later)
    assert sorted(x_again.history) == [3, 4] and sorted(y_again.history) == [3, 4, 5]  # the budget from the start
    for before, after in ((x, x2), (y, y2)):
        _close(after.history, before.history, 1e-9)
        ended, ended_before = after.outcome(), before.outcome()
        assert (ended.epochs, ended.best_epoch) == (ended_before.epochs, ended_before.best_epoch)
        assert after.early_stopped == before.early_stopped
        assert before.kept is not None and after.kept is not None
        for key in before.kept:
            assert torch.allclose(after.kept[key].double(), before.kept[key].double(), atol=1e-9), key


@pytest.mark.slow
def test_a_convnet_member_resumed_in_another_vmapped_cohort_trains_the_curve_it_would_have(tmp_path: Path) -> None:
    """Its slice of every stacked parameter, buffer (batch norm) and optimizer state comes back."""
    arch = {"n_blocks": 1, "filters": 4, "kernel_size": 3, "pooling": "max", "activation": "relu", "batch_size": 64}
    arch["batch_norm"] = True
    configs = [
        {**arch, "lr": 0.01, "optimizer": "adam", "lr_schedule": "cosine"},
        {**arch, "lr": 0.05, "optimizer": "momentum", "momentum": 0.9, "weight_decay": 1e-3},
        {**arch, "lr": 0.003, "optimizer": "adamw", "weight_decay": 0.01, "l1": 1e-5},
    ]
    once = Recorder(tmp_path / "x")
    first = [_member(CNN, configs[1], None), _member(CNN, configs[0], once)]
    cohorts: list[Any] = []
    _place_all(first, cohorts, 8, torch.float64, FuseStats())
    assert [type(c) for c in cohorts] == [VmapCohort]
    _train(cohorts, first)
    again = Recorder()
    resumed = _member(CNN, configs[0], again)
    resumed.load(once.point)
    later = [_member(CNN, configs[2], None), resumed]
    cohorts = []
    _place_all(later, cohorts, 8, torch.float64, FuseStats())
    _train(cohorts, later)
    assert sorted(again.history) == [3, 4, 5]
    _close(resumed.history, first[1].history, 1e-9)


def test_preempted_every_member_of_a_cohort_writes_its_point_before_the_cohort_stops(tmp_path: Path) -> None:
    """SIGTERM: each member's report writes its point and raises; the others of its cohort still report."""

    class Going(Recorder):
        def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
            super().report(epoch, metrics, checkpoint)
            if epoch == self.at:
                raise Preempted(f"preempted after epoch {epoch}")
            return False

    reporters = [Going(tmp_path / name, at=1) for name in ("x", "a", "c")]
    members = [_member(MLP, c, r) for c, r in zip((X, A, C), reporters)]
    with pytest.raises(Preempted):
        _train([_stack(members, torch.float32)], members)
    assert [sorted(r.history) for r in reporters] == [[1]] * 3
    assert all(os.path.exists(r.point) for r in reporters)


def test_a_point_that_is_not_a_fused_members_is_refused_with_the_reason(tmp_path: Path) -> None:
    """An unfused trial's checkpoint (``fuse:`` changed between the runs) is refused, never half loaded."""
    member = _member(MLP, X, None)
    for name, content in (("other.ckpt", {"epoch": 3, "state_dict": {}}), ("junk.ckpt", None)):
        path = tmp_path / name
        if content is None:
            path.write_bytes(b"not a checkpoint")
        else:
            torch.save(content, path)
        with pytest.raises(ValueError, match="not a fused member's resume point"):
            member.load(str(path))
    assert member.epoch == 0 and member.resumed is None


def _recipe() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fused_custom", BUNDLED / "fused_custom.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_members_resumed_together_go_on_with_the_batches_they_had_reached(tmp_path: Path) -> None:
    """A user cohort's members share its batches: resumed ones train beside members at their own epoch
    only, on the loader's order of their points (the datamodule's state); a fresh member trains apart."""
    recipe = _recipe()
    configs = [
        {"lr": 0.01, "weight_decay": 1e-4, "optimizer": "adamw"},
        {"lr": 0.05, "weight_decay": 1e-3, "optimizer": "sgd", "momentum": 0.9},
        {"lr": 0.003, "weight_decay": 1e-6, "optimizer": "adamw"},
    ]
    x_once, y_once = Recorder(tmp_path / "x"), Recorder(tmp_path / "y")
    first = [_member(recipe.build, c, r, UserMember) for c, r in zip(configs, (x_once, y_once, None))]
    cohorts: list[Any] = []
    _place_all(first, cohorts, 8, torch.float64, FuseStats())
    _train(cohorts, first)
    x2 = _member(recipe.build, configs[0], Recorder(), UserMember)
    y2 = _member(recipe.build, configs[1], Recorder(), UserMember)
    x2.load(x_once.point)
    y2.load(y_once.point)
    fresh = _member(recipe.build, configs[2], None, UserMember)
    later = [y2, fresh, x2]
    cohorts = []
    _place_all(later, cohorts, 8, torch.float64, FuseStats())
    assert sorted(len(c.members) for c in cohorts) == [1, 2] and all(isinstance(c, UserCohort) for c in cohorts)
    _train(cohorts, later)
    assert x2.history == first[0].history and y2.history == first[1].history  # the same members: bit for bit
    assert fresh.history == first[2].history


@pytest.mark.slow
@pytest.mark.parametrize("how", ["preempted", "ctrl_c"])
def test_an_interrupted_fused_run_goes_on_from_each_members_point(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tune(fuse=2) stopped at epoch AT: preempted (SIGTERM), every member of the cohort writes its point at AT;
    Ctrl-C in the first member's report, it has written its point at AT, the other one's is at AT - 1. A second
    tune() on the same study finishes both from there, with the curves of a run never stopped."""
    space = Space(
        n_layers=Int(1, 2),
        units=Int(16, 32, per_layer="n_layers"),
        lr=Float(1e-3, 1e-1, log=True),
        optimizer=Choice(["sgd", "adam"]),
        batch_size=Choice([64]),
    )

    def run(storage: str) -> Any:
        return tune(
            builtin_builder("mlp", "digits", max_epochs=EPOCHS, seed=0),
            space,
            metric="val_acc",
            mode="max",
            trials=2,
            max_epochs=EPOCHS,
            search="random",
            seed=0,
            storage=storage,
            study="resumed",
            trainer={"accelerator": "cpu", "threads": 1},
            run={"fuse": 2, "progress": False},
        )

    original = OptunaReporter.report
    seen: list[int] = []

    def report(self: OptunaReporter, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
        if epoch == AT and how == "preempted":
            _preempt._requested_at = time.monotonic()  # what SIGTERM does (without its timer)
        asked = original(self, epoch, metrics, checkpoint)
        if epoch == AT and how == "ctrl_c" and not seen:
            seen.append(self.trial.number)
            raise KeyboardInterrupt
        return asked

    storage = f"sqlite:///{tmp_path}/resumed.db"
    monkeypatch.setattr(OptunaReporter, "report", report)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(storage)
    finally:
        _preempt.reset()
        monkeypatch.undo()
    stopped = optuna.load_study(study_name="resumed", storage=storage).trials
    assert [t.state for t in stopped] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2
    resume_root = tmp_path / "resumed" / "resume"
    for t in stopped:  # each member's own point, marked as a fused one
        folder = _record.bookkeeping(t, _record.RESUME_POINT)
        assert folder and os.path.dirname(folder) == str(resume_root)
        assert json.loads((Path(folder) / META_FILE).read_text())["fused"] is True
    result = run(storage)
    never = run(f"sqlite:///{tmp_path}/never.db").study.trials
    done = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and {t.number for t in done} == {2, 3}
    expected = {AT: 2} if how == "preempted" else {AT: 1, AT - 1: 1}
    at = [_record.bookkeeping(t, _record.RESUMED_AT) for t in done]
    assert {k: at.count(k) for k in set(at)} == expected
    for t in done:
        assert list(t.intermediate_values) == list(range(1, EPOCHS + 1))
        [same] = [n for n in never if n.params == t.params]
        # Beside the same companion, at the same rows: bit for bit.
        assert t.intermediate_values == same.intermediate_values and t.value == same.value
        assert t.user_attrs["final_val_loss"] == same.user_attrs["final_val_loss"]
    assert not [p for p in os.listdir(resume_root) if p.startswith("trial_")]  # ended trials keep no points
