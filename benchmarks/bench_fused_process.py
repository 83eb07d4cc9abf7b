"""Fused vs unfused, whole process: ``python -m tunebridge run SPEC [--fuse K]`` on a SQLite study, as a user runs it.

Run:  python benchmarks/bench_fused_process.py [--pairs 2] [--trials 30] [--fuse 32] [--which fixed recipe]

Two specs, both on digits: ``fixed`` (the recipe with its structure fixed: 2x64 relu, batch 64, no batch
norm; lr, optimizer, momentum, schedule, dropout, weight decay searched) and ``recipe`` (the digits_mlp
recipe as shipped). Each pair runs unfused then fused in fresh processes from an empty folder (imports,
study creation, SQLite writes and the summary included), alternating; prints every wall time and the
median ratio unfused / fused per spec. Each pair also times the start-up floor both pay: a process that
only imports what a run imports (tunebridge's CLI, Lightning, torch, optuna, sklearn's data); the ratio
past it (unfused - floor) / (fused - floor) is what the engine controls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXED = """\
study: fixed-structure
model: mlp
data: digits
space:
  n_layers: {type: fixed, value: 2}
  units: {type: fixed, value: 64}
  activation: {type: fixed, value: relu}
  batch_size: {type: fixed, value: 64}
  batch_norm: {type: fixed, value: false}
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  optimizer: {type: choice, values: [sgd, momentum, adam, adamw]}
  momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: [momentum]}}
  lr_schedule: {type: choice, values: [none, cosine]}
  weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
  dropout: {type: float, low: 0.0, high: 0.5}
metric: val_acc
mode: max
max_epochs: 20
early_stopping: {patience: 4, min_delta: 0.001}
pruner: {policy: asha, grace_period: 3, reduction_factor: 3}
search: tpe
trials: 30
seed: 0
threads: 1
"""


def spec_path(which: str, folder: Path) -> str:
    if which == "recipe":
        return "digits_mlp"
    path = folder / "fixed.yaml"
    path.write_text(FIXED)
    return str(path)


def one(which: str, trials: int, fuse: str | None, seed: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_path(which, Path(tmp))
        cmd = [sys.executable, "-m", "tunebridge", "run", spec, "--trials", str(trials), "--seed", str(seed)]
        cmd += ["--no-progress", "--accelerator", "cpu"]
        if fuse:
            cmd += ["--fuse", fuse]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return time.perf_counter() - started


FLOOR = "import tunebridge.cli, tunebridge.api, tunebridge.lightning.builtin, lightning, optuna, sklearn.datasets"


def floor() -> float:
    """Seconds for a process that imports what a run imports and does nothing else."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--fuse", default="32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--which", nargs="+", default=["fixed", "recipe"], choices=["fixed", "recipe"])
    args = parser.parse_args()
    for which in args.which:
        ratios, past = [], []
        for pair in range(args.pairs):
            unfused = one(which, args.trials, None, args.seed)
            fused = one(which, args.trials, args.fuse, args.seed)
            start = floor()
            ratios.append(unfused / fused)
            past.append((unfused - start) / (fused - start))
            print(
                f"{which} pair {pair}: unfused {unfused:6.1f} s   fused {fused:6.1f} s   {unfused / fused:.2f}x   "
                f"(start-up floor {start:.1f} s; past it {past[-1]:.2f}x)",
                flush=True,
            )
        print(
            f"{which}: median unfused/fused over {args.pairs} pairs: {statistics.median(ratios):.2f}x "
            f"(past the start-up floor: {statistics.median(past):.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
