"""``tunebridge run --jobs N|auto --gpus-per-job G``: which GPUs each local worker process may see.

Worker 0 is the ``run`` process itself (it runs trials too); workers 1..N-1 are the processes it
spawns. Worker ``i`` sees GPUs ``i*G .. i*G+G-1`` of the visible ones through ``CUDA_VISIBLE_DEVICES``.
The run process restricts itself before torch initialises CUDA (CUDA reads the variable once, at
initialisation), so GPUs are counted without initialising CUDA here: ``CUDA_VISIBLE_DEVICES``, else
``nvidia-smi -L``, else ``torch.cuda.device_count()`` in a child process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunebridge.errors import SchemaError, TunebridgeError

__all__ = [
    "Gpus",
    "JobPlan",
    "parse_nvidia_smi",
    "parse_visible_devices",
    "plan_jobs",
    "restrict_this_process",
    "visible_gpus",
    "worker_env",
]

_VAR = "CUDA_VISIBLE_DEVICES"
_GPU_LINE = re.compile(r"^GPU (\d+):")
_MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (MIG-[^)\s]+)\)")


@dataclass(frozen=True)
class Gpus:
    """The GPUs a process can see (``CUDA_VISIBLE_DEVICES`` entries, in order) and how they were counted."""

    ids: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class JobPlan:
    """How many local workers run, and the ``CUDA_VISIBLE_DEVICES`` of each (None: left as it is).

    ``devices[0]`` belongs to the ``run`` process itself; ``note`` is a line to print, or empty.
    """

    jobs: int
    gpus_per_job: int
    devices: tuple[str | None, ...]
    note: str = ""


def parse_visible_devices(value: str) -> tuple[str, ...]:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value leaves visible: CUDA stops at the first invalid entry.

    Example:
        >>> parse_visible_devices("2, 3,-1,4")
        ('2', '3')
        >>> parse_visible_devices("")
        ()
    """
    ids: list[str] = []
    for token in value.split(","):
        token = token.strip()
        if not token or token.startswith("-"):  # "-1" is the usual way to hide every GPU
            break
        ids.append(token)
    return tuple(ids)


def parse_nvidia_smi(text: str) -> tuple[str, ...]:
    """The CUDA devices ``nvidia-smi -L`` lists: a GPU's index, or the UUIDs of its MIG instances.

    A GPU in MIG mode is usable only through its instances, one per process, each named by its UUID.
    """
    ids: list[str] = []
    gpu: str | None = None
    migs: list[str] = []
    for line in [*text.splitlines(), "GPU -1: end"]:
        mig = _MIG_LINE.match(line)
        if mig:
            migs.append(mig.group(1))
            continue
        if line.startswith("GPU "):
            if gpu is not None:
                ids.extend(migs or [gpu])
            found = _GPU_LINE.match(line)
            gpu, migs = (found.group(1) if found else None), []
    return tuple(ids)


