"""Fused cohorts on a device: the device plumbing, ``fuse: auto`` from memory, and out-of-memory halving (issue 9)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from optuna.trial import TrialState

from tunebridge import tune
from tunebridge._record import REQUEUED, RETRY_OF, bookkeeping
from tunebridge.errors import SchemaError, TrialOutOfMemoryError
from tunebridge.fused import _loop
from tunebridge.fused._cohort import Cohort, Member
from tunebridge.fused._loop import FuseStats, _place_all, _seed_before_build, auto_capacity
from tunebridge.fused._memory import HEADROOM, MAX_AUTO, PARAM_COPIES, default_capacity, fused_device, member_bytes
from tunebridge.fused._mlp import FusedMLP
from tunebridge.fused._optim import FusedOptimizer
from tunebridge.fused._vmap import VmapCohort
from tunebridge.lightning import LightningObjective, TrialSettings, builtin_builder
from tunebridge.schema import Choice, Float, Int, Space

EPOCHS = 3
BUILD = builtin_builder("mlp", "digits", max_epochs=EPOCHS, seed=0)
CNN_BUILD = builtin_builder("cnn", "digits", max_epochs=EPOCHS, seed=0)
CONFIGS: list[dict[str, Any]] = [  # dropout off: every curve is deterministic
    {"n_layers": 2, "units/0": 32, "units/1": 16, "lr": 0.01, "optimizer": "adam", "batch_size": 64},
    {"n_layers": 1, "units/0": 24, "lr": 0.05, "optimizer": "momentum", "momentum": 0.9, "batch_size": 64},
    {"n_layers": 2, "units/0": 20, "units/1": 30, "lr": 0.003, "optimizer": "rmsprop", "batch_size": 64},
    {
        "n_layers": 2,
        "units/0": 40,
        "units/1": 20,
        "lr": 0.002,
        "optimizer": "adamw",
        "batch_norm": True,
        "l1": 1e-4,
        "batch_size": 64,
    },
]
CNN_CONFIGS: list[dict[str, Any]] = [
    {"n_blocks": 2, "filters": 8, "batch_size": 64, "lr": lr, "optimizer": opt}
    for lr, opt in ((0.01, "adam"), (0.05, "sgd"), (0.003, "adamw"), (0.02, "rmsprop"))
]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CUDA cohort is checked on a GPU")


def _members(build: Any, configs: list[dict[str, Any]], epochs: int = EPOCHS) -> list[Member]:
    settings = TrialSettings(metric="val_loss", mode="min", max_epochs=epochs, seed=0, accelerator="cpu")
    members = []
    for config in configs:
        _seed_before_build(settings, config)
        module, datamodule = build(dict(config))
        members.append(Member(dict(config), module, datamodule, None, epochs, "val_loss", "min"))
    return members


def _train(
    build: Any, configs: list[dict[str, Any]], *, device: torch.device | None = None, epochs: int = EPOCHS
) -> tuple[list[Member], list[Any]]:
    cohorts: list[Any] = []
    members = _members(build, configs, epochs)
    kw = {} if device is None else {"device": device}
    _place_all(members, cohorts, 8, torch.float64, FuseStats(), **kw)
    for _ in range(epochs):
        for cohort in cohorts:
            cohort.train_epoch()
    return members, cohorts


@pytest.fixture(scope="module", autouse=True)
def _accelerator_grouping() -> Iterator[None]:
    """The CPU stands in for an accelerator here (cohorts of several members, memory running out): members
    are grouped with the accelerator's padding bound, so that all four MLPs share one cohort."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_loop, "MIN_EFFICIENCY_CPU", _loop.MIN_EFFICIENCY)
        yield


@pytest.fixture(scope="module")
def mlp_reference() -> list[Member]:
    return _train(BUILD, CONFIGS)[0]


@pytest.fixture(scope="module")
def cnn_reference() -> list[Member]:
    return _train(CNN_BUILD, CNN_CONFIGS, epochs=2)[0]


def _same(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], tolerance: float = 0.0) -> None:
    assert sorted(a) == sorted(b)
    for epoch in a:
        assert set(a[epoch]) == set(b[epoch])
        for key in a[epoch]:
            assert a[epoch][key] == pytest.approx(b[epoch][key], abs=tolerance), (epoch, key)


# --------------------------------------------------------------------------- the device plumbing


