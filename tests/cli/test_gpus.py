"""``run --jobs N|auto --gpus-per-job G``: the GPUs each local worker sees, planned by pure functions.

No GPU is needed: the visible GPUs are given (or set through ``CUDA_VISIBLE_DEVICES``), and what is
checked is each worker's environment and the errors, plus a real ``--jobs auto`` run without a GPU.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._gpus import (
    Gpus,
    JobPlan,
    parse_nvidia_smi,
    parse_visible_devices,
    plan_jobs,
    visible_gpus,
    worker_env,
)
from tunebridge.errors import SchemaError

SMI_TWO = "GPU 0: NVIDIA H200 (UUID: GPU-aaaa)\nGPU 1: NVIDIA H200 (UUID: GPU-bbbb)\n"
SMI_MIG = (
    "GPU 0: NVIDIA H200 (UUID: GPU-aaaa)\n"
    "  MIG 3g.71gb     Device  0: (UUID: MIG-1111)\n"
    "  MIG 3g.71gb     Device  1: (UUID: MIG-2222)\n"
    "GPU 1: NVIDIA H200 (UUID: GPU-bbbb)\n"
)


def gpus(*ids: str) -> Gpus:
    return Gpus(ids, "test")


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("0,1,2,3", ("0", "1", "2", "3")),
        ("3, 1", ("3", "1")),
        ("", ()),
        ("-1", ()),
        ("2,-1,3", ("2",)),
        ("GPU-aaaa,MIG-1111", ("GPU-aaaa", "MIG-1111")),
    ],
)
def test_parse_visible_devices(value: str, ids: tuple[str, ...]) -> None:
    assert parse_visible_devices(value) == ids


@pytest.mark.parametrize(
    ("text", "ids"),
    [(SMI_TWO, ("0", "1")), (SMI_MIG, ("MIG-1111", "MIG-2222", "1")), ("", ()), ("No devices were found\n", ())],
    ids=["two-gpus", "mig", "empty", "none"],
)
def test_parse_nvidia_smi(text: str, ids: tuple[str, ...]) -> None:
    assert parse_nvidia_smi(text) == ids


def test_visible_gpus_honours_cuda_visible_devices_without_importing_torch() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4,6"}) == Gpus(("4", "6"), "CUDA_VISIBLE_DEVICES='4,6'")
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}).ids == ()


@pytest.mark.parametrize(
    ("jobs", "per_job", "visible", "plan"),
    [
        ("1", None, None, JobPlan(1, 0, (None,))),
        ("3", None, None, JobPlan(3, 0, (None, None, None))),  # no --gpus-per-job: nothing restricted
        ("3", 0, gpus("0", "1"), JobPlan(3, 0, (None, None, None))),
        ("2", 1, gpus("0", "1", "2"), JobPlan(2, 1, ("0", "1"))),
        ("2", 2, gpus("0", "1", "2", "3"), JobPlan(2, 2, ("0,1", "2,3"))),
        ("2", 1, gpus("5", "7"), JobPlan(2, 1, ("5", "7"))),  # an existing CUDA_VISIBLE_DEVICES list
        ("1", 1, gpus("GPU-aaaa"), JobPlan(1, 1, ("GPU-aaaa",))),
        (
            "auto",
            None,
            gpus("0", "1", "2", "3"),
            JobPlan(4, 1, ("0", "1", "2", "3"), "--jobs auto: 4 job(s), 1 GPU(s) each (test)"),
        ),
        (
            "auto",
            2,
            gpus("0", "1", "2"),
            JobPlan(1, 2, ("0,1",), "--jobs auto: 1 job(s), 2 GPU(s) each (test); left idle: 2"),
        ),
        ("AUTO", None, gpus("3"), JobPlan(1, 1, ("3",), "--jobs auto: 1 job(s), 1 GPU(s) each (test)")),
        ("auto", None, gpus(), JobPlan(1, 0, (None,), "--jobs auto: no GPU visible (test), so 1 job")),
    ],
)
def test_plan_jobs(jobs: str, per_job: int | None, visible: Gpus | None, plan: JobPlan) -> None:
    assert plan_jobs(jobs, per_job, visible) == plan


@pytest.mark.parametrize(
    ("jobs", "per_job", "visible", "message"),
    [
        ("two", None, None, "--jobs: `--jobs` must be a positive integer or auto, but got 'two'. Write e.g. --jobs 4"),
        ("0", None, None, "--jobs: `--jobs` must be a positive integer or auto, but got '0'"),
        (
            "2",
            1,
            gpus("0"),
            "--gpus-per-job: the local workers ask for more GPUs than are visible, but got 2 job(s) x 1 GPU(s) = 2, with 1 visible (test). Use --jobs auto",
        ),
        ("1", 1, gpus(), "with 0 visible (test)"),
        ("auto", 2, gpus("0"), "but got 1 job(s) x 2 GPU(s) = 2, with 1 visible (test)"),
        ("auto", 0, gpus("0"), "`--jobs auto` starts one job per GPU(s), so `--gpus-per-job` must be >= 1"),
        ("2", -1, gpus("0"), "`--gpus-per-job` must be >= 0, but got -1"),
    ],
)
def test_plan_jobs_refuses(jobs: str, per_job: int | None, visible: Gpus | None, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        plan_jobs(jobs, per_job, visible)


@pytest.mark.parametrize(
    ("base", "devices", "expected"),
    [
        ({"PATH": "/bin"}, None, {"PATH": "/bin"}),
        (
            {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "4,5,6,7"},
            None,
            {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "4,5,6,7"},
        ),
        ({"PATH": "/bin"}, "1", {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1"}),
        ({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "4,5,6,7"}, "6,7", {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "6,7"}),
    ],
)
def test_worker_env(base: dict[str, str], devices: str | None, expected: dict[str, str]) -> None:
    env = worker_env(base, devices)
    assert env == expected
    assert env is not base


@pytest.mark.parametrize(
    ("visible", "jobs", "per_job", "envs"),
    [
        # worker 0 is the run process itself; the others are spawned with these variables
        ("0,1,2,3", "auto", None, ["0", "1", "2", "3"]),
        ("4,5,6,7", "2", 2, ["4,5", "6,7"]),
        ("4,5,6,7", "auto", 3, ["4,5,6"]),
        ("2,3", "2", None, ["2,3", "2,3"]),  # no --gpus-per-job: every worker inherits the list
    ],
)
def test_each_worker_sees_its_own_slice(visible: str, jobs: str, per_job: int | None, envs: list[str]) -> None:
    base = {"CUDA_VISIBLE_DEVICES": visible, "HOME": "/home/u"}
    plan = plan_jobs(jobs, per_job, visible_gpus(base))
    assert [worker_env(base, d)["CUDA_VISIBLE_DEVICES"] for d in plan.devices] == envs
    assert all(worker_env(base, d)["HOME"] == "/home/u" for d in plan.devices)


TINY = textwrap.dedent("""\
    study: auto
    model: mlp
    data: digits
    space:
      n_layers: {type: int, low: 1, high: 2}
      lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    metric: val_acc
    mode: max
    max_epochs: 1
    search: random
    trials: 1
    seed: 0
    threads: 1
    """)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, on every machine
    (tmp_path / "tiny.yaml").write_text(TINY)
    return CliRunner()


def test_jobs_auto_without_a_gpu_runs_one_job_and_says_so(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "tiny.yaml", "--jobs", "auto", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "--jobs auto: no GPU visible (CUDA_VISIBLE_DEVICES=''), so 1 job" in result.stderr
    assert "1 complete, 0 pruned, 0 failed" in result.stdout
    assert not list((tmp_path / "tunebridge-runs").glob("*.journal.log"))  # one process: the default SQLite study
    study = optuna.load_study(study_name="auto", storage="sqlite:///tunebridge-runs/tunebridge.db")
    assert len(study.trials) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--jobs", "2", "--gpus-per-job", "1"],
            "the local workers ask for more GPUs than are visible, but got 2 job(s) x 1 GPU(s) = 2, with 0 visible (CUDA_VISIBLE_DEVICES='')",
        ),
        (["--jobs", "many"], "`--jobs` must be a positive integer or auto, but got 'many'"),
        (["--jobs", "2", "--backend", "ray"], "`--jobs` and `--gpus-per-job` start local Optuna workers"),
    ],
)
def test_run_refuses_a_bad_jobs_request_before_any_trial(
    runner: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["run", "tiny.yaml", *args, "--no-progress"])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "tunebridge-runs").exists()