def visible_gpus(environ: Mapping[str, str] | None = None) -> Gpus:
    """The GPUs this process would see, counted without initialising CUDA in it."""
    env = os.environ if environ is None else environ
    if _VAR in env:
        return Gpus(parse_visible_devices(env[_VAR]), f"{_VAR}={env[_VAR]!r}")
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is not None:
        try:
            proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            proc = None
        if proc is not None and proc.returncode == 0:
            return Gpus(parse_nvidia_smi(proc.stdout), "nvidia-smi -L")
    # Counting with torch in this process would initialise CUDA before CUDA_VISIBLE_DEVICES is set.
    code = "import torch; print(torch.cuda.device_count())"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
        count = int(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        count = 0
    return Gpus(tuple(str(i) for i in range(count)), "torch.cuda.device_count()")


def _jobs_error(value: object, fix: str) -> SchemaError:
    return SchemaError("`--jobs` must be a positive integer or auto", path="--jobs", value=repr(value), fix=fix)


def plan_jobs(jobs: str, gpus_per_job: int | None, gpus: Gpus | None) -> JobPlan:
    """The local workers of ``run --jobs JOBS --gpus-per-job G`` on the visible ``gpus``.

    ``auto`` starts one worker per ``G`` visible GPUs (``G`` defaults to 1 there), or 1 worker without a
    GPU; a number starts that many, each with ``G`` GPUs (``G`` defaults to 0: no restriction).
    ``gpus`` may be None when neither ``auto`` nor ``G`` asks for them.

    Raises:
        SchemaError: ``jobs`` is neither a positive integer nor ``auto``, ``G`` is negative, or the
            workers ask for more GPUs than are visible.
    """
    if gpus_per_job is not None and gpus_per_job < 0:
        raise SchemaError(
            "`--gpus-per-job` must be >= 0", path="--gpus-per-job", value=gpus_per_job, fix="Write e.g. 1."
        )
    visible = gpus.ids if gpus is not None else ()
    source = gpus.source if gpus is not None else "not counted"
    if jobs.strip().lower() == "auto":
        per_job = 1 if gpus_per_job is None else gpus_per_job
        if per_job == 0:
            raise SchemaError(
                "`--jobs auto` starts one job per GPU(s), so `--gpus-per-job` must be >= 1",
                path="--gpus-per-job",
                value=0,
                fix="Drop --gpus-per-job (auto gives each job 1 GPU), or give a number: --jobs 4.",
            )
        if not visible:
            return JobPlan(1, 0, (None,), f"--jobs auto: no GPU visible ({source}), so 1 job")
        n = len(visible) // per_job
        if n == 0:
            raise _too_many(1, per_job, visible, source)
        idle = visible[n * per_job :]
        note = f"--jobs auto: {n} job(s), {per_job} GPU(s) each ({source})"
        note += f"; left idle: {','.join(idle)}" if idle else ""
        return JobPlan(n, per_job, _slices(visible, n, per_job), note)
    try:
        n = int(jobs)
    except ValueError:
        raise _jobs_error(jobs, "Write e.g. --jobs 4, or --jobs auto for one job per GPU.") from None
    if n < 1:
        raise _jobs_error(jobs, "Write e.g. --jobs 4, or --jobs auto for one job per GPU.")
    per_job = gpus_per_job or 0
    if per_job == 0:
        return JobPlan(n, 0, (None,) * n)
    if n * per_job > len(visible):
        raise _too_many(n, per_job, visible, source)
    return JobPlan(n, per_job, _slices(visible, n, per_job))


def _slices(visible: Sequence[str], n: int, per_job: int) -> tuple[str | None, ...]:
    return tuple(",".join(visible[i * per_job : (i + 1) * per_job]) for i in range(n))


def _too_many(n: int, per_job: int, visible: Sequence[str], source: str) -> SchemaError:
    return SchemaError(
        "the local workers ask for more GPUs than are visible",
        path="--gpus-per-job",
        value=f"{n} job(s) x {per_job} GPU(s) = {n * per_job}, with {len(visible)} visible ({source})",
        fix=f"Use --jobs auto (one job per {per_job} GPU(s)), fewer --jobs, or a smaller --gpus-per-job.",
    )


def worker_env(base: Mapping[str, str], devices: str | None) -> dict[str, str]:
    """The environment of a spawned worker: ``base`` with its ``CUDA_VISIBLE_DEVICES`` (None: unchanged)."""
    env = dict(base)
    if devices is not None:
        env[_VAR] = devices
    return env


def restrict_this_process(devices: str | None) -> None:
    """Give this process (worker 0) its GPUs, before anything initialises CUDA in it.

    Raises:
        TunebridgeError: CUDA is already initialised here, so the restriction could not take effect.
    """
    if devices is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise TunebridgeError(
            "--gpus-per-job: CUDA is already initialised in this process, so CUDA_VISIBLE_DEVICES cannot "
            f"restrict it to GPUs {devices}. Run `tunebridge run` as its own process."
        )
    os.environ[_VAR] = devices