def test_an_explicit_cpu_device_trains_what_the_default_trains(mlp_reference: list[Member]) -> None:
    members, cohorts = _train(BUILD, CONFIGS, device=torch.device("cpu"))
    for cohort in cohorts:
        assert cohort.device == torch.device("cpu") and cohort.net.packed is not None
        assert {t.device.type for t in (*cohort._data, cohort.net.packed, cohort.optimizer.lr)} == {"cpu"}
    for member, reference in zip(members, mlp_reference):
        _same(member.history, reference.history)


def test_an_explicit_cpu_device_trains_a_convnet_cohort_as_the_default(cnn_reference: list[Member]) -> None:
    members, cohorts = _train(CNN_BUILD, CNN_CONFIGS, device=torch.device("cpu"), epochs=2)
    assert len(cohorts) == 1 and isinstance(cohorts[0], VmapCohort)
    for member, reference in zip(members, cnn_reference):
        _same(member.history, reference.history)


def test_kept_weights_are_on_the_cpu() -> None:
    members = _members(BUILD, CONFIGS[:2])
    for member in members:
        member.keep = True
    cohorts: list[Any] = []
    _place_all(members, cohorts, 8, torch.float64, FuseStats(), device=torch.device("cpu"))
    cohorts[0].train_epoch()
    for member in members:
        assert member.kept is not None and {t.device.type for t in member.kept.values()} == {"cpu"}
        member.module.load_state_dict(member.kept)  # the module's own state_dict, unpadded


@CUDA
@pytest.mark.parametrize(("build", "configs"), [(BUILD, CONFIGS), (CNN_BUILD, CNN_CONFIGS)], ids=["mlp", "cnn"])
def test_a_cuda_cohort_trains_the_curves_of_the_cpu_cohort_in_float64(
    build: Any, configs: list[dict[str, Any]]
) -> None:
    cpu, _ = _train(build, configs, device=torch.device("cpu"), epochs=2)
    cuda, cohorts = _train(build, configs, device=torch.device("cuda"), epochs=2)
    assert all(c.device.type == "cuda" for c in cohorts)
    for a, b in zip(cuda, cpu):
        _same(a.history, b.history, tolerance=1e-9)


@pytest.mark.parametrize(
    ("accelerator", "cuda", "expected"),
    [
        ("cpu", True, "cpu"),
        ("auto", False, "cpu"),
        ("auto", True, "cuda"),
        ("gpu", True, "cuda"),
        ("cuda", True, "cuda"),
    ],
)
def test_the_device_follows_the_accelerator(
    accelerator: str, cuda: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert fused_device(accelerator).type == expected


@pytest.mark.parametrize(
    ("accelerator", "message"),
    [("gpu", r"fused cohorts on a GPU need a CUDA device"), ("mps", r"fused cohorts train on the CPU or a CUDA GPU")],
)
def test_an_accelerator_fusion_cannot_use_is_refused(
    accelerator: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SchemaError, match=message):
        fused_device(accelerator)


def test_the_optimizer_keeps_its_state_on_the_parameters_device() -> None:
    p = torch.zeros(3, 4, dtype=torch.float64, device="cpu")
    opt = FusedOptimizer([p], 3)
    assert {t.device for t in (opt.lr, opt.momentum, opt.weight_decay, opt.steps)} == {p.device}


# --------------------------------------------------------------------------- fuse: auto


GIB, MIB = 2**30, 2**20


@pytest.mark.parametrize(
    ("per_member", "free", "data", "expected"),
    [
        (100 * MIB, 10 * GIB, 1 * GIB, int((HEADROOM * 10 * GIB - GIB) // (100 * MIB))),
        (100 * MIB, 20 * GIB, 1 * GIB, int((HEADROOM * 20 * GIB - GIB) // (100 * MIB))),
        (1, 100 * GIB, 0, MAX_AUTO),  # a tiny model: capped
        (50 * GIB, 10 * GIB, 0, 1),  # a model larger than the device: one member (an OOM then fails it)
    ],
)
def test_auto_k_on_a_gpu_is_what_fits_in_the_free_memory(per_member: int, free: int, data: int, expected: int) -> None:
    assert default_capacity(torch.device("cuda"), per_member=per_member, free_bytes=free, data_bytes=data) == expected


def test_auto_k_on_the_cpu_saturates_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_capacity(torch.device("cpu")) == default_capacity("cpu") == 32


def test_member_bytes_counts_parameters_state_and_activations() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 3))  # 15 parameters, 3 outputs per sample
    got = member_bytes(module, torch.zeros(10, 4), batch_size=2, n_val=5, dtype=torch.float32)
    assert got == 4 * (PARAM_COPIES * 15 + 3 * (4 * 2 + 5))
    assert member_bytes(module, torch.zeros(1, 4), batch_size=2, n_val=5, dtype=torch.float64) == 2 * got


def test_auto_k_for_a_run_reads_the_first_member_and_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    small, wide = _members(BUILD, [CONFIGS[0], {**CONFIGS[0], "units/0": 512, "units/1": 512}])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    free = [4 * GIB]
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0], 8 * GIB))
    cuda = torch.device("cuda")
    k_small, k_wide = auto_capacity(small, cuda, torch.float32), auto_capacity(wide, cuda, torch.float32)
    assert 1 <= k_wide < k_small <= MAX_AUTO
    free[0] = GIB // 4
    assert auto_capacity(wide, cuda, torch.float32) < k_wide  # less free memory: fewer members
    assert auto_capacity(small, torch.device("cpu"), torch.float32) == default_capacity("cpu")


