"""Trials per second for 1, 2 and 4 worker processes on one study, tunebridge vs plain Optuna.

A trivial objective (no training) isolates the cost of the queue: claiming, recording, tell; with
``--heartbeat S`` every trial also records its worker and heartbeat, as ``tunebridge worker`` does
(10 s by default there; off here by default, as in the first measurement). The baseline is hand-written plain Optuna (``study.optimize`` in each process, same storage, same
sampler) run in the same session; ratios > 1 mean tunebridge is slower.

Run:  python benchmarks/bench_workers.py [--trials 200] [--storages postgres journal] [--repeats 3] [--heartbeat 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid

import optuna

from tunebridge.backends._base import TrialOutcome
from tunebridge.backends.optuna import StudyOptions, WorkerOptions, make_storage, open_study, run_trials
from tunebridge.schema import Float, Int, Space

SPACE = Space(x=Float(-5.0, 5.0), n=Int(1, 8))


def _tb_objective(config: dict, reporter: object) -> TrialOutcome:
    value = float(config["x"]) ** 2 + int(config["n"])
    return TrialOutcome(metrics={"y": value}, best={"y": value}, epochs=1, best_epoch=1)


def _tb_worker(storage: str, name: str, n_trials: int, heartbeat: float | None) -> None:
    opts = StudyOptions(
        space=SPACE,
        metrics=["y"],
        modes=["min"],
        search="random",
        seed=None,
        storage=storage,
        study=name,
        spec_hash="bench",
    )
    study = open_study(opts, n_trials=n_trials)
    # Every process follows the queue its creator filled (``tunebridge worker``), polling like the others.
    worker = WorkerOptions(heartbeat=heartbeat, join=True, poll=0.05)
    run_trials(study, opts, _tb_objective, n_trials=n_trials, worker=worker)


def _plain_worker(storage: str, name: str, n_trials: int, n_workers: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=make_storage(storage), load_if_exists=True, sampler=optuna.samplers.RandomSampler()
    )

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", -5, 5) ** 2 + trial.suggest_int("n", 1, 8)

    # Plain Optuna has no shared budget: each worker takes an equal share (rounded up).
    study.optimize(objective, n_trials=-(-n_trials // n_workers))


def _time(target: object, args: tuple[object, ...], n_workers: int) -> float:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=target, args=args) for _ in range(n_workers)]  # type: ignore[arg-type]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--storages", nargs="+", default=["postgres", "journal"])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--heartbeat", type=float, default=None, help="seconds between heartbeats (default: off)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    print(f"{'storage':10} {'workers':>7} {'tunebridge trials/s':>20} {'plain optuna trials/s':>22} {'ratio':>6}")
    for storage_kind in args.storages:
        for n in args.workers:
            tb, plain = [], []
            for _ in range(args.repeats):
                url = args.postgres if storage_kind == "postgres" else f"journal://{tmp}/{uuid.uuid4().hex}.log"
                name = f"bench-{uuid.uuid4().hex[:8]}"
                tb.append(args.trials / _time(_tb_worker, (url, name, args.trials, args.heartbeat), n))
                url = args.postgres if storage_kind == "postgres" else f"journal://{tmp}/{uuid.uuid4().hex}.log"
                name = f"plain-{uuid.uuid4().hex[:8]}"
                plain.append(args.trials / _time(_plain_worker, (url, name, args.trials, n), n))
            t, p = statistics.median(tb), statistics.median(plain)
            print(f"{storage_kind:10} {n:>7} {t:>20.1f} {p:>22.1f} {p / t:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
