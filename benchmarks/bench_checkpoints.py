"""What keeping the best weights costs per trial: checkpoints taken in memory vs written at every better epoch.

Run:  python benchmarks/bench_checkpoints.py [--seeds 0 1 2] [--trials 30]

Runs the digits_mlp recipe unfused (TPE, ASHA, early stopping; ``keep_checkpoints: 1``) twice per seed in
one process: as tunebridge does now (small weights are checkpointed in memory at each better epoch and
written once when the trial completes; a pruned trial writes nothing) and as before (``IN_MEMORY_LIMIT = 0``:
a file written at each better epoch, pruned trials included). Both runs train the same trials. Prints the
files written and the time spent taking and writing checkpoints per trial, then medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import tunebridge
from tunebridge.cli._recipes import BUNDLED
from tunebridge.lightning import _callbacks, builtin_builder
from tunebridge.spec import load_spec


def timed(counter: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            counter[name + " s"] += time.perf_counter() - started
            counter[name + " n"] += 1

    return wrapper


def run(seed: int, trials: int, limit: int) -> tuple[dict[str, float], list[float]]:
    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    build = builtin_builder("mlp", "digits", max_epochs=spec.max_epochs, seed=seed)
    kwargs = spec.tune_kwargs(None)
    kwargs.update(trials=trials, seed=seed, storage=None)
    kwargs["trainer"].update(accelerator="cpu", threads=1)
    kwargs["run"].update(progress=False, spec_hash=None)
    counter = {f"{name} {unit}": 0.0 for name in ("save", "take", "write") for unit in ("s", "n")}
    originals = (_callbacks._save_atomically, _callbacks._checkpoint_in_memory, _callbacks._write_atomically)
    _callbacks.IN_MEMORY_LIMIT, saved_limit = limit, _callbacks.IN_MEMORY_LIMIT
    _callbacks._save_atomically = timed(counter, "save", originals[0])
    _callbacks._checkpoint_in_memory = timed(counter, "take", originals[1])
    _callbacks._write_atomically = timed(counter, "write", originals[2])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kwargs["run"]["checkpoints"] = {"dir": str(Path(tmp) / "ckpt")}
            result = tunebridge.tune(build, spec.space, **kwargs)
    finally:
        _callbacks._save_atomically, _callbacks._checkpoint_in_memory, _callbacks._write_atomically = originals
        _callbacks.IN_MEMORY_LIMIT = saved_limit
    values = [float(t.value) for t in result.study.trials if t.value is not None]
    return counter, values


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(99, 2, _callbacks.IN_MEMORY_LIMIT)  # warm-up
    now_ms, before_ms = [], []
    for seed in args.seeds:
        now, values_now = run(seed, args.trials, _callbacks.IN_MEMORY_LIMIT)
        before, values_before = run(seed, args.trials, 0)
        assert values_now == values_before, "both runs must train the same trials"
        cost_now = (now["take s"] + now["write s"] + now["save s"]) / args.trials * 1000
        cost_before = (before["take s"] + before["write s"] + before["save s"]) / args.trials * 1000
        now_ms.append(cost_now)
        before_ms.append(cost_before)
        print(
            f"seed {seed}: now {int(now['take n'])} taken in memory, {int(now['write n'] + now['save n'])} files, "
            f"{cost_now:.1f} ms/trial | before {int(before['save n'])} files, {cost_before:.1f} ms/trial",
            flush=True,
        )
    print(
        f"median per trial: now {statistics.median(now_ms):.1f} ms, before {statistics.median(before_ms):.1f} ms "
        f"({statistics.median(before_ms) / max(statistics.median(now_ms), 1e-9):.1f}x less)"
    )


if __name__ == "__main__":
    main()