# --------------------------------------------------------------------------- out of memory


@pytest.fixture
def oom_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """The stacked MLP's forward runs out of memory once: at a given training call with more than `above` members."""
    plan = {"above": 2, "at": 5, "calls": 0, "raised": 0}
    forward = FusedMLP.forward

    def failing(self: FusedMLP, x: torch.Tensor, slots: Any, *, train: bool) -> torch.Tensor:
        if train and len(slots) > plan["above"] and not plan["raised"]:
            plan["calls"] += 1
            if plan["calls"] >= plan["at"]:
                plan["raised"] += 1
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return forward(self, x, slots, train=train)

    monkeypatch.setattr(FusedMLP, "forward", failing)
    yield plan


def test_an_out_of_memory_step_halves_the_cohort_and_the_rest_trains_on_exactly(
    oom_once: dict[str, int], mlp_reference: list[Member]
) -> None:
    oom_once["at"] = 30  # in the second epoch (digits: 23 batches of 64 per epoch)
    cohorts: list[Any] = []
    members = _members(BUILD, CONFIGS)
    _place_all(members, cohorts, 8, torch.float64, FuseStats())
    assert len(cohorts) == 1 and len(cohorts[0].members) == 4
    cohort: Cohort = cohorts[0]
    for _ in range(EPOCHS):
        cohort.train_epoch()
    assert oom_once["raised"] == 1
    kept = cohort.members
    assert len(kept) == 2 and len(cohort.requeue) == 2 and not set(map(id, kept)) & set(map(id, cohort.requeue))
    assert cohort.free() == 0  # the cohort is not refilled past what fit
    for member in kept:  # the kept half went on from the failed step: their curves are their own
        _same(member.history, mlp_reference[members.index(member)].history)
    for member in cohort.requeue:  # stopped in their second epoch, with no result
        assert member.epoch == 1 and member.error is None


def test_a_member_alone_that_runs_out_of_memory_fails_with_the_reason(oom_once: dict[str, int]) -> None:
    oom_once.update(above=0, at=1)
    cohorts: list[Any] = []
    members = _members(BUILD, CONFIGS[:1])
    _place_all(members, cohorts, 8, torch.float64, FuseStats())
    cohorts[0].train_epoch()
    assert members[0].done and not cohorts[0].requeue
    assert isinstance(members[0].error, TrialOutOfMemoryError) and "batch_size=64" in str(members[0].error)


def test_out_of_memory_in_an_update_stops_every_member(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(self: FusedOptimizer) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(FusedOptimizer, "step", failing)
    cohorts: list[Any] = []
    members = _members(BUILD, CONFIGS)
    _place_all(members, cohorts, 8, torch.float64, FuseStats())
    cohorts[0].train_epoch()
    assert not cohorts[0].members and len(cohorts[0].requeue) == 4


def test_an_out_of_memory_step_halves_a_vmapped_cohort(
    monkeypatch: pytest.MonkeyPatch, cnn_reference: list[Member]
) -> None:
    forward, raised = VmapCohort._forward, [0]

    def failing(self: VmapCohort, slots: list[int], x: torch.Tensor, *, train: bool) -> torch.Tensor:
        if train and len(slots) > 2 and not raised[0]:
            raised[0] = 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, slots, x, train=train)

    monkeypatch.setattr(VmapCohort, "_forward", failing)
    members, cohorts = _train(CNN_BUILD, CNN_CONFIGS, epochs=2)
    assert raised[0] and len(cohorts[0].members) == 2 and len(cohorts[0].requeue) == 2
    for member in cohorts[0].members:
        _same(member.history, cnn_reference[members.index(member)].history)


