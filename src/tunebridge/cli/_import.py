"""``tunebridge import hydra-sweeper FILE``: a hydra-optuna-sweeper config as a tunebridge spec.

The sweeper config (``configs/hparams_search/X.yaml``) is read by :func:`tunebridge.spec.read_sweeper`
(without the sweeper package); the spec written names the project's configs (``hydra:``), holds the search
as ``space:``, ``metric``, ``mode``, ``trials``, ``search`` and ``seed``, and adds what the sweeper cannot
do: pruning and early stopping. Where the sweeper's reading differs from Hydra's own, a comment says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tunebridge.cli._common import console, err_console, esc
from tunebridge.errors import SchemaError

__all__ = ["import_hydra_sweeper"]

_ADDED = {
    "pruner": {"policy": "asha", "grace_period": 1, "reduction_factor": 3},  # the replay's best default
    "early_stopping": {"patience": 6},
}


def _budget(spec_path: Path) -> int | None:
    """The composed config's ``trainer.max_epochs`` (what every sweeper trial trained); checks the space too."""
    from tunebridge._compat import has_module

    if not has_module("hydra"):
        return None
    from tunebridge.cli._run import build_for
    from tunebridge.spec import load_spec

    spec = load_spec(spec_path)
    build = build_for(spec)  # every space key must be a key of the composed config, before the spec is kept
    trainer = build.compose({}).parts.get("trainer") or {}
    epochs = trainer.get("max_epochs") if isinstance(trainer, dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1 else None


def import_hydra_sweeper(
    path: Path, *, out: Path | None, config_dir: Path | None, config_name: str, force: bool
) -> Path:
    """Write the spec of a hydra-optuna-sweeper config; print where, its notes and how to run it.

    Raises:
        SchemaError: The file does not exist, cannot be carried (naming its line), the spec exists (without
            ``force``), or its space names keys the composed config lacks.
    """
    from tunebridge.schema._codec import dump_yaml
    from tunebridge.spec import read_sweeper

    if not path.is_file():
        raise SchemaError(
            "the sweeper config does not exist",
            path=str(path),
            value=repr(str(path)),
            fix="Name a configs/hparams_search/*.yaml file.",
        )
    configs = (config_dir or path.resolve().parent.parent).resolve()
    search = read_sweeper(str(path), shown=str(path))
    target = (out or Path(f"tunebridge_{path.stem}.yaml")).resolve()
    if target.exists() and not force:
        raise SchemaError(
            "the spec file exists",
            path="--out",
            value=str(target),
            fix="Pass --force to overwrite it, or --out to write another file.",
        )
    hydra: dict[str, Any] = {"config_dir": os.path.relpath(configs, target.parent), "config_name": config_name}
    scripts = [configs.parent / s for s in ("train.py", "src/train.py") if (configs.parent / s).is_file()]
    if scripts:  # the entry point of the printed best command, as lightning-hydra-template lays it out
        hydra["script"] = os.path.relpath(scripts[0], target.parent)
    if search.overrides:
        hydra["overrides"] = list(search.overrides)
    doc: dict[str, Any] = {"study": search.study or path.stem, "hydra": hydra}
    searched = search.document()
    space = searched.pop("space")
    doc.update({k: v for k, v in searched.items() if k != "study"})
    doc["max_epochs"] = None  # the config's trainer.max_epochs, once it is composed below
    if search.metric is None:
        raise SchemaError(
            "the sweeper config names no `optimized_metric`",
            path=str(path),
            value="nothing",
            fix="Add optimized_metric: NAME (the metric train.py returns), or write `metric:` in the "
            "spec after importing.",
        )
    doc.update({**_ADDED, "space": space})
    header = [
        f"# Written by `tunebridge import hydra-sweeper {path}`: the same search (hydra-optuna-sweeper's",
        "# meaning, both bounds inclusive), plus pruning and early stopping, which the sweeper lacks.",
    ]
    header += [f"# note: {n}" for n in search.notes]
    target.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        target.write_text("\n".join(header) + "\n" + dump_yaml({k: v for k, v in doc.items() if v is not None}))

    write()
    try:
        doc["max_epochs"] = _budget(target)
    except Exception:
        target.unlink()  # a spec that cannot run is not left behind
        raise
    write()
    if doc["max_epochs"] is None:
        err_console.print(
            "[yellow]hydra-core is not installed[/]: `max_epochs` is tunebridge's default (20); set "
            "it to the config's trainer.max_epochs (pip install 'tunebridge[hydra]')."
        )
    for note in search.notes:
        err_console.print(esc(f"note: {note}"), highlight=False)
    console.print(esc(f"wrote {target}"), highlight=False)
    console.print(esc(f"run it with: tunebridge run {os.path.relpath(target)}"), highlight=False)
    return target
