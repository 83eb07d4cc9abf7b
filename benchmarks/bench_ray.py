"""tunebridge's Ray backend vs hand-written Ray Tune + Lightning, the same trials on one Ray instance.

Both sides train the same fixed configs of the built-in MLP on digits (``build_builtin``, seed 0:
same split, shuffle and initial weights), 1 CPU per trial, 2 trials at once, ``reuse_actors=True``,
quiet Trainers, the same checkpoint policy (keep 2 per trial, by ``val_acc``), experiment folders
in one temporary folder:

- tunebridge: ``tunebridge.tune(build, space, backend="ray", search="grid", ...)`` over a space
  whose grid is exactly those configs (defaults otherwise: keep_checkpoints=1, the in-memory study).
- hand-written: ``ray.tune.Tuner`` over ``tune.grid_search`` of the same values, a function trainable
  that builds the same module and datamodule and fits a ``lightning.pytorch.Trainer`` with Ray's
  ``TuneReportCheckpointCallback`` (a checkpoint with every report, as Ray's Lightning guide shows).

Scenarios: ``none`` (no scheduler) and ``asha`` (the same ``ASHAScheduler`` on both: grace period 1,
reduction factor 2, one bracket). ASHA is asynchronous, so its decisions depend on which trial
reaches a rung first: the epochs each side trained are printed next to its time.

Both sides run an identical ``Stamp`` Lightning callback (and the build records when it was
called), written to one small JSON file per trial at the end of fit; from those stamps each run is
split into: startup (call -> first build: driver setup, Ray actor start, imports in the worker),
per-epoch report time (validation end -> train epoch end: the report and checkpoint callbacks),
between-trial gaps on a reused actor (a trial's fit end -> the next build on the same process),
and tail (last fit end -> the call returns). Driver-side tunebridge steps are timed by wrapping
them (plan, study, mirror writes, checkpoint bookkeeping, the post-run sync, the result).

One ``ray.init`` for everything; a warm-up run of each side (not counted); the order of the two
sides alternates over repeats; medians and the ratio tunebridge / hand-written are printed, and
the validation accuracies of the complete trials are compared (they should be equal).

Run:  nice -n 10 python benchmarks/bench_ray.py [--quick] [--trials 8] [--epochs 4] [--repeats 3]
      [--scenarios none,asha]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import itertools
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

# Before Ray and torch are imported (the workers inherit the environment of the driver).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy output engine honours verbose=0
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch as pl
import ray
import torch
from ray import tune
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
from ray.tune.schedulers import ASHAScheduler

import tunebridge
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Space

CPUS = 2  # the Ray instance; 1 CPU per trial, so 2 trials at once on both sides
METRIC, MODE = "val_acc", "max"
KEEP = 2  # checkpoints kept per trial by Ray (tunebridge's default checkpoint_keep)
ASHA = {"grace_period": 1, "reduction_factor": 2}


# -- the trials ----------------------------------------------------------------------------------
def values(n_trials: int) -> dict[str, list[Any]]:
    """The grid's values: n_layers x units x lr, ``n_trials`` configs (a multiple of 4)."""
    if n_trials % 4 or n_trials < 4:
        raise SystemExit(f"--trials must be a positive multiple of 4, got {n_trials}")
    k = n_trials // 4
    lrs = [round(0.003 * 10 ** (i / max(1, k - 1)), 6) for i in range(k)] if k > 1 else [0.01]
    return {"n_layers": [1, 2], "units": [32, 64], "lr": lrs}


def config_key(config: dict[str, Any]) -> str:
    return json.dumps({k: config[k] for k in ("n_layers", "units", "lr")}, sort_keys=True)


def build(config: dict[str, Any], *, epochs: int) -> tuple[Any, Any]:
    """The same module and datamodule on both sides (seed 0: split, shuffle and weights)."""
    called = time.time()
    module, data = build_builtin("mlp", "digits", config, max_epochs=epochs, seed=0)
    module._bench_built = called  # read by Stamp
    return module, data


