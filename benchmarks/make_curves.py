"""Learning-curve tables for the pruning replay: every epoch of >= 500 random configs of a task, made by tunebridge.

Run:  nice -n 10 python benchmarks/make_curves.py TASK [--configs 500] [--chunk 50] [--fuse 32] [--out benchmarks/data]

TASK is one of:
  digits_mlp  the digits_mlp recipe's space on sklearn's digits (360 validation images), its budget (20 epochs);
  digits_cnn  the digits_cnn recipe's space on the digits images, its budget (8 epochs);
  synth_mlp   the digits_mlp recipe's space (batch sizes 128/256/512) on a generated task: sklearn's
              ``make_classification`` with 25,000 samples (20,000 train, 5,000 validation), 40 features,
              6 classes, 5 % label noise; 12 epochs.

How: ``tunebridge.tune`` itself, with random search (``search: random``, seeded), fused cohorts (``fuse``), no
pruner and no early stopping, so every config trains its full budget. Configs come in chunks of ``--chunk``,
chunk ``i`` drawn by the random sampler seeded ``1000 * task_index + i``; each chunk is appended to
``benchmarks/data/TASK.npz`` as soon as it ends, so an interrupted run goes on from the next chunk.

What is recorded per config (the rows of the table): every epoch's ``val_acc`` and ``val_loss`` (what the
study's reporter receives: a read-only tap on ``OptunaReporter.report``), each epoch's wall time (the
config's share of its fused step: the step's seconds over the members that reported in it), ``n_params``,
the config (JSON) and the trial's seed. See ``benchmarks/data/README.md`` for the columns.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tunebridge
from tunebridge.backends.optuna._study import OptunaReporter, trial_config
from tunebridge.cli._recipes import BUNDLED
from tunebridge.fused._loop import FusedExecutor
from tunebridge.lightning import builtin_builder
from tunebridge.schema import Choice, Space
from tunebridge.spec import load_spec

TASKS = ("digits_mlp", "digits_cnn", "synth_mlp")
DATA = Path(__file__).parent / "data"
SYNTH = {"n_samples": 25_000, "n_features": 40, "n_informative": 16, "n_redundant": 8, "n_classes": 6}
SYNTH_EXTRA = {"n_clusters_per_class": 3, "class_sep": 0.8, "flip_y": 0.05, "random_state": 0}
SYNTH_EPOCHS = 12


def synth_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The generated task's features and labels (fixed by ``random_state``)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(**SYNTH, **SYNTH_EXTRA)
    return x.astype(np.float32), y.astype(np.int64)


def synth_datamodule_class() -> type:
    """A datamodule of the generated task: the bundled tabular datamodule (standardized on the training
    split, stratified seeded split) reading the generated arrays, so that fused cohorts take it as they
    take a bundled dataset."""
    from tunebridge.lightning._arrays import BatchIndexDataset, split_indices
    from tunebridge.lightning.data import datamodule_classes

    base = datamodule_classes().BreastCancerDataModule

    class SynthDataModule(base):  # type: ignore[misc, valid-type]
        dataset = "synth"
        n_features = SYNTH["n_features"]
        n_classes = SYNTH["n_classes"]

        def setup(self, stage: str | None = None) -> None:
            if self.train_set is not None:
                return
            x, y = synth_arrays()
            train, val = split_indices(y, val_fraction=self.val_fraction, seed=self.seed)
            x_train, x_val = self._transform(x[train], x[val])
            self.train_set = BatchIndexDataset(torch.from_numpy(x_train), torch.from_numpy(y[train].copy()))
            self.val_set = BatchIndexDataset(torch.from_numpy(x_val), torch.from_numpy(y[val].copy()))

    return SynthDataModule


def synth_builder(*, max_epochs: int, seed: int) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    """``build(config)`` for the generated task: the built-in MLP, seeded as :func:`build_builtin` seeds it."""
    from tunebridge.lightning.builtin import make_classes

    cls = synth_datamodule_class()

    def build(config: dict[str, Any]) -> tuple[Any, Any]:
        dm = cls(batch_size=int(config.get("batch_size", 128)), seed=seed, val_batch_size=5000)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = make_classes().MLPClassifier(
                config, n_features=dm.n_features, n_classes=dm.n_classes, max_epochs=max_epochs
            )
        return module, dm

    return build


def task_setup(task: str, seed: int, epochs: int | None = None) -> tuple[Any, Space, int]:
    """(build, space, budget) of a task; ``epochs`` overrides the budget (smoke runs)."""
    build, space, budget = _task_setup(task, seed, epochs)
    return build, space, epochs or budget


def _task_setup(task: str, seed: int, epochs: int | None) -> tuple[Any, Space, int]:
    if task == "digits_mlp":
        spec = load_spec(BUNDLED / "digits_mlp.yaml")
        return (
            builtin_builder("mlp", "digits", max_epochs=epochs or spec.max_epochs, seed=seed),
            spec.space,
            spec.max_epochs,
        )
    if task == "digits_cnn":
        spec = load_spec(BUNDLED / "digits_cnn.yaml")
        return (
            builtin_builder("cnn", "digits", max_epochs=epochs or spec.max_epochs, seed=seed),
            spec.space,
            spec.max_epochs,
        )
    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    params = dict(spec.space.items())
    params["batch_size"] = Choice((128, 256, 512), ordered=True)  # 20k rows: larger batches, as one would
    return synth_builder(max_epochs=epochs or SYNTH_EPOCHS, seed=seed), Space(params), SYNTH_EPOCHS


class Tap:
    """Records what the study's reporters receive (read only) and how long each fused step took."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[int, dict[str, float]]] = {}
        self.seconds: dict[int, dict[int, float]] = {}
        self._step: list[tuple[int, int]] = []
        self._report = OptunaReporter.report
        self._stepper = FusedExecutor.step

    def __enter__(self) -> Tap:
        tap = self

        def report(self: OptunaReporter, epoch: int, metrics: Any, checkpoint: Any = None) -> bool:
            tap.rows.setdefault(self.trial.number, {})[epoch] = {k: float(v) for k, v in metrics.items()}
            tap._step.append((self.trial.number, epoch))
            return tap._report(self, epoch, metrics, checkpoint)

        def step(self: FusedExecutor) -> Any:
            tap._step = []
            started = time.perf_counter()
            out = tap._stepper(self)
            share = (time.perf_counter() - started) / max(1, len(tap._step))
            for number, epoch in tap._step:
                tap.seconds.setdefault(number, {})[epoch] = share
            return out

        OptunaReporter.report = report  # type: ignore[method-assign]
        FusedExecutor.step = step  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        OptunaReporter.report = self._report  # type: ignore[method-assign]
        FusedExecutor.step = self._stepper  # type: ignore[method-assign]


