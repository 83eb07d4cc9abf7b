"""The GPU check of issues 9 and 10, as stages in child processes, each one time-boxed.

Run it through ``benchmarks/gpu_check.sh`` (which installs what the GPU machine lacks); see there for the
exact device command. By hand: ``python benchmarks/bench_gpu.py --out DIR [--smoke] [--budget S]``.

Issue 9 (fused cohorts), synthetic data as in ``../shared/tools/fused_probe.py``:
  MLP 784-256-256-10, batch 128, 50k train / 10k val samples; per trial lr, weight decay, dropout and
  hidden width (16..256) differ. Measured: unfused tunebridge (one Trainer per trial), the hand-written
  loops of fused_probe.py (raw one model; K masked heterogeneous MLPs with their own AdamW), and fused
  tunebridge (``tune(trainer={"accelerator": "gpu"}, run={"fuse": K})``). Targets: fused >= 50x unfused trial-epochs/s, within
  1.5x of the hand-written fused loop. ConvNet (2 blocks of 32/64 filters, 3x32x32, batch 128, 20k
  samples; per trial lr, optimizer and weight decay differ, dropout p is one value for all, since members
  of different p form separate vmapped cohorts): fused >= 10x unfused. Its validation set is 1k samples:
  a fused cohort validates every member in one forward pass over the whole set (at K=128, ~17 GB per
  32-filter activation of 1k images). Then ``tune(trainer={"accelerator": "gpu"}, run={"fuse": "auto"})``: the K it chose
  (captured from ``tunebridge.fused._loop.auto_capacity`` as the run calls it, and the run's ``FuseStats``).
Issue 10 (GPU overhead): tunebridge vs a hand-written Optuna + Lightning loop, 8 trials, 1 epoch of the
  MLP on 50k samples, alternating rounds; target <= 1.03x.

The fused stages make the call a user makes: ``tune(trainer={"accelerator": "gpu"}, run={"fuse": K or "auto"})`` on a GPU,
``accelerator="cpu"`` without one (the ``--smoke`` test). There is no workaround: a call that raises is
recorded with its error text, and the stage fails.

Every stage appends JSON lines to ``OUT/results.jsonl``; ``OUT/gpu-check.md`` is rewritten after each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

# Sizes of the real check and of the CPU smoke test (tiny, to prove the script end to end).
FULL: dict[str, Any] = {
    "mlp_n": 50_000, "mlp_nv": 10_000, "d": 784, "h": 256, "c": 10, "batch": 128,
    "cnn_n": 20_000, "cnn_nv": 1_000, "cnn_shape": (3, 32, 32), "filters": (32, 64),
    "k": 128, "cnn_k": 128, "auto_trials": 256, "fused_epochs": 2, "cnn_dropout": 0.25,
    "unfused_trials": 3, "cnn_unfused_trials": 2, "unfused_epochs": 2,
    "overhead_trials": 8, "overhead_rounds": 2, "warm_n": 1024,
}  # fmt: skip
SMOKE: dict[str, Any] = {
    **FULL,
    "mlp_n": 2_000, "mlp_nv": 500, "d": 64, "h": 32,
    "cnn_n": 512, "cnn_nv": 128, "cnn_shape": (3, 8, 8), "filters": (4, 8),
    "k": 16, "cnn_k": 4, "auto_trials": 8,
    "unfused_trials": 2, "cnn_unfused_trials": 2, "overhead_trials": 2, "overhead_rounds": 1, "warm_n": 256,
}  # fmt: skip

# (name, seconds at most, what it measures), in the order they run: the most wanted first, so that a
# run cut short by the overall budget still answers the main questions.
STAGES: list[tuple[str, int, str]] = [
    ("probe", 45, "hand-written loops of fused_probe.py (raw one model, K heterogeneous MLPs)"),
    ("mlp_unfused", 50, "tunebridge unfused MLP (one Lightning Trainer per trial)"),
    ("mlp_fused", 90, "tunebridge fused MLP: run fuse=K, then fuse='auto' (accelerator gpu; cpu without one)"),
    ("overhead", 100, "issue 10: tunebridge vs hand-written Optuna + Lightning"),
    ("cnn_unfused", 40, "tunebridge unfused ConvNet"),
    ("cnn_fused", 60, "tunebridge fused ConvNet: fuse=K, accelerator gpu; cpu without one"),
]
TARGETS = {"mlp_x_unfused": 50.0, "mlp_vs_hand": 1.5, "cnn_x_unfused": 10.0, "overhead": 1.03}

_OUT: Path | None = None
_STAGE = ""


def record(**fields: Any) -> None:
    """One result line in ``OUT/results.jsonl`` (written at once: a stage cut short keeps what it had)."""
    line = json.dumps({"stage": _STAGE, **fields}, default=str)
    print(line, flush=True)
    assert _OUT is not None
    with open(_OUT / "results.jsonl", "a") as f:
        f.write(line + "\n")


# --------------------------------------------------------------------------- data and builders


@cache
def _tensors(n: int, nv: int, shape: tuple[int, ...], c: int, seed: int = 0) -> tuple[Any, Any]:
    """Synthetic classification data as fused_probe.py makes it: Gaussian inputs, labels of a random linear map."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + nv, *shape, generator=g, device="cpu")
    y = (x.flatten(1) @ torch.randn(math.prod(shape), c, generator=g, device="cpu")).argmax(1)
    return x, y


