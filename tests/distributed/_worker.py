"""A worker process for the distributed tests: real Optuna storage, a cheap pure-Python objective.

Usage: python _worker.py STORAGE STUDY N_TRIALS SEARCH [EPOCH_SECONDS] [HEARTBEAT_TIMEOUT]
"""

from __future__ import annotations

import sys
import time

from tunebridge.backends._base import TrialOutcome
from tunebridge.backends.optuna import StudyOptions, WorkerOptions, open_study, run_trials
from tunebridge.schema import Choice, Float, Int, Space

SPACE = Space(
    n_layers=Int(1, 3),
    units=Choice([16, 32], per_layer="n_layers"),
    lr=Float(1e-3, 1e-1, log=True, grid=(1e-3, 1e-2)),
)


def objective(config: dict, reporter: object) -> TrialOutcome:
    seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    value = 0.0
    for epoch in range(1, 4):
        time.sleep(seconds)
        value = config["n_layers"] + config["lr"] * epoch
        reporter.report(epoch, {"score": value})  # type: ignore[attr-defined]
    return TrialOutcome(metrics={"score": value}, best={"score": value}, epochs=3, best_epoch=3)


def main() -> None:
    storage, study, n_trials, search = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    opts = StudyOptions(
        space=SPACE,
        metrics=["score"],
        modes=["max"],
        search=search,
        seed=0,
        storage=storage,
        study=study,
        spec_hash="distributed-test",
    )
    s = open_study(opts, n_trials=n_trials)
    print("ready", flush=True)
    dead_after = float(sys.argv[6]) if len(sys.argv) > 6 else 3.0
    worker = WorkerOptions(heartbeat=0.5, heartbeat_timeout=dead_after, join=True, poll=0.2)
    run_trials(s, opts, objective, n_trials=n_trials, worker=worker)
    print("done", flush=True)


if __name__ == "__main__":
    main()
