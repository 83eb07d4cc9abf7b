"""Real studies to hold the replay to: the same measure (epochs to within eps of a table's best), trained for real.

Each study is what the replay simulates: ``tunebridge.tune`` on the digits_mlp recipe's space and budget, the
variant's search (random, or TPE) seeded ``seed``, one trial after another (``fuse: 1``), the variant's pruner and early stopping, until a
complete trial reaches the target (``stop: {target}``) or ``cap`` trials. Its configs are new draws from the
space, not the table's rows, so what is compared is the ratio's distribution over seeds, not seed by seed.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from _replay import Variant

import tunebridge
from tunebridge.cli._recipes import BUNDLED
from tunebridge.lightning import builtin_builder
from tunebridge.spec import load_spec

__all__ = ["real_epochs_to"]


def real_epochs_to(variant: Variant, seed: int, target: float, *, cap: int) -> dict[str, Any]:
    """One real study: trial-epochs until a complete trial reaches ``target`` (inf: not in ``cap`` trials)."""
    spec = load_spec(BUNDLED / "digits_mlp.yaml")
    budget = spec.max_epochs
    pruner = variant.pruning()
    es = variant.early_stopping()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = tunebridge.tune(
            builtin_builder("mlp", "digits", max_epochs=budget, seed=seed),
            spec.space,
            metric="val_acc",
            mode="max",
            trials=cap,
            max_epochs=budget,
            search=variant.search,
            pruner=pruner,
            early_stopping=es,
            seed=seed,
            study=f"confirm-{seed}",
            trainer={"accelerator": "cpu", "threads": 1},
            run={
                "fuse": 1,
                "progress": False,
                "stop": {"target": target},
                "checkpoints": {"dir": str(Path(tmp) / "ckpt")},
            },
        )
    spent, reached = 0, math.inf
    for t in sorted(result.study.get_trials(deepcopy=False), key=lambda t: t.number):
        spent += len(t.intermediate_values)
        if t.state.name == "COMPLETE" and t.value is not None and t.value >= target:
            reached = float(spent)
            break
    return {"seed": seed, "variant": variant.label, "epochs": reached, "s": time.perf_counter() - started}
