"""How fast could the digits_mlp recipe's trials train at all on this CPU? A framework-free floor.

Run:  python benchmarks/bench_fused_floor.py [--seeds 0 1 2] [--trials 30]

For each seed it runs the recipe unfused (one Lightning Trainer per trial) and fused (``fuse: auto``),
then retrains, for each run, exactly the trials that run trained -- each config for the number of
epochs it reported -- as a hand-written plain PyTorch loop: the module's own ``net``, its own
``torch.optim`` optimizer and scheduler, the same batches, one validation pass per epoch, no Lightning,
no Optuna, no fusion. That loop is what a trial costs when nothing but its own arithmetic is paid, one
model at a time, so:

- ``unfused / floor(unfused's trials)`` is the most any engine that computes each member with
  PyTorch's own CPU kernels could gain on those trials by removing framework overhead alone;
- ``fused / floor(fused's trials)`` is what the fused engine pays over that loop for the trials it
  trained (below 1: fusion amortizes per-op cost over members; above 1: padding and masks cost more).

Prints per seed the three times and the ratios, then medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

import tunebridge
from tunebridge.cli._recipes import BUNDLED
from tunebridge.lightning import builtin_builder
from tunebridge.lightning._runner import trial_seed
from tunebridge.spec import load_spec


def tuned(seed: int, trials: int, fuse: str | None) -> tuple[float, list[tuple[dict[str, Any], int]], float]:
    """Wall time, the (config, epochs reported) of every trial, and the best value of one recipe run."""
    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    build = builtin_builder("mlp", "digits", max_epochs=spec.max_epochs, seed=seed)
    kwargs = spec.tune_kwargs(None)
    kwargs.update(trials=trials, seed=seed, storage=None)
    kwargs["trainer"].update(accelerator="cpu", threads=1)
    kwargs["run"].update(progress=False, fuse=fuse, spec_hash=None)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs["run"]["checkpoints"] = {"dir": str(Path(tmp) / "ckpt")}
        started = time.perf_counter()
        result = tunebridge.tune(build, spec.space, **kwargs)
        wall = time.perf_counter() - started
    trained = [(dict(t.user_attrs["config"]), len(t.intermediate_values)) for t in result.study.trials]
    return wall, trained, float(result.best_value or 0.0)


def plain_loop(seed: int, trained: list[tuple[dict[str, Any], int]]) -> float:
    """Seconds to train every (config, epochs) with a hand-written loop (build included, as a trial's is)."""
    build = builtin_builder("mlp", "digits", max_epochs=20, seed=seed)
    started = time.perf_counter()
    for config, epochs in trained:
        torch.manual_seed(trial_seed(seed, config))
        module, dm = build(dict(config))
        dm.setup("fit")
        x, y, x_val, y_val = dm.train_set.x, dm.train_set.y, dm.val_set.x, dm.val_set.y
        configured = module.configure_optimizers()
        optimizer, scheduler = configured, None
        if isinstance(configured, dict):
            optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
        generator = torch.Generator().manual_seed(dm.seed)
        n, batch = len(y), dm.batch_size
        for _ in range(epochs):
            module.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                loss = module.compute_loss((x[idx], y[idx]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            module.eval()
            with torch.no_grad():
                logits = module(x_val)
                float(F.cross_entropy(logits, y_val))
                float((logits.argmax(dim=1) == y_val).float().mean())
            if scheduler is not None:
                scheduler.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tuned(99, 2, None)  # warm-up: imports and the first Lightning run
    rows = []
    for seed in args.seeds:
        unfused, u_trials, u_best = tuned(seed, args.trials, None)
        fused, f_trials, f_best = tuned(seed, args.trials, "auto")
        floor_u, floor_f = plain_loop(seed, u_trials), plain_loop(seed, f_trials)
        epochs_u, epochs_f = sum(e for _, e in u_trials), sum(e for _, e in f_trials)
        rows.append((unfused / floor_u, fused / floor_f, unfused / fused))
        print(
            f"seed {seed}: unfused {unfused:5.1f} s ({epochs_u} trial-epochs, best {u_best:.4f}), "
            f"its plain-loop floor {floor_u:5.1f} s -> at most {unfused / floor_u:.2f}x | "
            f"fused {fused:5.1f} s ({epochs_f} trial-epochs, best {f_best:.4f}), its floor {floor_f:5.1f} s "
            f"-> fused/floor {fused / floor_f:.2f} | unfused/fused {unfused / fused:.2f}x",
            flush=True,
        )
    ceiling, over, ratio = (statistics.median(r[i] for r in rows) for i in range(3))
    print(
        f"median: unfused / plain-loop floor {ceiling:.2f}x; fused / its floor {over:.2f}; unfused / fused {ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
