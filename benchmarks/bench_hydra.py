"""The same search on the hydra recipe, run by hydra-optuna-sweeper and by tunebridge (issue 19): trials, epochs
trained, wall time, best value.

Both sides run the recipe's whole command in a fresh empty folder, with one torch thread:

- the sweeper: ``python recipes/hydra/train.py -m hparams_search=digits_optuna`` (TPE, seed from the config, every
  trial to trainer.max_epochs = 10), in a separate environment: hydra-optuna-sweeper 1.3 pins optuna<3, which
  tunebridge (optuna 5) cannot share. Make it with::

      python3.11 -m venv /tmp/hos-venv
      /tmp/hos-venv/bin/pip install "hydra-optuna-sweeper==1.3.0" "hydra-core==1.3.8" "optuna>=2.10,<3" \\
          "numpy==<tunebridge's venv's>" "sqlalchemy<2"
      # torch, Lightning and scikit-learn from tunebridge's venv, after the sweeper's own packages:
      echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/hos-venv/lib/python3.11/site-packages/zz_main.pth

- tunebridge: ``python -m tunebridge run recipes/hydra/spec.yaml`` (the same search read from the same sweeper
  config, with ASHA pruning and early stopping, as the recipe's spec says).

Each repeat uses another seed on both sides (the sweeper's ``hydra.sweeper.sampler.seed``, tunebridge's
``--seed``); the two TPE implementations (Optuna 2.10 and 5.x) differ, so best values are compared over repeats.

Run:  python benchmarks/bench_hydra.py --sweeper-python /tmp/hos-venv/bin/python [--repeats 2] [--trials 16]
      [--more-trials 32]   # and tunebridge with twice the trials: about the sweeper's epochs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "hydra"


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}


def sweeper(python: str, trials: int, seed: int) -> dict[str, Any]:
    """hydra-optuna-sweeper: every trial runs to trainer.max_epochs."""
    with tempfile.TemporaryDirectory() as work:
        cmd = [
            python,
            str(RECIPE / "train.py"),
            "-m",
            "hparams_search=digits_optuna",
            f"hydra.sweeper.n_trials={trials}",
            f"hydra.sweeper.sampler.seed={seed}",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=_env(), timeout=3600)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
        (results,) = Path(work).glob("logs/train/multiruns/*/optimization_results.yaml")
        best = float(re.search(r"best_value: ([0-9.e-]+)", results.read_text()).group(1))  # type: ignore[union-attr]
        epochs = sum(int(n) for n in re.findall(r"epochs trained: (\d+)", proc.stdout))
    return {"trials": trials, "pruned": 0, "epochs": epochs, "wall_s": wall, "best": best}


def tunebridge(trials: int, seed: int) -> dict[str, Any]:
    """tunebridge: the same search with ASHA pruning and early stopping (the recipe's spec)."""
    with tempfile.TemporaryDirectory() as work:
        cmd = [
            sys.executable,
            "-m",
            "tunebridge",
            "run",
            str(RECIPE / "spec.yaml"),
            "--trials",
            str(trials),
            "--seed",
            str(seed),
            "--threads",
            "1",
            "--no-progress",
            "--out",
            "out",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=_env(), timeout=3600)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
        record = json.loads((Path(work) / "out" / "record.json").read_text())
        with open(Path(work) / "out" / "trials.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        value = max(float(r["value"]) for r in rows if r["state"] == "COMPLETE")
    return {
        "trials": len(rows),
        "pruned": record["counts"]["pruned"],
        "epochs": sum(int(r["epochs"] or 0) for r in rows),
        "wall_s": wall,
        "best": value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeper-python", required=True, help="python of the environment with hydra-optuna-sweeper")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--more-trials", type=int, default=0, help="also run tunebridge with this many trials (about the same epochs)"
    )
    args = parser.parse_args()
    more = f"tunebridge, {args.more_trials} trials"
    runs: dict[str, list[dict[str, Any]]] = {"hydra-optuna-sweeper": [], "tunebridge": []}
    if args.more_trials:
        runs[more] = []
    for i in range(args.repeats):  # alternating, to spread machine noise
        seed = 1234 + i
        runs["hydra-optuna-sweeper"].append(sweeper(args.sweeper_python, args.trials, seed))
        runs["tunebridge"].append(tunebridge(args.trials, seed))
        if args.more_trials:
            runs[more].append(tunebridge(args.more_trials, seed))
        for name, results in runs.items():
            print(f"seed {seed} {name}: {results[-1]}", flush=True)
    print(f"\n{args.repeats} seeds (1234...), recipes/hydra (digits), 1 torch thread; means, best value per seed\n")
    print("| runner | trials (pruned) | epochs trained | wall time | best val/acc_best per seed | mean |")
    print("|---|---|---|---|---|---|")
    for name, results in runs.items():
        pruned = statistics.mean(r["pruned"] for r in results)
        epochs = statistics.mean(r["epochs"] for r in results)
        wall = statistics.mean(r["wall_s"] for r in results)
        best = ", ".join(f"{r['best']:.4f}" for r in results)
        mean = statistics.mean(r["best"] for r in results)
        print(f"| {name} | {results[0]['trials']} ({pruned:g}) | {epochs:g} | {wall:.1f} s | {best} | {mean:.4f} |")


if __name__ == "__main__":
    main()
