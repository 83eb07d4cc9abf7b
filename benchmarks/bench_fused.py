"""Fused cohorts vs one Trainer per trial on the digits_mlp recipe (CPU), in one process.

Run:  python benchmarks/bench_fused.py [--seeds 0 1] [--trials 30] [--fuse auto] [--fixed-structure]
Prints, per seed, the wall time, process CPU time and best val_acc of both, then the median ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import tunebridge
from tunebridge.cli._recipes import BUNDLED
from tunebridge.spec import load_spec

# The structure fixed, the training hyperparameters searched: what fused cohorts are built for.
FIXED_STRUCTURE = """
n_layers: {type: fixed, value: 2}
units: {type: fixed, value: 64}
activation: {type: fixed, value: relu}
batch_size: {type: fixed, value: 64}
lr: {type: float, low: 0.0001, high: 0.1, log: true}
optimizer: {type: choice, values: [sgd, momentum, adam, adamw]}
momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: [momentum]}}
weight_decay: {type: float, low: 0.000001, high: 0.01, log: true}
dropout: {type: float, low: 0.0, high: 0.5}
"""


def run(seed: int, trials: int, fuse: str | None, *, fixed: bool = False) -> tuple[float, float, float]:
    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    from tunebridge.lightning import builtin_builder
    from tunebridge.schema import Space

    build = builtin_builder("mlp", "digits", max_epochs=spec.max_epochs, seed=seed)
    space = Space.from_yaml(FIXED_STRUCTURE) if fixed else spec.space
    kwargs = spec.tune_kwargs(None)
    kwargs.update(trials=trials, seed=seed, storage=None)
    kwargs["trainer"].update(accelerator="cpu", threads=1)
    kwargs["run"].update(progress=False, fuse=fuse, spec_hash=None)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs["run"]["checkpoints"] = {"dir": str(Path(tmp) / "ckpt")}
        started, cpu = time.perf_counter(), time.process_time()
        result = tunebridge.tune(build, space, **kwargs)
        return time.perf_counter() - started, float(result.best_value or 0.0), time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--fuse", default="auto")
    parser.add_argument("--fixed-structure", action="store_true", help="search training hyperparameters only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(99, 2, None)  # warm-up: imports and the first Lightning run
    ratios, cpu_ratios = [], []
    for seed in args.seeds:
        unfused, acc_u, cpu_u = run(seed, args.trials, None, fixed=args.fixed_structure)
        fused, acc_f, cpu_f = run(seed, args.trials, args.fuse, fixed=args.fixed_structure)
        ratios.append(unfused / fused)
        cpu_ratios.append(cpu_u / cpu_f)
        print(
            f"seed {seed}: unfused {unfused:6.1f} s (cpu {cpu_u:6.1f} s, best val_acc {acc_u:.4f})   "
            f"fused {fused:6.1f} s (cpu {cpu_f:6.1f} s, best val_acc {acc_f:.4f})   "
            f"ratio {unfused / fused:.2f}x (cpu time {cpu_u / cpu_f:.2f}x)",
            flush=True,
        )
    print(f"median speed-up (unfused wall time / fused wall time): {statistics.median(ratios):.2f}x")
    print(
        f"median CPU-time ratio (the same, in process time; robust to other load): {statistics.median(cpu_ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
