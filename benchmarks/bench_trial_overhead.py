"""tunebridge's own cost per trial (space -> suggest -> bookkeeping), against plain Optuna, in memory.

Run:  python benchmarks/bench_trial_overhead.py [--trials 2000] [--repeats 3]
A trivial objective (one reported epoch, no training): what remains is tunebridge's loop, the queue,
the trial record, and Optuna itself. Prints medians in ms per trial and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import optuna

from tunebridge.api import run_study, study_options
from tunebridge.backends._base import TrialOutcome
from tunebridge.schema import Choice, Float, Int, Space

SPACE = Space(
    n_layers=Int(1, 3),
    units=Int(16, 256, log=True, per_layer="n_layers"),
    lr=Float(1e-4, 1e-1, log=True),
    optimizer=Choice(["sgd", "adam"]),
    batch_size=Choice([32, 64, 128], ordered=True),
)


def objective(config: dict[str, Any], reporter: Any) -> TrialOutcome:
    value = float(config["lr"])
    reporter.report(1, {"loss": value})
    return TrialOutcome({"loss": value}, {"loss": value}, 1, 1)


def tunebridge_ms(n: int) -> float:
    opts = study_options(SPACE, metric="loss", search="random", max_epochs=1)
    started = time.perf_counter()
    run_study(opts, objective, n_trials=n)
    return (time.perf_counter() - started) / n * 1000


def optuna_ms(n: int) -> float:
    def plain(trial: optuna.Trial) -> float:
        layers = trial.suggest_int("n_layers", 1, 3)
        for i in range(layers):
            trial.suggest_int(f"units/{i}", 16, 256, log=True)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("optimizer", ["sgd", "adam"])
        trial.suggest_int("batch_size", 0, 2)
        trial.report(lr, 1)
        return lr

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    study.optimize(plain, n_trials=n)
    return (time.perf_counter() - started) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = statistics.median(tunebridge_ms(args.trials) for _ in range(args.repeats))
    theirs = statistics.median(optuna_ms(args.trials) for _ in range(args.repeats))
    print(
        f"tunebridge {ours:.3f} ms/trial, plain Optuna {theirs:.3f} ms/trial: ratio {ours / theirs:.2f}x, "
        f"tunebridge's own cost {ours - theirs:.3f} ms/trial ({args.trials} trials, median of {args.repeats})"
    )


if __name__ == "__main__":
    main()
