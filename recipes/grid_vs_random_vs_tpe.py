"""Grid vs random vs TPE on the same space and budget (digits MLP), with one seed.

Run:  python grid_vs_random_vs_tpe.py [--trials N] [--epochs E]   (after `tunebridge recipes --copy .`)
"""

from __future__ import annotations

import argparse

import torch

import tunebridge
from tunebridge import Choice, Float, Int, Space
from tunebridge.lightning import builtin_builder

space = Space(
    n_layers=Int(1, 2),
    units=Choice([32, 128], ordered=True, per_layer="n_layers"),
    lr=Float(1e-3, 1e-1, log=True, grid=(1e-3, 1e-2, 1e-1)),  # a float needs an explicit grid for grid search
    optimizer=Choice(["adam", "momentum"]),
    momentum=Float(0.5, 0.95, grid=(0.9,), when={"optimizer": "momentum"}),
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"grid size: {len(space.grid())} configs")
    build = builtin_builder("mlp", "digits", max_epochs=args.epochs, seed=0)
    rows = []
    for search in ("grid", "random", "tpe"):
        result = tunebridge.tune(
            build,
            space,
            metric="val_acc",
            mode="max",
            search=search,
            trials=args.trials,
            max_epochs=args.epochs,
            seed=0,
            run={"progress": False},
        )
        rows.append((search, result.best_value, result.record["wall_time_s"], result.best_config))
    for search, best, wall, config in rows:
        print(f"{search:>6}: best val_acc {best:.4f} in {wall:.1f} s  {config}")
