"""Preemption-safe trials (issue 17): the work a SIGKILLed worker loses, and what writing resume points costs.

Part ``kills``: ``--trials`` grid configs x ``--epochs`` epochs (built-in MLP on digits, ``trainer:
{deterministic: true}``, ``threads: 1``, no pruning) on ``--workers`` real ``tunebridge worker`` processes
sharing one PostgreSQL study. Every ``--kill-every`` seconds (counted from the last kill) one worker in
the middle of an epoch is SIGKILLed (``--victim any``: any live worker) and a fresh one started in its
place (the victim drawn with ``--kill-seed``); the same spec runs once more without kills (another study
name). Each arm runs with resume points on (the default) and with ``resume: false`` (each kill loses the
whole trial so far; an arm still unfinished after ``--arm-timeout`` s is stopped and reported as such).
A callback logs the start of every epoch trained and sleeps ``--epoch-sleep`` seconds per epoch, spread
over its batches, so that a kill lands mid-epoch as it would in a long training (digits trains an epoch
in ~60 ms here). Lost work = epochs begun - trials x epochs: an epoch cut short by a kill counts as a
whole one lost (an unfinished arm: begun - epochs in the study with resume points on, begun - complete
trials x epochs without). The table
also gives the study's own count (sum over trials of the epochs they reported minus ``tb_resumed_at``)
and whether the complete trials' (config, curve) pairs and the best value equal the uninterrupted
study's exactly. The configs come from a grid, not ``search: random``: a joining worker seeds its
sampler from its own PID (``_queue._reseed``), so random configs differ with every kill pattern.

Part ``cost``: the digits_mlp recipe (TPE, ASHA, early stopping) in this process on a SQLite study
(file storage: resume points on), ``run["resume"]`` = the default (every epoch) vs False, in
alternating pairs (seeds 0..pairs-1); wall time per run, median and ratio, and the time inside the
resume machinery (the point's checkpoint, its resume.json + fsync, the folder swap; the kept weights
written at each better epoch, which resume points require, vs taken in memory and written once).
The script asserts both runs of a pair trained the same trials (configs and curves).

Run:  python benchmarks/bench_preempt.py [--parts kills cost] [--trials 20] [--epochs 20] [--workers 3]
      [--kill-every 10] [--epoch-sleep 0.2] [--pairs 4] [--recipe-trials 10] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

SPEC = """
study: {study}
model: mlp
data: digits
space:
  n_layers: {{type: choice, values: [1]}}
  units: {{type: choice, values: {units}, per_layer: n_layers}}
  lr: {{type: choice, values: {lrs}}}
  dropout: {{type: choice, values: [0.2]}}
metric: val_loss
mode: min
max_epochs: {epochs}
pruner: {{policy: none}}
search: grid
trials: {trials}
seed: 0
threads: 1
trainer: {{deterministic: true}}
callbacks: [bench_epochs:Epochs]
resume: {resume}
"""

CALLBACK = """
import os, time
import lightning.pytorch as pl


