"""A user's own LightningModule fuses through two hooks, and trains the curve it trains alone (issue 9)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import tunebridge
from tunebridge.cli._recipes import BUNDLED
from tunebridge.errors import TrialOutOfMemoryError
from tunebridge.fused import NotFusableError, check_fusable
from tunebridge.fused._loop import FuseStats, _place_all, _seed_before_build
from tunebridge.fused._optim import FusedOptimizer
from tunebridge.fused._user import UserCohort, UserMember
from tunebridge.lightning import LightningObjective, TrialSettings
from tunebridge.lightning.data import DigitsDataModule

RECIPE = BUNDLED / "fused_custom.py"
EPOCHS = 3


def _recipe() -> Any:
    spec = importlib.util.spec_from_file_location("fused_custom", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe = _recipe()
CONFIGS: list[dict[str, Any]] = [
    {"lr": 0.01, "weight_decay": 1e-4, "optimizer": "adamw"},
    {"lr": 0.05, "weight_decay": 1e-3, "optimizer": "sgd", "momentum": 0.9},
    {"lr": 0.003, "weight_decay": 1e-6, "optimizer": "adamw"},
]
FOUR = [*CONFIGS, {"lr": 0.02, "weight_decay": 1e-5, "optimizer": "sgd", "momentum": 0.5}]
CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the CUDA user cohort is checked on a GPU"
)


class Recorder:
    def __init__(self) -> None:
        self.history: dict[int, dict[str, float]] = {}

    def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
        self.history[epoch] = dict(metrics)
        return False


def _settings(**kw: Any) -> TrialSettings:
    return TrialSettings(metric="val_loss", mode="min", max_epochs=EPOCHS, seed=0, accelerator="cpu", **kw)


def _members(configs: list[dict[str, Any]]) -> list[UserMember]:
    members = []
    for config in configs:
        _seed_before_build(_settings(), config)
        module, datamodule = recipe.build(dict(config))
        check_fusable(module, datamodule)
        members.append(UserMember(dict(config), module, datamodule, None, EPOCHS, "val_loss", "min"))
    return members


def test_a_user_module_member_trains_the_curve_its_config_trains_alone_in_float64() -> None:
    members = _members(CONFIGS)
    cohorts: list[Any] = []
    _place_all(members, cohorts, 8, torch.float64, FuseStats())  # type: ignore[arg-type]
    assert len(cohorts) == 1 and isinstance(cohorts[0], UserCohort)  # differing in optimizer keys only
    for _ in range(EPOCHS):
        cohorts[0].train_epoch()
    for config, member in zip(CONFIGS, members):
        recorder = Recorder()
        LightningObjective(recipe.build, _settings(trainer_kwargs={"precision": "64-true"}))(config, recorder)
        assert sorted(recorder.history) == sorted(member.history) == [1, 2, 3]
        for epoch, metrics in recorder.history.items():
            for key in ("val_loss", "val_acc"):
                assert member.history[epoch][key] == pytest.approx(metrics[key], abs=1e-9), (config, epoch, key)


def test_members_that_differ_outside_the_optimizer_keys_get_cohorts_of_their_own() -> None:
    class Wider(recipe.Net):  # type: ignore[misc,name-defined]
        fused_varies = ("lr",)  # this module also uses weight_decay and optimizer outside the optimizer

    def build(config: dict[str, Any]) -> Any:
        return Wider(**config), DigitsDataModule(batch_size=64, seed=0)

    members = []
    for config in CONFIGS:
        module, datamodule = build(dict(config))
        members.append(UserMember(dict(config), module, datamodule, None, EPOCHS, "val_loss", "min"))
    cohorts: list[Any] = []
    _place_all(members, cohorts, 8, torch.float32, FuseStats())  # type: ignore[arg-type]
    assert len(cohorts) == 3


class NoHooks(recipe.Net):  # type: ignore[misc,name-defined]
    fused_loss = None


class Branching(recipe.Net):  # type: ignore[misc,name-defined]
    def fused_loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        loss: Tensor = super().fused_loss(batch)
        return loss * 2 if loss > 1 else loss  # Python control flow on a tensor's value


class Scheduled(recipe.Net):  # type: ignore[misc,name-defined]
    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}


class Nesterov(recipe.Net):  # type: ignore[misc,name-defined]
    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, nesterov=True)


class Decoupled(recipe.Net):  # type: ignore[misc,name-defined]
    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)


class PlainModule(nn.Module):
    pass


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (NoHooks, r"fused_loss\(batch\) and fused_metrics\(batch\)"),
        (Branching, r"fused_loss cannot run under vmap"),
        (Scheduled, r"returns an LR scheduler"),
        (Nesterov, r"nesterov=True"),
        (Decoupled, r"decoupled_weight_decay=True"),
    ],
    ids=["no hooks", "control flow", "scheduler", "nesterov", "decoupled adam"],
)
def test_a_module_that_cannot_be_fused_is_refused_with_the_reason(cls: type, reason: str) -> None:
    with pytest.raises(NotFusableError, match=reason):
        check_fusable(cls(lr=0.01), DigitsDataModule(batch_size=64, seed=0))


def test_the_recipe_tunes_a_fused_user_module_end_to_end(tmp_path: Any) -> None:
    """The user's path: tune() with fuse= over the recipe's module; ordinary trials, best checkpoint loads."""
    result = tunebridge.tune(recipe.build, recipe.space, metric="val_acc", mode="max", trials=6, max_epochs=2, seed=0, storage=None, trainer={"accelerator": "cpu"}, run={"fuse": "auto", "progress": False, "checkpoints": {"dir": str(tmp_path / "ckpt")}})  # fmt: skip
    trials = result.study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    assert result.study.user_attrs.get("fused_efficiency") == 1.0
    model = result.load_best()
    assert isinstance(model, recipe.Net)
    x, y = next(iter(DigitsDataModule(batch_size=64, seed=0).val_dataloader()))
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(result.best_value, abs=1e-6)


# --------------------------------------------------------------------------- on a device, out of memory


def _cohort(configs: list[dict[str, Any]], device: torch.device | None = None) -> tuple[list[UserMember], UserCohort]:
    members = _members(configs)
    cohorts: list[Any] = []
    _place_all(members, cohorts, 8, torch.float64, FuseStats(), device=device or torch.device("cpu"))  # type: ignore[arg-type]
    assert len(cohorts) == 1 and isinstance(cohorts[0], UserCohort)
    return members, cohorts[0]


def _trained(configs: list[dict[str, Any]], device: torch.device | None = None) -> tuple[list[UserMember], UserCohort]:
    members, cohort = _cohort(configs, device)
    for _ in range(EPOCHS):
        cohort.train_epoch()
    return members, cohort


def _close(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], tolerance: float) -> None:
    assert sorted(a) == sorted(b)
    for epoch in a:
        assert set(a[epoch]) == set(b[epoch])
        for key in a[epoch]:
            assert a[epoch][key] == pytest.approx(b[epoch][key], abs=tolerance), (epoch, key)


@pytest.fixture(scope="module")
def four_reference() -> list[UserMember]:
    return _trained(FOUR)[0]


@pytest.fixture
def oom_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """The user cohort's training pass runs out of memory once: at a given call with more than `above` members."""
    plan = {"above": 2, "at": 5, "calls": 0, "raised": 0}
    run = UserCohort.run

    def failing(self: UserCohort, hook: str, slots: list[int], batch: Any, *, train: bool) -> Any:
        if train and len(slots) > plan["above"] and not plan["raised"]:
            plan["calls"] += 1
            if plan["calls"] >= plan["at"]:
                plan["raised"] += 1
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return run(self, hook, slots, batch, train=train)

    monkeypatch.setattr(UserCohort, "run", failing)
    yield plan