def record_chunk(task: str, seed: int, n: int, fuse: int, epochs: int | None = None) -> dict[str, Any]:
    """``n`` random configs of ``task`` trained for the full budget in one fused study seeded ``seed``."""
    build, space, budget = task_setup(task, seed, epochs)
    with tempfile.TemporaryDirectory() as tmp, Tap() as tap:
        result = tunebridge.tune(
            build,
            space,
            metric="val_acc",
            mode="max",
            trials=n,
            max_epochs=budget,
            search="random",
            pruner=None,
            early_stopping=None,
            seed=seed,
            trainer={"accelerator": "cpu", "threads": 1},
            run={"fuse": fuse, "progress": False, "checkpoints": {"dir": str(Path(tmp) / "ckpt")}},
        )
    trials = sorted(result.study.get_trials(deepcopy=False), key=lambda t: t.number)
    acc = np.full((n, budget), np.nan, dtype=np.float32)
    loss, secs = acc.copy(), acc.copy()
    n_params = np.zeros(n, dtype=np.int64)
    configs = []
    for i, t in enumerate(trials):
        for epoch, m in tap.rows.get(t.number, {}).items():
            acc[i, epoch - 1], loss[i, epoch - 1] = m["val_acc"], m["val_loss"]
            secs[i, epoch - 1] = tap.seconds.get(t.number, {}).get(epoch, np.nan)
        n_params[i] = int(t.user_attrs.get("n_params", t.user_attrs.get("final_n_params", 0)) or 0)
        configs.append(json.dumps(trial_config(space, t), sort_keys=True))
    return {"val_acc": acc, "val_loss": loss, "epoch_s": secs, "n_params": n_params, "configs": configs}


def load_table(path: Path) -> dict[str, Any]:
    """A table's arrays (``configs`` as a list of JSON strings) and its metadata."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out.pop("meta")))
    out["configs"] = [str(c) for c in out["configs"]]
    return out


def save_table(path: Path, table: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    arrays = {k: v for k, v in table.items() if k not in ("meta", "configs")}
    np.savez_compressed(tmp, **arrays, configs=np.array(table["configs"]), meta=np.array(json.dumps(table["meta"])))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--configs", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--fuse", type=int, default=32)
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=None, help="override the task's budget (smoke runs only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.task}.npz"
    table: dict[str, Any] = load_table(path) if path.exists() else {}
    done = len(table.get("configs", []))
    base = 1000 * TASKS.index(args.task)
    while done < args.configs:
        chunk = done // args.chunk
        started = time.perf_counter()
        part = record_chunk(args.task, base + chunk, args.chunk, args.fuse, args.epochs)
        seconds = time.perf_counter() - started
        part["seed"] = np.full(args.chunk, base + chunk, dtype=np.int64)
        if table:
            for k in ("val_acc", "val_loss", "epoch_s", "n_params", "seed"):
                table[k] = np.concatenate([table[k], part[k]])
            table["configs"] = table["configs"] + part["configs"]
            table["meta"]["seconds"] += seconds
        else:
            table = {**part, "meta": {"task": args.task, "seconds": seconds, "fuse": args.fuse, "chunk": args.chunk}}
        table["meta"]["budget"] = int(table["val_acc"].shape[1])
        save_table(path, table)
        done = len(table["configs"])
        best = np.nanmax(table["val_acc"])
        print(f"{args.task}: {done} configs, chunk {chunk} in {seconds:.0f} s, best val_acc {best:.4f}", flush=True)
    print(f"{args.task}: {done} configs in {table['meta']['seconds']:.0f} s of recording", flush=True)


if __name__ == "__main__":
    main()
