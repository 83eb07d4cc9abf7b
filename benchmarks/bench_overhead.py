"""tunebridge's per-study cost vs a hand-written Optuna + Lightning loop, same process, same work.

Both sides train the built-in MLP on digits for the same configs (random search, same seed, the same
number of epochs, no pruning, early stopping off) with a quiet Trainer. The baseline is what a user
writes by hand: an Optuna objective that builds the module, adds optuna-integration's
PyTorchLightningPruningCallback and calls Trainer.fit. Rounds alternate (baseline, tunebridge, ...)
to spread machine noise; medians and the ratio tunebridge / baseline are printed.

Run:  python benchmarks/bench_overhead.py [--trials 8] [--epochs 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import lightning.pytorch as pl
import optuna
import torch
from optuna_integration import PyTorchLightningPruningCallback

import tunebridge
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Float, Int, Space

SPACE = Space(n_layers=Int(1, 2), units=Choice([32, 64], per_layer="n_layers"), lr=Float(1e-3, 1e-2, log=True))


def baseline(trials: int, epochs: int) -> float:
    def objective(trial: optuna.Trial) -> float:
        n = trial.suggest_int("n_layers", 1, 2)
        config = {"n_layers": n, "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)}
        for i in range(n):
            config[f"units/{i}"] = trial.suggest_categorical(f"units/{i}", [32, 64])
        module, data = build_builtin("mlp", "digits", config, max_epochs=epochs, seed=0)
        trainer = pl.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_acc")],
        )
        trainer.fit(module, datamodule=data)
        return float(trainer.callback_metrics["val_acc"])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


def with_tunebridge(trials: int, epochs: int) -> float:
    def build(config: dict) -> tuple:
        return build_builtin("mlp", "digits", config, max_epochs=epochs, seed=0)

    start = time.perf_counter()
    tunebridge.tune(
        build,
        SPACE,
        metric="val_acc",
        mode="max",
        search="random",
        trials=trials,
        max_epochs=epochs,
        seed=0,
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    with_tunebridge(1, 1), baseline(1, 1)  # warm up imports and caches
    base, tb = [], []
    for _ in range(args.rounds):
        base.append(baseline(args.trials, args.epochs))
        tb.append(with_tunebridge(args.trials, args.epochs))
    b, t = statistics.median(base), statistics.median(tb)
    print(f"{args.trials} trials x {args.epochs} epochs, {args.rounds} rounds (medians)")
    print(f"hand-written optuna + lightning: {b:.2f} s  ({b / args.trials * 1000:.0f} ms/trial)")
    print(f"tunebridge.tune:                 {t:.2f} s  ({t / args.trials * 1000:.0f} ms/trial)")
    print(f"ratio tunebridge / baseline:     {t / b:.3f}")


if __name__ == "__main__":
    main()