def test_an_out_of_memory_step_halves_a_user_cohort_and_the_rest_trains_on_exactly(
    oom_once: dict[str, int], four_reference: list[UserMember]
) -> None:
    oom_once["at"] = 30  # in the second epoch (digits: 23 batches of 64 per epoch)
    members, cohort = _trained(FOUR)
    assert oom_once["raised"] == 1
    kept = cohort.members
    assert len(kept) == 2 and len(cohort.requeue) == 2 and not set(map(id, kept)) & set(map(id, cohort.requeue))
    position = {id(m): j for j, m in enumerate(members)}
    for member in kept:  # the kept half went on from the failed step: their curves are their own
        _close(member.history, four_reference[position[id(member)]].history, 1e-12)
    for member in cohort.requeue:  # stopped in their second epoch, with no result
        assert member.epoch == 1 and member.error is None


def test_a_user_member_alone_that_runs_out_of_memory_fails_with_the_reason(oom_once: dict[str, int]) -> None:
    oom_once.update(above=0, at=1)
    members, cohort = _cohort(CONFIGS[:1])
    cohort.train_epoch()
    assert members[0].done and not cohort.requeue
    assert isinstance(members[0].error, TrialOutOfMemoryError) and "batch_size=64" in str(members[0].error)


def test_out_of_memory_in_a_user_cohorts_update_stops_every_member(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(self: FusedOptimizer) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(FusedOptimizer, "step", failing)
    _, cohort = _cohort(FOUR)
    cohort.train_epoch()
    assert not cohort.members and len(cohort.requeue) == 4


@CUDA
def test_a_cuda_user_cohort_trains_the_curves_of_the_cpu_cohort_in_float64(four_reference: list[UserMember]) -> None:
    members, cohort = _trained(FOUR, torch.device("cuda"))
    assert cohort.device.type == "cuda" and {p.device.type for p in cohort.params} == {"cuda"}
    for member, reference in zip(members, four_reference):
        _close(member.history, reference.history, 1e-9)