class Epochs(pl.Callback):
    '''Logs the start of every epoch trained (with its pid) and spreads a sleep over its batches.'''

    def on_train_epoch_start(self, trainer, pl_module):
        with open(os.environ["TB_EPOCH_LOG"], "a") as f:
            f.write(f"{os.getpid()} {trainer.current_epoch + 1} {time.time()}\\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(float(os.environ["TB_EPOCH_SLEEP"]) / max(1, int(trainer.num_training_batches)))
"""


# ---------------------------------------------------------------------------------------------- kills


@dataclass
class Arm:
    name: str
    resume: bool
    kills: int = 0
    wall: float = 0.0
    begun: int = 0  # epochs begun (the callback's log)
    reported: int = 0  # epochs the study holds as trained (reported minus those copied on resume)
    complete: int = 0
    resumed: int = 0  # trials that went on from a resume point
    refused: int = 0  # trials whose point was refused
    requeued: int = 0  # trials failed and re-queued (a kill that interrupted a trial)
    curves: list[tuple[tuple[tuple[str, Any], ...], tuple[float, ...]]] = field(default_factory=list)
    best: float | None = None
    exit_codes: list[int] = field(default_factory=list)
    finished: bool = True  # False: stopped at --arm-timeout with trials left


def _grid(trials: int) -> tuple[list[int], list[float]]:
    """Grid values whose product holds at least ``trials`` configs (the queue takes the first ``trials``)."""
    units = [16, 32, 64, 128]
    n_lr = max(1, -(-trials // len(units)))
    lrs = [round(0.001 * (100 ** (i / max(1, n_lr - 1))), 6) for i in range(n_lr)]  # 0.001 .. 0.1
    return units, lrs


def _project(folder: Path, study: str, args: argparse.Namespace, resume: bool) -> Path:
    folder.mkdir(parents=True)
    (folder / "bench_epochs.py").write_text(CALLBACK)
    units, lrs = _grid(args.trials)
    spec = folder / "spec.yaml"
    spec.write_text(
        SPEC.format(
            study=study,
            units=units,
            lrs=lrs,
            epochs=args.epochs,
            trials=args.trials,
            resume="{every_epochs: 1}" if resume else "false",
        )
    )
    return spec


def _spawn(spec: Path, args: argparse.Namespace, n: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TB_EPOCH_LOG": str(spec.parent / "epochs.log"),
        "TB_EPOCH_SLEEP": str(args.epoch_sleep),
        "PYTHONPATH": str(spec.parent),
    }
    cmd = [sys.executable, "-m", "tunebridge", "worker", str(spec), "--storage", args.postgres, "--max-retry", "1000"]
    out = open(spec.parent / f"worker_{n}.log", "wb")  # closed with the process
    proc = subprocess.Popen(cmd, cwd=spec.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc


def _study_trials(url: str, study: str) -> list[Any]:
    import optuna

    from tunebridge.backends.optuna import make_storage

    try:
        return optuna.load_study(study_name=study, storage=make_storage(url)).get_trials(deepcopy=False)
    except KeyError:
        return []


def _training_pids(url: str, study: str, log: Path, recent: float) -> set[int]:
    """PIDs of the workers that hold a running trial and began an epoch in the last ``recent`` seconds
    (not one still setting its trial up: a kill there would lose no epoch)."""
    from optuna.trial import TrialState

    from tunebridge.backends.optuna._liveness import PROCESS_ATTR

    pids = set()
    for t in _study_trials(url, study):
        process = t.system_attrs.get(PROCESS_ATTR)
        if t.state == TrialState.RUNNING and isinstance(process, list) and len(process) == 2:
            pids.add(int(process[1]))
    last: dict[int, float] = {}
    for line in log.read_text().split("\n") if log.exists() else []:
        parts = line.split()
        if len(parts) == 3:
            last[int(parts[0])] = float(parts[2])
    now = time.time()
    return {pid for pid in pids if now - last.get(pid, 0.0) < recent}


def _unfinished(url: str, study: str, trials: int) -> bool:
    from optuna.trial import TrialState

    return bool(sum(t.state == TrialState.COMPLETE for t in _study_trials(url, study)) < trials)


def run_arm(root: Path, args: argparse.Namespace, name: str, resume: bool, kill: bool) -> Arm:
    from optuna.trial import TrialState

    from tunebridge import _record

    study = f"bench-preempt-{name}-{uuid.uuid4().hex[:8]}"
    spec = _project(root / name, study, args, resume)
    arm = Arm(name, resume)
    log = spec.parent / "epochs.log"
    rng = random.Random(args.kill_seed)
    started = time.monotonic()
    procs = [_spawn(spec, args, n) for n in range(args.workers)]
    killed: set[int] = set()
    next_kill = started + args.kill_every
    deadline = started + args.arm_timeout
    try:
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if now > deadline:  # reported as unfinished (without resume points, kills can outpace a trial)
                arm.finished = False
                print(f"  {name}: not done after {args.arm_timeout:g} s, stopped", flush=True)
                break
            if (
                kill
                and now >= next_kill
                and arm.kills < args.max_kills
                and _unfinished(args.postgres, study, args.trials)
            ):
                alive = {p.pid: p for p in procs if p.poll() is None}
                if args.victim == "any":
                    candidates = sorted(alive)
                else:  # a kill between trials or during start-up would lose nothing: wait for a training one
                    recent = 2 * args.epoch_sleep + 1.0
                    candidates = sorted(p for p in _training_pids(args.postgres, study, log, recent) if p in alive)
                if candidates:
                    victim = alive[rng.choice(candidates)]
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()
                    killed.add(victim.pid)
                    arm.kills += 1
                    procs.append(_spawn(spec, args, len(procs)))
                    # From this kill, not the schedule: kills that waited for a training worker pile up
                    # otherwise, and hit each fresh worker at its first epoch.
                    next_kill = time.monotonic() + args.kill_every
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    arm.wall = time.monotonic() - started
    arm.exit_codes = [p.returncode for p in procs if p.pid not in killed and arm.finished]
    if any(code != 0 for code in arm.exit_codes):
        raise RuntimeError(f"{name}: a worker failed {arm.exit_codes} (see {spec.parent}/worker_*.log)")
    arm.begun = sum(1 for line in log.read_text().split("\n") if line.strip())
    trials = _study_trials(args.postgres, study)
    for t in trials:
        resumed_at = int(_record.bookkeeping(t, _record.RESUMED_AT) or 0)
        arm.reported += len(t.intermediate_values) - resumed_at
        arm.resumed += resumed_at > 0
        arm.refused += bool(_record.bookkeeping(t, _record.RESUME_REFUSED))
        arm.requeued += t.state == TrialState.FAIL and bool(_record.bookkeeping(t, _record.REQUEUED))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    arm.complete = len(done)
    arm.curves = sorted(
        (
            tuple(sorted(t.params.items())),
            tuple(t.intermediate_values[e] for e in sorted(t.intermediate_values)),
        )
        for t in done
    )
    arm.best = min(float(t.value) for t in done) if done else None
    return arm


def kills_part(args: argparse.Namespace) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix="bench-preempt-"))
    needed = args.trials * args.epochs
    print(
        f"kills: {args.trials} trials x {args.epochs} epochs, {args.workers} workers, a kill every "
        f"{args.kill_every:g} s, {args.epoch_sleep:g} s sleep per epoch; folder {root}",
        flush=True,
    )
    arms: list[Arm] = []
    for name, resume, kill in (
        ("uninterrupted", True, False),
        ("killed-resume", True, True),
        ("uninterrupted-noresume", False, False),
        ("killed-noresume", False, True),
    ):
        if not kill and name != "uninterrupted" and not args.baseline_noresume:
            continue
        arm = run_arm(root, args, name, resume, kill)
        arms.append(arm)
        print(
            f"  {name}: {arm.wall:.1f} s, {arm.kills} kills, {arm.begun} epochs begun, {arm.reported} in the study, "
            f"{arm.complete} complete, {arm.resumed} resumed",
            flush=True,
        )
    base = arms[0]
    assert base.begun == needed and base.complete == args.trials, (base.begun, base.complete)
    lines = [
        "| run | resume points | wall s | kills (trials interrupted) | epochs begun / needed | epochs in the "
        "study | lost epochs | lost per kill | trials resumed (refused) | complete | (config, curve) and best "
        "= uninterrupted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        # Epochs begun that the study does not keep. Unfinished: with resume points every epoch reported
        # is kept (its trial goes on from its point); without, only the complete trials' epochs are.
        kept = needed if arm.finished else arm.reported if arm.resume else arm.complete * args.epochs
        lost = arm.begun - kept
        per_kill = f"{lost / arm.kills:.2f}" if arm.kills else "-"
        same = "identical" if arm.curves == base.curves and arm.best == base.best else "DIFFERENT"
        if not arm.finished:  # compare the trials it completed
            same = "identical so far" if set(arm.curves) <= set(base.curves) else "DIFFERENT"
        lines.append(
            f"| {arm.name} | {'on' if arm.resume else 'off'} | {arm.wall:.1f} | {arm.kills} ({arm.requeued}) | "
            f"{arm.begun} / {needed} | {arm.reported} | {lost} | {per_kill} | {arm.resumed} ({arm.refused}) | "
            f"{arm.complete} / {args.trials}{'' if arm.finished else ' (stopped)'} | {same} |"
        )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return lines


# ----------------------------------------------------------------------------------------------- cost

# What the profile times: (label, module, attribute). Functions looked up as module globals are replaced
# there; methods on their class.
PROFILED = (
    ("point: report hook (all)", "tunebridge.backends.optuna._study", "OptunaReporter._resume_point"),
    ("point: write (all)", "tunebridge.backends._resume", "ResumeWriter.write"),
    ("point: resume.json", "tunebridge.backends._resume", "_write_json"),
    ("point: discard at trial end", "tunebridge.backends.optuna._loop", "end_resume"),
    ("kept: saved at once", "tunebridge.lightning._callbacks", "_save_atomically"),
    ("kept: taken in memory", "tunebridge.lightning._callbacks", "_checkpoint_in_memory"),
    ("kept: written once", "tunebridge.lightning._callbacks", "_write_atomically"),
)
SAVE = "point: checkpoint (save/link)"


def _timed(counter: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        if name == "point: write (all)" and len(a) >= 4:  # ResumeWriter.write(self, epoch, history, save, ...)
            a = (*a[:3], _timed(counter, SAVE, a[3]), *a[4:])
        started = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            counter[name].append(time.perf_counter() - started)

    return wrapper


class Profile:
    """Times the resume machinery in this process while it is entered."""

    def __init__(self) -> None:
        self.counter: dict[str, list[float]] = defaultdict(list)
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Profile:
        import importlib

        for label, module, attr in PROFILED:
            owner: Any = importlib.import_module(module)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = owner.__dict__[name]
            self.saved.append((owner, name, original))
            setattr(owner, name, _timed(self.counter, label, original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)


def run_recipe(seed: int, trials: int, resume: bool) -> tuple[float, list[Any], dict[str, list[float]]]:
    import tunebridge
    from tunebridge.cli._recipes import BUNDLED
    from tunebridge.lightning import builtin_builder
    from tunebridge.spec import load_spec

    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    build = builtin_builder("mlp", "digits", max_epochs=spec.max_epochs, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = spec.tune_kwargs(f"sqlite:///{tmp}/x.db")
        kwargs.update(trials=trials, seed=seed)
        kwargs["trainer"].update(accelerator="cpu", threads=1)
        kwargs["run"].update(progress=False, spec_hash=None)
        if not resume:
            kwargs["run"]["resume"] = False
        with Profile() as profile:
            started, cpu_started = time.perf_counter(), time.process_time()
            result = tunebridge.tune(build, spec.space, **kwargs)
            wall = time.perf_counter() - started
            profile.counter["cpu"].append(time.process_time() - cpu_started)
        points = list(Path(tmp).glob("*/resume/trial_*"))
        assert not points, f"resume points left behind: {points}"
        trained = [
            (t.state.name, sorted(t.params.items()), [t.intermediate_values[e] for e in sorted(t.intermediate_values)])
            for t in result.study.trials
        ]
    return wall, trained, profile.counter


def cost_part(args: argparse.Namespace) -> list[str]:
    print(f"cost: digits_mlp recipe, {args.recipe_trials} trials, {args.pairs} pairs (on, off)", flush=True)
    run_recipe(99, 2, True)  # warm-up: imports, data, the first Trainer
    rows, ratios, shares, on_walls, off_walls = [], [], [], [], []
    cpu_ratios: list[float] = []  # process CPU time, on / off: what a busy machine's other load leaves out
    totals: dict[str, list[float]] = defaultdict(list)  # label -> ms per trial, per pair (on and off)
    for seed in range(args.pairs):
        order = [True, False] if seed % 2 == 0 else [False, True]
        runs = {}
        for resume in order:
            runs[resume] = run_recipe(seed, args.recipe_trials, resume)
        (on_wall, on_trials, on_prof), (off_wall, off_trials, off_prof) = runs[True], runs[False]
        assert on_trials == off_trials, f"seed {seed}: resume on/off trained different trials"
        epochs = sum(len(curve) for _, _, curve in on_trials)
        ratios.append(on_wall / off_wall)
        cpu_ratios.append(on_prof["cpu"][0] / off_prof["cpu"][0])
        on_walls.append(on_wall)
        off_walls.append(off_wall)
        for label, _, _ in (*PROFILED, (SAVE, "", "")):
            totals[f"on|{label}"].append(sum(on_prof.get(label, [])) / args.recipe_trials * 1000)
            totals[f"off|{label}"].append(sum(off_prof.get(label, [])) / args.recipe_trials * 1000)
            totals[f"on#|{label}"].append(len(on_prof.get(label, [])))
            totals[f"off#|{label}"].append(len(off_prof.get(label, [])))
        extra = sum(on_prof.get("point: report hook (all)", [])) + sum(on_prof.get("kept: saved at once", []))
        extra -= sum(off_prof.get("kept: taken in memory", [])) + sum(off_prof.get("kept: written once", []))
        shares.append(extra / off_wall)
        rows.append(
            f"| {seed} | {'on first' if order[0] else 'off first'} | {epochs} | {on_wall:.1f} | {off_wall:.1f} | "
            f"{on_wall / off_wall:.3f} | {cpu_ratios[-1]:.3f} | {extra:.2f} s ({extra / off_wall * 100:.1f} %) |"
        )
        print(rows[-1], flush=True)
    lines = [
        "| seed | order | epochs trained | resume on: wall s | resume off: wall s | on / off (wall) | on / off (CPU) | "
        "resume machinery, on - off (share of off's wall) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        f"| **median** | | | {statistics.median(on_walls):.1f} | {statistics.median(off_walls):.1f} | "
        f"**{statistics.median(ratios):.3f}** | **{statistics.median(cpu_ratios):.3f}** | "
        f"**{statistics.median(shares) * 100:.1f} %** |",
        f"| all pairs | | | {sum(on_walls):.1f} | {sum(off_walls):.1f} | {sum(on_walls) / sum(off_walls):.3f} | | |",
        # Pairs alternate which run goes first (and the first of a pair tends to be the slower one): the geometric
        # mean of the pair ratios weighs both orders alike.
        f"| geometric mean of the pairs (orders balanced) | | | | | "
        f"**{math.exp(statistics.fmean(math.log(r) for r in ratios)):.3f}** | "
        f"{math.exp(statistics.fmean(math.log(r) for r in cpu_ratios)):.3f} | |",
        "",
        "| where the time goes (median over pairs) | resume on: calls / ms per trial | resume off: calls / ms per trial |",
        "|---|---|---|",
    ]
    for label, _, _ in (*PROFILED[:2], (SAVE, "", ""), *PROFILED[2:]):
        on_n, off_n = statistics.median(totals[f"on#|{label}"]), statistics.median(totals[f"off#|{label}"])
        on_ms, off_ms = statistics.median(totals[f"on|{label}"]), statistics.median(totals[f"off|{label}"])
        lines.append(f"| {label} | {on_n:.0f} / {on_ms:.1f} | {off_n:.0f} / {off_ms:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["kills", "cost"], default=["kills", "cost"])
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between kills")
    parser.add_argument("--kill-seed", type=int, default=0, help="seeds the choice of the worker killed")
    parser.add_argument("--max-kills", type=int, default=1000)
    parser.add_argument(
        "--victim",
        choices=["training", "any"],
        default="training",
        help="kill only a worker in the middle of an epoch (every kill interrupts a trial), or any live one",
    )
    parser.add_argument("--epoch-sleep", type=float, default=0.2, help="seconds slept per epoch, over its batches")
    parser.add_argument("--arm-timeout", type=float, default=600.0)
    parser.add_argument("--baseline-noresume", action="store_true", help="also run resume: false without kills")
    parser.add_argument("--keep", action="store_true", help="keep the workers' folders and logs")
    parser.add_argument("--pairs", type=int, default=4, help="alternating pairs (an even number balances the order)")
    parser.add_argument("--recipe-trials", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="the smallest sizes (a test runs it)")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.epochs, args.workers, args.pairs, args.recipe_trials = 2, 4, 2, 1, 2
        args.kill_every, args.epoch_sleep, args.max_kills = 6.0, 0.5, 1
    import torch

    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)
    tables = []
    if "kills" in args.parts:
        tables.append(kills_part(args))
    if "cost" in args.parts:
        tables.append(cost_part(args))
    for table in tables:
        print()
        print("\n".join(table))


if __name__ == "__main__":
    main()