class Stamp(pl.Callback):
    """Wall-clock stamps of one trial, written as one JSON file when fit ends (or is stopped)."""

    def __init__(self, folder: str, side: str) -> None:
        self.folder, self.side = folder, side
        self.epochs: list[list[float]] = []  # [validation epoch end, train epoch end]
        self.fit_start = 0.0
        self.written = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.fit_start = time.time()

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.epochs.append([time.time(), float("nan")])

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.epochs and self.epochs[-1][1] != self.epochs[-1][1]:  # NaN: not closed yet
            self.epochs[-1][1] = time.time()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._write(pl_module, stopped=False)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # ASHA stops a trial inside its report: the epoch's report time runs until now.
        if self.epochs and self.epochs[-1][1] != self.epochs[-1][1]:
            self.epochs[-1][1] = time.time()
        self._write(pl_module, stopped=True)

    def _write(self, pl_module: Any, *, stopped: bool) -> None:
        if self.written:
            return
        self.written = True
        record = {
            "side": self.side,
            "pid": os.getpid(),
            "built": getattr(pl_module, "_bench_built", self.fit_start),
            "fit_start": self.fit_start,
            "fit_end": time.time(),
            "epochs": self.epochs,
            "stopped": stopped,
            "optuna_loaded": "optuna" in sys.modules,
            "modules": len(sys.modules),
        }
        path = os.path.join(self.folder, f"{self.side}-{os.getpid()}-{time.time_ns()}.json")
        with open(path, "w") as f:
            json.dump(record, f)


# -- tunebridge ----------------------------------------------------------------------------------
def run_tunebridge(grid: dict[str, list[Any]], epochs: int, scenario: str, folder: str, stamps: str) -> dict[str, Any]:
    space = Space(**{name: Choice(v) for name, v in grid.items()})
    n = len(space.grid())
    start = time.perf_counter()
    result = tunebridge.tune(
        functools.partial(build, epochs=epochs),
        space,
        metric=METRIC,
        mode=MODE,
        backend="ray",
        search="grid",
        trials=n,
        pruner={"policy": "asha", **ASHA} if scenario == "asha" else None,
        max_epochs=epochs,
        seed=0,
        trainer={"accelerator": "cpu", "threads": 1, "callbacks": [Stamp(stamps, "tunebridge")]},
        run={
            "progress": False,
            "checkpoints": {"dir": os.path.join(folder, "kept")},
            "ray": {"cpus_per_trial": 1, "max_concurrent": CPUS, "storage_path": folder, "name": "tunebridge"},
        },
    )
    wall, t_end = time.perf_counter() - start, time.time()
    df = result.trials
    accs, epochs_run = {}, 0
    for _, row in df.iterrows():
        config = {k: _plain(row[f"param.{k}"]) for k in grid}
        epochs_run += int(_plain(row["epochs"]))
        if row["state"] == "COMPLETE":
            accs[config_key(config)] = float(row["value"])
    return {"wall": wall, "t_end": t_end, "accs": accs, "epochs": epochs_run, "trials": len(df)}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# -- hand-written Ray Tune + Lightning ------------------------------------------------------------
def hand_trainable(config: dict[str, Any], *, epochs: int, stamps: str) -> None:
    torch.set_num_threads(1)
    module, data = build(config, epochs=epochs)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[
            TuneReportCheckpointCallback(metrics=["val_acc", "val_loss"], on="validation_end"),
            Stamp(stamps, "hand"),
        ],
    )
    trainer.fit(module, datamodule=data)


def run_hand(grid: dict[str, list[Any]], epochs: int, scenario: str, folder: str, stamps: str) -> dict[str, Any]:
    start = time.perf_counter()
    scheduler = (
        ASHAScheduler(time_attr="training_iteration", max_t=epochs, brackets=1, **ASHA) if scenario == "asha" else None
    )
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(hand_trainable, epochs=epochs, stamps=stamps), {"cpu": 1, "gpu": 0}),
        param_space={name: tune.grid_search(v) for name, v in grid.items()},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            scheduler=scheduler,
            num_samples=1,
            max_concurrent_trials=CPUS,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="hand",
            storage_path=folder,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=KEEP, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
        ),
    )
    results = tuner.fit()
    wall, t_end = time.perf_counter() - start, time.time()
    accs, epochs_run = {}, 0
    for r in results:
        df = r.metrics_dataframe
        epochs_run += int(df["training_iteration"].max())
        if int(df["training_iteration"].max()) == epochs:  # ran its budget: "complete" in tunebridge's words
            accs[config_key(r.config)] = float(df[METRIC].max())  # tunebridge's value: the best epoch's
    return {"wall": wall, "t_end": t_end, "accs": accs, "epochs": epochs_run, "trials": len(results)}


# -- timing tunebridge's driver-side steps ---------------------------------------------------------
DRIVER: dict[str, list[float]] = defaultdict(list)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            DRIVER[name].append(time.perf_counter() - t)

    return wrapper