@cache
def datamodule_class() -> type:
    """A LightningDataModule of synthetic data that quacks like tunebridge's built-in ones.

    The fused engine reads the built-in datamodules' attributes (``seed``, ``val_fraction``,
    ``batch_size``, ``setup()``, ``train_set.x/.y``, ``val_set.x/.y``) and wants a class name ending in
    ``DataModule`` (``tunebridge.fused.check_fusable``); the loaders are the built-in ones' (whole index
    batches, a train order seeded with ``seed``), so unfused and fused trials read the same batches.
    """
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    from tunebridge.lightning.data import BatchIndexDataset

    class SyntheticDataModule(pl.LightningDataModule):  # type: ignore[misc]
        def __init__(self, *, n: int, nv: int, shape: tuple[int, ...], n_classes: int, batch_size: int) -> None:
            super().__init__()
            self.n, self.nv, self.shape = n, nv, tuple(shape)
            self.n_features, self.n_classes, self.input_shape = math.prod(shape), n_classes, tuple(shape)
            self.batch_size, self.val_batch_size, self.seed = batch_size, 1024, 0
            self.val_fraction = nv / (n + nv)
            self.train_set: Any = None
            self.val_set: Any = None

        def setup(self, stage: str | None = None) -> None:
            if self.train_set is not None:
                return
            # On the CPU, as the built-in datamodules keep it: Lightning moves each batch to the device,
            # a fused cohort moves the whole set there once.
            x, y = _tensors(self.n, self.nv, self.shape, self.n_classes)
            self.train_set = BatchIndexDataset(x[: self.n], y[: self.n])
            self.val_set = BatchIndexDataset(x[self.n :], y[self.n :])

        def train_dataloader(self) -> Any:
            self.setup()
            generator = torch.Generator().manual_seed(self.seed)
            sampler = BatchSampler(RandomSampler(self.train_set, generator=generator), self.batch_size, drop_last=False)
            return DataLoader(self.train_set, batch_size=None, sampler=sampler, num_workers=0)

        def val_dataloader(self) -> Any:
            self.setup()
            sampler = BatchSampler(SequentialSampler(self.val_set), self.val_batch_size, drop_last=False)
            return DataLoader(self.val_set, batch_size=None, sampler=sampler, num_workers=0)

    return SyntheticDataModule


def make_build(cfg: dict[str, Any], model: str, *, n: int | None = None, epochs: int = 2) -> Callable[..., Any]:
    """``build(config) -> (module, datamodule)`` for the MLP or the ConvNet of the issue on synthetic data."""
    from tunebridge.lightning.models import model_classes

    classes = model_classes()
    dm_cls = datamodule_class()

    def build(config: dict[str, Any]) -> tuple[Any, Any]:
        full = {"optimizer": "adamw", **config}  # the ConvNet's members draw theirs
        if model == "mlp":
            dm = dm_cls(
                n=n or cfg["mlp_n"], nv=cfg["mlp_nv"], shape=(cfg["d"],), n_classes=cfg["c"], batch_size=cfg["batch"]
            )
            module = classes.MLPClassifier(
                {**full, "n_layers": 2}, n_features=cfg["d"], n_classes=cfg["c"], max_epochs=epochs
            )
        else:
            dm = dm_cls(
                n=n or cfg["cnn_n"],
                nv=cfg["cnn_nv"],
                shape=cfg["cnn_shape"],
                n_classes=cfg["c"],
                batch_size=cfg["batch"],
            )
            f0, f1 = cfg["filters"]
            structure = {"n_blocks": 2, "filters/0": f0, "filters/1": f1, "kernel_size": 3, "pooling": "max"}
            module = classes.ConvNetClassifier(
                {**full, **structure, "dropout": cfg["cnn_dropout"]},
                input_shape=cfg["cnn_shape"],
                n_classes=cfg["c"],
                max_epochs=epochs,
            )
        return module, dm

    return build


