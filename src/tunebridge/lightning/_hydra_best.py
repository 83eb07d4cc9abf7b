"""The best trial of a Hydra project as the project's own command: ``best_overrides.yaml`` and ``best_command.sh``.

``best_overrides.yaml`` is a list of overrides, as Hydra writes ``.hydra/overrides.yaml`` in each run's folder:
the spec's overrides, the trial's values, the budget it trained under (``trainer.max_epochs``) and its seed
(``seed``, when the config has one). ``best_command.sh`` runs them with the project's entry point:
``python train.py model.optimizer.lr=0.0012 data.batch_size=64 ...``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunebridge._overrides import override_value
from tunebridge.lightning._seed import trial_seed
from tunebridge.schema import Scalar

__all__ = ["best_command", "best_files", "override"]

override = override_value  # the one spelling of a value on Hydra's command line (tunebridge._overrides)


def best_command(script: str, overrides: list[str], *, cwd: str | None = None) -> str:
    """``python SCRIPT OVERRIDES`` quoted for a POSIX shell; the script relative to ``cwd`` when it lies below it."""
    shown = script
    if cwd is not None:
        relative = os.path.relpath(script, cwd)
        shown = relative if not relative.startswith("..") else script
    return " ".join(["python", shlex.quote(shown), *(shlex.quote(o) for o in overrides)])


def best_files(
    build: Any,
    config: Mapping[str, Scalar],
    out: str | Path,
    *,
    seed: int | None,
    has_seed: bool,
    trainer: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Write ``best_overrides.yaml`` and ``best_command.sh`` into ``out``; their paths, and the command as printed."""
    import yaml

    overrides = build.overrides(config)
    section = build.spec.trainer
    if section is not None and trainer is not None and "max_epochs" in trainer:
        overrides.append(f"{section}.max_epochs={build.max_epochs}")  # the budget the trial trained under
    if has_seed and seed is not None:
        overrides.append(f"seed={trial_seed(seed, dict(config))}")  # the trial's own seed
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"best_overrides": folder / "best_overrides.yaml", "best_command": folder / "best_command.sh"}
    header = (
        "# tunebridge: the best trial as overrides of "
        f"{os.path.join(build.spec.config_dir, build.spec.config_name)}.yaml (Hydra's .hydra/overrides.yaml form)\n"
    )
    paths["best_overrides"].write_text(header + yaml.safe_dump(overrides, sort_keys=False, width=1000))
    command = best_command(build.spec.script, overrides)
    paths["best_command"].write_text(
        "#!/bin/sh\n# tunebridge: the best trial, trained by the project's own entry point (run it from the folder "
        f"the study ran in, {build.cwd}: Hydra's paths start there)\n{command}\n"
    )
    paths["best_command"].chmod(0o755)
    return {**paths, "command": best_command(build.spec.script, overrides, cwd=os.getcwd())}