def instrument_tunebridge() -> None:
    """Wrap tunebridge's driver steps in timers (the names the Ray run looks them up by)."""
    from tunebridge import api
    from tunebridge.backends.ray import _mirror, _run

    _run.plan_run = _timed("plan_run (x2: refusal check + plan)", _run.plan_run)
    _run.open_study = _timed("open_study", _run.open_study)
    _run._saved_trials = _timed("ExperimentAnalysis after fit", _run._saved_trials)
    _run._new_tuner = _timed("build Tuner", _run._new_tuner)
    _mirror.keep_best_checkpoints = _timed("keep_best_checkpoints (per trial)", _mirror.keep_best_checkpoints)
    _mirror.Mirror.record = _timed("Mirror.record incl. checkpoint bookkeeping (per trial)", _mirror.Mirror.record)
    _mirror.Mirror.sync = _timed("Mirror.sync after fit", _mirror.Mirror.sync)
    api.make_result = _timed("make_result (DataFrame)", api.make_result)
    _run.Mirror.on_result = _timed("Mirror.on_result (per result)", _run.Mirror.on_result)


# -- the breakdown from the stamps ----------------------------------------------------------------
def breakdown(stamps: str, side: str, t_call: float, t_return: float) -> dict[str, float]:
    records = [json.load(open(p)) for p in glob.glob(os.path.join(stamps, f"{side}-*.json"))]
    if not records:
        return {}
    by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_pid[r["pid"]].append(r)
    gaps = []
    for rs in by_pid.values():
        rs.sort(key=lambda r: r["built"])
        gaps += [b["built"] - a["fit_end"] for a, b in itertools.pairwise(rs)]
    reports = [e[1] - e[0] for r in records for e in r["epochs"] if e[1] == e[1]]
    first_built = min(r["built"] for r in records)
    firsts = [min(rs, key=lambda r: r["built"]) for rs in by_pid.values()]
    return {
        "startup: call -> first build (s)": first_built - t_call,
        "after startup: first build -> return (s)": t_return - first_built,
        "build -> fit start (ms/trial)": 1000 * statistics.mean(r["fit_start"] - r["built"] for r in records),
        "fit (s/trial)": statistics.mean(r["fit_end"] - r["fit_start"] for r in records),
        "report+checkpoint (ms/epoch)": 1000 * statistics.mean(reports) if reports else float("nan"),
        "epochs reported": float(len(reports)),
        "gap between trials on an actor (ms)": 1000 * statistics.mean(gaps) if gaps else float("nan"),
        "tail: last fit end -> return (s)": t_return - max(r["fit_end"] for r in records),
        "processes": float(len(by_pid)),
        "optuna in worker": float(any(r["optuna_loaded"] for r in firsts)),
        "modules in worker": statistics.mean(r["modules"] for r in firsts),
    }


# -- what a tunebridge trial imports beyond the hand-written one ----------------------------------
_IMPORTS = """
import sys, time
import ray.tune, lightning.pytorch, tunebridge.lightning.builtin, ray.tune.integration.pytorch_lightning
n, t = len(sys.modules), time.perf_counter()
import tunebridge.backends.ray._trainable  # what Ray unpickles for a tunebridge trial
print(time.perf_counter() - t, len(sys.modules) - n, "optuna" in sys.modules)
"""


def extra_imports(times: int = 3) -> tuple[float, int, bool]:
    """Seconds and modules a fresh process spends importing tunebridge's trainable after the hand-written
    trial's imports (Ray, Lightning, the built-in model and data), median of ``times`` fresh processes."""
    import subprocess

    runs = []
    for _ in range(times):
        out = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True, check=True)
        seconds, modules, optuna = out.stdout.split()
        runs.append((float(seconds), int(modules), optuna == "True"))
    return statistics.median(r[0] for r in runs), runs[0][1], runs[0][2]


# -- the run --------------------------------------------------------------------------------------
SIDES = {"hand": run_hand, "tunebridge": run_tunebridge}