def make_space(cfg: dict[str, Any], model: str) -> Any:
    """Heterogeneous training hyperparameters, as fused_probe.py draws them; the MLP's width too.

    The ConvNet keeps its structure and its dropout p fixed (``cnn_dropout``, set by the build): a
    vmapped cohort runs every member through one module, so members of different p (or structure)
    form separate cohorts. Its members differ in lr, weight decay and optimizer instead.
    """
    from tunebridge.schema import Choice, Float, Int, Space

    common = {"lr": Float(1e-4, 1e-2, log=True), "weight_decay": Float(1e-6, 1e-3, log=True)}
    if model == "mlp":
        return Space(**common, dropout=Float(0.0, 0.5), units=Int(16, cfg["h"]))
    return Space(**common, optimizer=Choice(["adamw", "adam", "momentum"]))


def prepare(cfg: dict[str, Any], model: str) -> None:
    """Import Lightning and make the data before any clock starts (what a warm process already has)."""
    _, dm = make_build(cfg, model)({"lr": 1e-3, "weight_decay": 1e-5, "dropout": 0.1, "units": cfg["h"]})
    dm.setup()


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- stage: hand-written probe


def stage_probe(cfg: dict[str, Any], dev: str) -> None:
    """fused_probe.py's raw and heterogeneous loops (copied: the issue says not to import it)."""
    import platform
    from importlib.metadata import version

    import torch
    import torch.nn as nn

    import tunebridge

    record(
        what="env", torch=torch.__version__, lightning=version("lightning"), python=platform.python_version(),
        device=dev, gpu=torch.cuda.get_device_name() if dev == "cuda" else None, cpus=os.cpu_count(),
        threads=torch.get_num_threads(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        tf32_cudnn=torch.backends.cudnn.allow_tf32, tunebridge=os.path.dirname(tunebridge.__file__),
    )  # fmt: skip
    n, nv, d, c, h, b, k = cfg["mlp_n"], cfg["mlp_nv"], cfg["d"], cfg["c"], cfg["h"], cfg["batch"], cfg["k"]
    x, y = _tensors(n, nv, (d,), c)
    xg, yg, xv, yv = x[:n].to(dev), y[:n].to(dev), x[n:].to(dev), y[n:].to(dev)

    def raw_epoch() -> None:
        m = nn.Sequential(
            nn.Linear(d, h), nn.ReLU(), nn.Dropout(0.1), nn.Linear(h, h), nn.ReLU(), nn.Dropout(0.1), nn.Linear(h, c)
        ).to(dev)
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        perm = torch.randperm(n, device=dev)
        for i in range(0, n, b):
            idx = perm[i : i + b]
            loss = nn.functional.cross_entropy(m(xg[idx]), yg[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()

    class Hetero:
        """K MLPs with their own lr, weight decay, dropout p and width (masked to h); batched matmuls, own AdamW."""

        def __init__(self, kk: int, seed: int = 0) -> None:
            gg = torch.Generator(device="cpu").manual_seed(seed)
            self.K = kk
            self.lr = torch.exp(torch.empty(kk).uniform_(math.log(1e-4), math.log(1e-2), generator=gg)).to(dev)
            self.wd = torch.exp(torch.empty(kk).uniform_(math.log(1e-6), math.log(1e-3), generator=gg)).to(dev)
            self.p = torch.empty(kk).uniform_(0.0, 0.5, generator=gg).to(dev)
            widths = torch.randint(16, h + 1, (kk,), generator=gg)
            self.mask = (torch.arange(h)[None, :] < widths[:, None]).float().to(dev)

            def w(i: int, o: int) -> Any:
                return (torch.rand(kk, i, o, generator=gg) * 2 - 1).mul_(1 / math.sqrt(i)).to(dev).requires_grad_()

            def bias(o: int, i: int) -> Any:
                return (torch.rand(kk, 1, o, generator=gg) * 2 - 1).mul_(1 / math.sqrt(i)).to(dev).requires_grad_()

            self.params = [w(d, h), bias(h, d), w(h, h), bias(h, h), w(h, c), bias(c, h)]
            self.m = [torch.zeros_like(q) for q in self.params]
            self.v = [torch.zeros_like(q) for q in self.params]
            self.step_n = torch.zeros((), device=dev)
            self.alive = torch.ones(kk, device=dev)

        def forward(self, xb: Any, train: bool = True) -> Any:
            w1, b1, w2, b2, w3, b3 = self.params
            hh = torch.relu(torch.einsum("bd,kdh->kbh", xb, w1) + b1) * self.mask[:, None, :]
            if train:
                hh = hh * (torch.rand_like(hh) >= self.p[:, None, None]).float() / (1 - self.p[:, None, None])
            hh = torch.relu(torch.baddbmm(b2, hh, w2)) * self.mask[:, None, :]
            if train:
                hh = hh * (torch.rand_like(hh) >= self.p[:, None, None]).float() / (1 - self.p[:, None, None])
            return torch.baddbmm(b3, hh, w3)

        def loss(self, xb: Any, yb: Any) -> Any:
            out = self.forward(xb)
            per = (
                nn.functional.cross_entropy(out.reshape(-1, c), yb.repeat(self.K), reduction="none")
                .view(self.K, -1)
                .mean(1)
            )
            return (per * self.alive).sum()

        @torch.no_grad()
        def adamw(self, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
            self.step_n.add_(1)
            c1, c2 = 1 - b1**self.step_n, 1 - b2**self.step_n
            for q, m, v in zip(self.params, self.m, self.v):
                shape = (self.K,) + (1,) * (q.dim() - 1)
                lr, wd, alive = self.lr.view(shape), self.wd.view(shape), self.alive.view(shape)
                q.mul_(1 - lr * wd * alive)
                m.mul_(b1).add_(q.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(q.grad, q.grad, value=1 - b2)
                q.sub_((m / c1) / ((v / c2).sqrt_().add_(eps)) * lr * alive)
                q.grad = None

        @torch.no_grad()
        def val_loss(self) -> Any:
            out = self.forward(xv, train=False)
            return (
                nn.functional.cross_entropy(out.reshape(-1, c), yv.repeat(self.K), reduction="none")
                .view(self.K, -1)
                .mean(1)
            )

    def hetero_epoch(model: Hetero) -> None:
        perm = torch.randperm(n, device=dev)
        for i in range(0, n, b):
            idx = perm[i : i + b]
            model.loss(xg[idx], yg[idx]).backward()
            model.adamw()
        model.val_loss()
        sync()

    def timeit(fn: Callable[[], None], reps: int = 2) -> float:
        fn()  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    raw = timeit(raw_epoch)
    record(what="hand_raw", model="mlp", k=1, steady=raw)
    model = Hetero(k)
    het = timeit(lambda: hetero_epoch(model))
    record(what="hand_hetero", model="mlp", k=k, steady=het / k, s_per_cohort_epoch=het)


# --------------------------------------------------------------------------- stages: unfused tunebridge


_EPOCHS: list[tuple[int, float]] = []  # (epoch index within its trial, seconds) of every unfused epoch


@cache
def epoch_timer() -> type:
    """A Lightning callback class recording each epoch's wall time (train and validation) in ``_EPOCHS``."""
    import lightning.pytorch as pl

    class EpochTimer(pl.Callback):  # type: ignore[misc]
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            sync()
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            sync()
            _EPOCHS.append((int(trainer.current_epoch), time.perf_counter() - self.t0))

    return EpochTimer


def _quiet() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _trial_epochs(result: Any) -> int:
    return int(result.trials["epochs"].fillna(0).sum())


def stage_unfused(cfg: dict[str, Any], model: str) -> None:
    """One Lightning Trainer per trial (accelerator auto: the GPU when there is one)."""
    import tunebridge

    _quiet()
    space = make_space(cfg, model)
    common: dict[str, Any] = {"metric": "val_loss", "mode": "min", "search": "random", "seed": 0}
    run = {"progress": False, "checkpoints": {"keep": 0}}
    prepare(cfg, model)
    warm = make_build(cfg, model, n=cfg["warm_n"], epochs=1)
    tunebridge.tune(warm, space, trials=1, max_epochs=1, **common, trainer={"accelerator": "auto"}, run=run)
    trials, epochs = cfg["unfused_trials" if model == "mlp" else "cnn_unfused_trials"], cfg["unfused_epochs"]
    _EPOCHS.clear()
    t0 = time.perf_counter()
    result = tunebridge.tune(
        make_build(cfg, model, epochs=epochs),
        space,
        trials=trials,
        max_epochs=epochs,
        **common,
        trainer={"accelerator": "auto", "callbacks": [epoch_timer()]},
        run=run,
    )
    wall = time.perf_counter() - t0
    te = _trial_epochs(result)
    later = [s for e, s in _EPOCHS if e >= 1] or [s for _, s in _EPOCHS]
    record(
        what="unfused", model=model, trials=trials, epochs=epochs, trial_epochs=te, wall_s=wall,
        e2e=wall / max(te, 1), steady=statistics.median(later),
        epoch_s=[round(s, 4) for _, s in _EPOCHS], states=result.trials["state"].value_counts().to_dict(),
    )  # fmt: skip


# --------------------------------------------------------------------------- stages: fused tunebridge


def _instrument(rounds: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """Time every cohort epoch (members trained, seconds, the cohort's device), and keep what each run's
    ``fuse: auto`` chose and its ``FuseStats`` (``tune()`` records only the efficiency). Measures only."""
    from tunebridge.fused import _loop
    from tunebridge.fused._cohort import Cohort
    from tunebridge.fused._vmap import VmapCohort

    for cls in (Cohort, VmapCohort):
        original = cls.train_epoch

        def timed(self: Any, _original: Any = original) -> None:
            active = sum(1 for m in self.slots if m is not None and not m.done)
            sync()
            t0 = time.perf_counter()
            _original(self)
            sync()
            device = str(getattr(self, "device", "unknown"))
            rounds.append({"cohort": id(self), "members": active, "s": time.perf_counter() - t0, "device": device})

        cls.train_epoch = timed

    auto_capacity, run_fused = _loop.auto_capacity, _loop.run_fused

    def chosen(member: Any, device: Any, dtype: Any) -> int:
        import torch

        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        k = auto_capacity(member, device, dtype)
        runs.append({"auto_k": k, "auto_device": str(device), "free_gib": free / 2**30 if free else None})
        return k

    def stats_of(*args: Any, **kwargs: Any) -> Any:
        stats = run_fused(*args, **kwargs)
        fields = ("capacity", "cohorts", "members", "halvings", "singles")
        runs.append({f: getattr(stats, f, None) for f in fields})
        return stats

    _loop.auto_capacity = chosen  # run_fused looks both up in its module
    _loop.run_fused = stats_of  # tune() imports it from the module at each call


def stage_fused(cfg: dict[str, Any], model: str, *, threads: int) -> None:
    """``tune(trainer={"accelerator": "gpu"}, run={"fuse": K})`` (``"cpu"`` where torch sees no GPU: the smoke test); for the MLP
    then ``fuse="auto"`` in the same process (one import and CUDA start-up fewer). Each run is
    recorded as it ends; a run that raises is recorded with its error, the next one still runs, and the
    stage then fails."""
    import gc
    import traceback

    import torch

    import tunebridge

    _quiet()
    prepare(cfg, model)
    rounds: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    _instrument(rounds, runs)
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    space = make_space(cfg, model)
    common: dict[str, Any] = {"metric": "val_loss", "mode": "min", "search": "random", "seed": 0}
    k = cfg["k" if model == "mlp" else "cnn_k"]
    epochs = cfg["fused_epochs"]
    failed: list[str] = []
    for fuse, trials in [(k, k), *([("auto", cfg["auto_trials"])] if model == "mlp" else [])]:
        rounds.clear()
        runs.clear()
        if torch.cuda.is_available():
            # The last run's blocks, still cached by torch, would count as used in the free memory that
            # `fuse: auto` reads (a user's fresh process has none).
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            result = tunebridge.tune(make_build(cfg, model, epochs=epochs), space, trials=trials, max_epochs=epochs, **common, trainer={"accelerator": accelerator, "threads": threads}, run={"progress": False, "checkpoints": {"keep": 0}, "fuse": fuse})  # fmt: skip
        except Exception as exc:  # what a user asking for this sees: recorded, and the stage fails with it
            error = f"{type(exc).__name__}: {exc}"
            failed.append(error)
            record(
                what="fused_error", model=model, accelerator=accelerator, fuse=fuse, error=error,
                traceback="".join(traceback.format_exception(exc)[-6:]),
            )  # fmt: skip
            traceback.print_exc()
            continue
        wall = time.perf_counter() - t0
        te = _trial_epochs(result)
        seen: set[int] = set()
        steady = []  # every cohort epoch but each cohort's first (kernel choice, allocator warm-up)
        for r in rounds:
            if r["cohort"] in seen:
                steady.append(r)
            seen.add(r["cohort"])
        steady = steady or rounds
        loop_s = sum(r["s"] for r in rounds)
        stats = {key: value for run in runs for key, value in run.items()}
        record(
            what="fused", model=model, accelerator=accelerator, fuse=fuse, trials=trials,
            cohort_device=sorted({r["device"] for r in rounds}), k=stats.get("capacity") or k, epochs=epochs,
            trial_epochs=te, wall_s=wall, e2e=wall / max(te, 1),
            loop=loop_s / max(sum(r["members"] for r in rounds), 1),
            steady=sum(r["s"] for r in steady) / max(sum(r["members"] for r in steady), 1),
            cohorts=len(seen), cohort_epochs=len(rounds), largest=max((r["members"] for r in rounds), default=0),
            efficiency=result.record.get("fused_efficiency"), states=result.trials["state"].value_counts().to_dict(),
            peak_gpu_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            **{f"stats_{key}": value for key, value in stats.items()},
        )  # fmt: skip
    if failed:
        raise SystemExit(f"{len(failed)} fused run(s) raised: {'; '.join(failed)}")


# --------------------------------------------------------------------------- stage: issue 10 overhead


def stage_overhead(cfg: dict[str, Any]) -> None:
    """tunebridge.tune vs the loop a user writes by hand (as benchmarks/bench_overhead.py, on the GPU)."""
    import lightning.pytorch as pl
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    import tunebridge
    from tunebridge.schema import Float, Space

    _quiet()
    space = Space(lr=Float(1e-4, 1e-2, log=True), weight_decay=Float(1e-6, 1e-3, log=True))
    fixed = {"units": cfg["h"], "dropout": 0.0}

    def build_for(n: int | None) -> Callable[..., Any]:
        inner = make_build(cfg, "mlp", n=n, epochs=1)
        return lambda config: inner({**config, **fixed})

    def baseline(trials: int, n: int | None) -> float:
        build = build_for(n)

        def objective(trial: optuna.Trial) -> float:
            config = {
                "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
            }
            module, data = build(config)
            trainer = pl.Trainer(
                max_epochs=1, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_acc")],
            )  # fmt: skip
            trainer.fit(module, datamodule=data)
            return float(trainer.callback_metrics["val_acc"])

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=trials)
        return time.perf_counter() - t0

    def with_tunebridge(trials: int, n: int | None) -> float:
        with tempfile.TemporaryDirectory() as tmp:  # the default keep_checkpoints=1, written out of the repo
            t0 = time.perf_counter()
            tunebridge.tune(build_for(n), space, metric="val_acc", mode="max", search="random", trials=trials, max_epochs=1, seed=0, trainer={"accelerator": "auto"}, run={"progress": False, "checkpoints": {"dir": tmp}})  # fmt: skip
            return time.perf_counter() - t0

    baseline(1, cfg["warm_n"]), with_tunebridge(1, cfg["warm_n"])  # imports, CUDA context, kernels
    trials = cfg["overhead_trials"]
    for i in range(cfg["overhead_rounds"]):
        b = baseline(trials, None)
        t = with_tunebridge(trials, None)
        record(what="overhead_round", round=i, trials=trials, baseline_s=b, tunebridge_s=t, ratio=t / b)


# --------------------------------------------------------------------------- the report


def _load(out: Path) -> list[dict[str, Any]]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    hits = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return hits[-1] if hits else None


def _s(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _verdict(value: float | None, target: float, higher: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher else value <= target
    return f"{value:.2f}x ({'met' if met else 'NOT met'}; target {'>=' if higher else '<='} {target:g}x)"


def _headline(rows: list[dict[str, Any]]) -> str:
    """Whether fused cohorts trained on the GPU through ``tune(trainer={"accelerator": "gpu"}, run={"fuse": ...})``, and what failed."""
    fused = [r for r in rows if r.get("what") == "fused"]
    errors = [r for r in rows if r.get("what") == "fused_error"]
    on_cuda = sorted({r["model"] for r in fused if any("cuda" in d for d in r.get("cohort_device", []))})
    lines = []
    if on_cuda:
        lines.append(
            f"**Fused cohorts trained on CUDA** through `tune(trainer={'accelerator': 'gpu'}, run={'fuse': ...})`: {', '.join(on_cuda)}."
        )
    elif fused and any(r["accelerator"] == "gpu" for r in fused):
        devices = sorted({d for r in fused for d in r["cohort_device"]})
        lines.append(f"**`accelerator='gpu'` was asked, but the cohorts trained on {', '.join(devices)}.**")
    elif fused:
        lines.append(
            "**Fused cohorts ran on the CPU only** (`accelerator='cpu'`: torch saw no GPU); nothing here measures"
            " a GPU."
        )
    for r in errors:
        lines.append(
            f"- `tune(trainer={{'accelerator': {r['accelerator']!r}}}, run={{'fuse': {r['fuse']!r}}})` for the {r['model']} raised:"
            f' "{r["error"].splitlines()[0]}" (the stage\'s log has the traceback)'
        )
    if errors and lines[0].startswith("**"):
        lines.insert(1, "")  # a paragraph, then the list of errors
    return "\n".join(lines) or "No fused stage has finished yet."


def _auto_section(rows: list[dict[str, Any]]) -> list[str]:
    """What ``fuse: auto`` chose: K, from which device and free memory, and what the run then did."""
    auto = [r for r in rows if r.get("what") == "fused" and r.get("fuse") == "auto"]
    if not auto:
        return ["not measured", ""]
    lines = []
    for r in auto:
        free = r.get("stats_free_gib")
        where = f"on {r.get('stats_auto_device', '?')}" + (f" with {free:.1f} GiB free" if free else "")
        lines.append(
            f"- {r['model']}: `fuse: auto` chose K={r.get('stats_auto_k', '?')} {where} (from the first member;"
            f" the CPU rule is max(8, 16 x CPUs)). {r['trials']} trials: {r.get('stats_cohorts', '?')} cohort(s),"
            f" largest {r['largest']} members, {r.get('stats_halvings', 0)} out-of-memory halvings,"
            f" {r['steady']:.4f} s per trial-epoch steady, {r['e2e']:.4f} end to end."
        )
    return [*lines, ""]


def _model_section(rows: list[dict[str, Any]], model: str) -> list[str]:
    """Issue 9's table for one model (seconds per trial-epoch of every way measured) and its ratios."""
    lines = [
        "| how | K | s per trial-epoch, steady | s per trial-epoch, end to end | trial-epochs/s, steady | notes |",
        "|---|---|---|---|---|---|",
    ]
    table: list[tuple[str, int, float, float | None, str]] = []
    unf = _find(rows, what="unfused", model=model)
    if unf:
        note = f"{unf['trials']} trials x {unf['epochs']} epochs; steady: median of the epochs after each first"
        table.append(("tunebridge unfused (one Trainer per trial)", 1, unf["steady"], unf["e2e"], note))
    names = {"hand_raw": "hand-written loop, one model", "hand_hetero": "hand-written fused loop (fused_probe.py)"}
    for what, name in names.items():
        r = _find(rows, what=what, model=model)
        if r:
            table.append((name, r["k"], r["steady"], None, "data on the device; median of 2 epochs after a warm-up"))
    fused = [r for r in rows if r.get("what") == "fused" and r.get("model") == model and r.get("fuse") != "auto"]
    for r in fused:
        how = f"tune(fuse={r['fuse']}, accelerator={r['accelerator']})"
        note = (
            f"cohorts on {','.join(r['cohort_device'])}; {r['cohorts']} cohorts; {r['epochs']} epochs; "
            f"efficiency {r['efficiency']}; in the loop {r['loop']:.4f} s/trial-epoch"
        )
        if r.get("peak_gpu_gib"):
            note += f"; peak {r['peak_gpu_gib']:.1f} GiB"
        table.append((f"tunebridge fused, {how}", r["k"], r["steady"], r["e2e"], note))
    for name, k, steady, e2e, note in table:
        lines.append(f"| {name} | {k} | {_s(steady)} | {_s(e2e)} | {1 / steady:.1f} | {note} |")
    if not table:
        return ["not measured", ""]
    lines.append("")
    best = min(fused, key=lambda r: r["steady"]) if fused else None
    if best is None:
        return lines
    tag = f"on {','.join(best['cohort_device'])}"
    if unf:
        target = TARGETS["mlp_x_unfused" if model == "mlp" else "cnn_x_unfused"]
        steady, e2e = unf["steady"] / best["steady"], unf["e2e"] / best["e2e"]
        lines.append(
            f"- fused ({tag}) over unfused trial-epochs/s, steady: {_verdict(steady, target, True)}; "
            f"end to end: {_verdict(e2e, target, True)}"
        )
    hand = _find(rows, what="hand_hetero", model=model)
    if hand:
        ratio = best["steady"] / hand["steady"]
        lines.append(
            f"- fused ({tag}) s per trial-epoch over the hand-written fused loop's: {_verdict(ratio, TARGETS['mlp_vs_hand'], False)}"
        )
    return [*lines, ""]


def _overhead_section(rows: list[dict[str, Any]]) -> list[str]:
    rounds = [r for r in rows if r.get("what") == "overhead_round"]
    if not rounds:
        return ["not measured", ""]
    lines = ["| round | hand-written Optuna + Lightning (s) | tunebridge.tune (s) | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['baseline_s']:.2f} | {r['tunebridge_s']:.2f} | {r['ratio']:.3f} |" for r in rounds]
    b = statistics.median(r["baseline_s"] for r in rounds)
    t = statistics.median(r["tunebridge_s"] for r in rounds)
    extra = (t - b) / rounds[0]["trials"]
    return [*lines, "", f"- median ratio: {_verdict(t / b, TARGETS['overhead'], False)}; {extra:+.3f} s per trial", ""]


def render(out: Path, *, smoke: bool, started: float, budget: float) -> None:
    """``OUT/gpu-check.md`` from every result so far (rewritten after each stage)."""
    rows = _load(out)
    env = _find(rows, what="env") or {}
    tiny = " (smoke: tiny sizes)" if smoke else ""
    lines = [
        f"# GPU check (issues 9 and 10){' — CPU smoke test, tiny sizes' if smoke else ''}",
        "",
        f"Device: {env.get('gpu') or env.get('device', '?')}; torch {env.get('torch', '?')}, lightning "
        f"{env.get('lightning', '?')}, Python {env.get('python', '?')}, {env.get('cpus', '?')} CPUs, "
        f"{env.get('threads', '?')} torch threads; TF32 matmul {env.get('tf32_matmul')}, TF32 cuDNN "
        f"{env.get('tf32_cudnn')} (torch's defaults). {time.time() - started:.0f} s of a {budget:.0f} s budget so far.",
        "",
        _headline(rows),
        "",
        "## Issue 9: trial-epochs per second",
        "",
        "Steady: an epoch after the first of its trial or cohort, timed alone. End to end: the `tune()` call's"
        " wall time over the trial-epochs it trained (building modules, sampling, bookkeeping included).",
        "",
        f"### MLP 784-256-256-10, batch 128, 50k samples, heterogeneous lr/weight decay/dropout/width{tiny}",
        "",
        *_model_section(rows, "mlp"),
        f"### ConvNet (32/64 filters, 3x32x32, batch 128, 20k samples), heterogeneous lr/weight decay/optimizer,"
        f" one dropout p{tiny}",
        "",
        *_model_section(rows, "cnn"),
        f"### `fuse: auto` (MLP){tiny}",
        "",
        *_auto_section(rows),
        f"## Issue 10: GPU overhead (8 trials x 1 epoch, MLP on 50k samples){tiny}",
        "",
        *_overhead_section(rows),
        "## Stages",
        "",
        "| stage | status | seconds | what |",
        "|---|---|---|---|",
    ]
    status = [r for r in rows if r.get("what") == "stage_status"]
    lines += [f"| {r['stage']} | {r['status']} | {r['seconds']:.1f} | {r['about']} |" for r in status]
    for r in [r for r in status if r["status"] != "ok" and r.get("tail")]:
        lines += ["", f"### {r['stage']}: {r['status']}", "", "```", r["tail"].strip(), "```"]
    (out / "gpu-check.md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- driver


def run_stage(name: str, args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    cfg = SMOKE if args.smoke else FULL
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "probe":
        stage_probe(cfg, dev)
    elif name in ("mlp_unfused", "cnn_unfused"):
        stage_unfused(cfg, name[:3])
    elif name == "overhead":
        stage_overhead(cfg)
    else:
        stage_fused(cfg, name[:3], threads=args.threads)


def main() -> None:
    global _OUT, _STAGE
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU test of the script)")
    parser.add_argument("--budget", type=float, default=280.0, help="seconds for every stage together")
    parser.add_argument("--started", type=float, default=None, help="epoch seconds the budget counts from")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 with --smoke, else all CPUs)"
    )
    parser.add_argument("--stage", default=None, help="run one stage (used by the driver itself)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these stages")
    args = parser.parse_args()
    args.threads = args.threads or (1 if args.smoke else os.cpu_count() or 1)
    _OUT = args.out
    _OUT.mkdir(parents=True, exist_ok=True)
    if args.stage:
        _STAGE = args.stage
        run_stage(args.stage, args)
        return
    started = args.started or time.time()
    deadline = started + args.budget
    (_OUT / "logs").mkdir(exist_ok=True)
    render(_OUT, smoke=args.smoke, started=started, budget=args.budget)
    for name, box, about in STAGES:
        if args.only is not None and name not in args.only:
            continue
        left = deadline - time.time() - 3  # keep a moment for the last report
        _STAGE = name
        if left < 10:
            record(what="stage_status", status="skipped (budget spent)", seconds=0.0, about=about)
            continue
        limit = box * (4 if args.smoke else 1)  # a loaded CPU is slow even at tiny sizes
        limit = min(limit, left)
        cmd = [sys.executable, __file__, "--stage", name, "--out", str(_OUT), "--threads", str(args.threads)]
        cmd += ["--smoke"] if args.smoke else []
        t0 = time.time()
        print(f"[{time.time() - started:5.0f} s] {name} (at most {limit:.0f} s): {about}", flush=True)
        log = _OUT / "logs" / f"{name}.log"
        with open(log, "w") as f:
            try:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=limit).returncode
                status = "ok" if rc == 0 else f"error (exit {rc})"
            except subprocess.TimeoutExpired:
                status = f"timed out after {limit:.0f} s"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if status != "ok" else ""
        record(what="stage_status", status=status, seconds=time.time() - t0, about=about, tail=tail)
        render(_OUT, smoke=args.smoke, started=started, budget=args.budget)
    print((_OUT / "gpu-check.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