@pytest.mark.slow
def test_a_fused_study_that_runs_out_of_memory_halves_k_and_finishes_every_trial_once(
    oom_once: dict[str, int], tmp_path: Any
) -> None:
    oom_once.update(above=2, at=3)
    space = Space(
        n_layers=Int(1, 2),
        units=Int(16, 32, log=True, per_layer="n_layers"),
        lr=Float(1e-3, 1e-1, log=True),
        optimizer=Choice(["sgd", "adam"]),
        batch_size=Choice([64]),
    )
    result = tune(
        BUILD,
        space,
        metric="val_acc",
        mode="max",
        trials=8,
        max_epochs=2,
        search="random",
        storage=f"sqlite:///{tmp_path}/oom.db",
        study="oom",
        trainer={"accelerator": "cpu"},
        run={"fuse": 4, "progress": False, "checkpoints": {"keep": 0}},
    )
    assert oom_once["raised"] == 1
    trials = result.study.trials
    requeued = [t for t in trials if bookkeeping(t, REQUEUED)]
    budgeted = [t for t in trials if not bookkeeping(t, REQUEUED)]
    assert requeued and all(t.state == TrialState.FAIL for t in requeued)
    assert len(budgeted) == 8 and all(t.state == TrialState.COMPLETE for t in budgeted)  # each exactly once
    retried = {bookkeeping(t, RETRY_OF): t for t in budgeted if bookkeeping(t, RETRY_OF) is not None}
    assert sorted(retried) == sorted(t.number for t in requeued)  # every stopped config came back, once
    for t in requeued:
        assert retried[t.number].params == t.params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_fuse_auto_sizes_k_from_the_first_member_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """``run_fused(capacity="auto")`` (what ``fuse: auto`` passes once fuse_capacity hands "auto" through)."""
    import tunebridge.fused
    from tunebridge.fused import _loop

    sized: list[str] = []
    monkeypatch.setattr(tunebridge.fused, "fuse_capacity", lambda *a, **kw: "auto")
    sizes: list[int] = []
    add = Cohort.add

    def auto(member: Member, device: torch.device, dtype: torch.dtype) -> int:
        sized.append(device.type)
        return 2

    def counted(self: Cohort, member: Member) -> None:
        add(self, member)
        sizes.append(len(self.members))

    monkeypatch.setattr(_loop, "auto_capacity", auto)
    monkeypatch.setattr(Cohort, "add", counted)
    space = Space(lr=Float(1e-3, 1e-1, log=True), batch_size=Choice([64]))
    result = tune(BUILD, space, metric="val_acc", mode="max", trials=5, max_epochs=1, search="random", storage=f"sqlite:///{tmp_path}/auto.db", trainer={"accelerator": "cpu"}, run={"fuse": "auto", "progress": False, "checkpoints": {"keep": 0}})  # fmt: skip
    assert sized == ["cpu"] and max(sizes) == 2
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE] * 5


def test_a_batch_norm_convnet_member_keeps_its_statistics_when_a_companion_finishes_first() -> None:
    """Members training while a slot is empty run on gathered copies: their running statistics are written back."""
    configs = [{**CNN_CONFIGS[0], "batch_norm": True}, {**CNN_CONFIGS[2], "batch_norm": True}]
    members = _members(CNN_BUILD, configs, epochs=2)
    members[0].epochs = 1  # its slot is empty in the second epoch
    cohorts: list[Any] = []
    _place_all(members, cohorts, 8, torch.float64, FuseStats())
    for _ in range(2):
        cohorts[0].train_epoch()
        for member in [m for m in cohorts[0].members if m.done]:
            cohorts[0].remove(member)
    recorder, build = Recorder(), builtin_builder("cnn", "digits", max_epochs=2, seed=0)
    settings = TrialSettings(
        metric="val_loss", mode="min", max_epochs=2, seed=0, accelerator="cpu", trainer_kwargs={"precision": "64-true"}
    )
    LightningObjective(build, settings)(dict(configs[1]), recorder)  # trained alone, unfused
    assert sorted(recorder.history) == sorted(members[1].history) == [1, 2]
    for epoch, metrics in recorder.history.items():
        for key in ("val_loss", "val_acc"):  # the unfused module's accuracy is a float32 mean
            tolerance = 1e-6 if key == "val_acc" else 1e-9
            assert members[1].history[epoch][key] == pytest.approx(metrics[key], abs=tolerance), (epoch, key)


class Recorder:
    def __init__(self) -> None:
        self.history: dict[int, dict[str, float]] = {}

    def report(self, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
        self.history[epoch] = dict(metrics)
        return False