@contextlib.contextmanager
def scratch() -> Iterator[tuple[str, str]]:
    folder = tempfile.mkdtemp(prefix="bench-ray-")
    stamps = os.path.join(folder, "stamps")
    os.makedirs(stamps)
    try:
        yield folder, stamps
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def one(side: str, grid: dict[str, list[Any]], epochs: int, scenario: str) -> dict[str, Any]:
    with scratch() as (folder, stamps):
        t_call = time.time()
        out = SIDES[side](grid, epochs, scenario, folder, stamps)
        out["breakdown"] = breakdown(stamps, side, t_call, out["t_end"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="configs (a multiple of 4)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", default="none,asha", help="comma-separated: none, asha")
    parser.add_argument("--quick", action="store_true", help="4 trials x 2 epochs, 1 repeat, no scheduler")
    parser.add_argument("--no-warmup", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.repeats, args.scenarios = 4, 2, 1, "none"
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if any(s not in ("none", "asha") for s in scenarios):
        raise SystemExit(f"--scenarios: none and/or asha, got {args.scenarios!r}")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    grid = values(args.trials)
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    instrument_tunebridge()
    print(
        f"{args.trials} configs x {args.epochs} epochs, {args.repeats} repeat(s), {CPUS} trials at once, "
        f"Ray {ray.__version__}, lightning {pl.__version__}, torch {torch.__version__}",
        flush=True,
    )
    if not args.no_warmup:
        for side in SIDES:  # driver imports, Ray's first-Tuner costs
            t = time.perf_counter()
            one(side, values(4), 1, "none")
            print(f"warm-up {side}: {time.perf_counter() - t:.1f} s", flush=True)
    DRIVER.clear()
    summary = []
    for scenario in scenarios:
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for r in range(args.repeats):
            order = list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]
            for side in order:
                out = one(side, grid, args.epochs, scenario)
                runs[side].append(out)
                print(
                    f"[{scenario}] repeat {r + 1} {side:10s} {out['wall']:6.2f} s  "
                    f"{out['trials']} trials, {out['epochs']} epochs",
                    flush=True,
                )
        summary.append(report(scenario, runs, args))
    print("\n## Summary")
    print("| scenario | hand-written (median s) | tunebridge (median s) | ratio tb/hand | target | met |")
    print("|---|---|---|---|---|---|")
    for scenario, h, t in summary:
        print(f"| {scenario} | {h:.2f} | {t:.2f} | {t / h:.3f} | <= 1.0 | {'yes' if t / h <= 1.0 else 'no'} |")
    if DRIVER:
        print("\n## tunebridge driver steps (all timed runs)")
        print("| step | calls | total s | per call ms |")
        print("|---|---|---|---|")
        for name, times in sorted(DRIVER.items(), key=lambda kv: -sum(kv[1])):
            print(f"| {name} | {len(times)} | {sum(times):.3f} | {1000 * statistics.mean(times):.2f} |")
    ray.shutdown()
    seconds, modules, optuna = extra_imports()
    print(
        f"\nimporting tunebridge.backends.ray._trainable in a fresh process after the hand-written trial's "
        f"imports: {seconds:.2f} s, {modules} more modules (optuna among them: {optuna}); median of 3"
    )


def report(scenario: str, runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> tuple[str, float, float]:
    med = {side: statistics.median(o["wall"] for o in outs) for side, outs in runs.items()}
    ratios = [t["wall"] / h["wall"] for h, t in zip(runs["hand"], runs["tunebridge"])]
    print(f"\n## scenario {scenario}: {args.trials} trials x {args.epochs} epochs, {args.repeats} repeat(s)")
    for side in SIDES:
        walls = ", ".join(f"{o['wall']:.2f}" for o in runs[side])
        print(f"walls {side}: {walls}")
    print(f"median ratio of the repeats' ratios: {statistics.median(ratios):.3f}")
    keys = list(runs["hand"][0]["breakdown"])
    print("| part (median over repeats) | hand-written | tunebridge |")
    print("|---|---|---|")
    for key in keys:
        cells = []
        for side in SIDES:
            vals = [o["breakdown"].get(key, float("nan")) for o in runs[side]]
            cells.append(f"{statistics.median(vals):.3f}")
        print(f"| {key} | {' | '.join(cells)} |")
    epochs = {side: statistics.median(o["epochs"] for o in outs) for side, outs in runs.items()}
    print(f"| epochs trained (median) | {epochs['hand']:.0f} | {epochs['tunebridge']:.0f} |")
    same, both = 0, 0
    for h, t in zip(runs["hand"], runs["tunebridge"]):
        for key in set(h["accs"]) & set(t["accs"]):
            both += 1
            same += abs(h["accs"][key] - t["accs"][key]) < 1e-6
    print(f"complete trials with equal val_acc on both sides: {same}/{both}")
    print(
        f"median wall: hand-written {med['hand']:.2f} s, tunebridge {med['tunebridge']:.2f} s, "
        f"ratio {med['tunebridge'] / med['hand']:.3f} (target <= 1.0)"
    )
    return scenario, med["hand"], med["tunebridge"]


if __name__ == "__main__":
    main()
