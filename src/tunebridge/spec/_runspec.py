"""A validated run spec: :class:`RunSpec`, the options of :func:`tunebridge.tune` read from a spec file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tunebridge._rules import check_study_name
from tunebridge.schema import EarlyStoppingSpec, PruningSpec, Space
from tunebridge.spec._cli import LightningCliSpec
from tunebridge.spec._hydra import HydraSpec
from tunebridge.spec._run import RunSections

__all__ = ["RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    """A validated spec file: the same options as :func:`tunebridge.tune` takes."""

    space: Space
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    model: str | None = None
    data: str | None = None
    builder: str | None = None
    study: str | None = None
    max_epochs: int = 20
    early_stopping: EarlyStoppingSpec | None = None
    pruner: PruningSpec = field(default_factory=PruningSpec)
    search: str = "tpe"
    search_options: Mapping[str, Any] = field(default_factory=dict)
    trials: int = 20
    seed: int = 0
    storage: str | None = None
    backend: str = "optuna"
    accelerator: str = "auto"
    threads: int | None = None
    ray: Mapping[str, Any] = field(default_factory=dict)
    run: RunSections = field(default_factory=RunSections)
    lightning_cli: LightningCliSpec | None = None
    hydra: HydraSpec | None = None
    base_dir: str = "."

    @property
    def metric(self) -> str | list[str]:
        return self.metrics[0] if len(self.metrics) == 1 else list(self.metrics)

    @property
    def mode(self) -> str | list[str]:
        return self.modes[0] if len(self.modes) == 1 else list(self.modes)

    def meaning(self) -> dict[str, Any]:
        """What decides the results of a run (not how many trials, where or on what)."""
        return {
            "space": self.space.to_dict(),
            "metrics": list(self.metrics),
            "modes": list(self.modes),
            "model": self.model,
            "data": self.data,
            "builder": self.builder,
            "max_epochs": self.max_epochs,
            "early_stopping": None if self.early_stopping is None else self.early_stopping.to_dict(),
            "pruner": self.pruner.to_dict(),
            "search": self.search,
            "seed": self.seed,
            **({"search_options": dict(self.search_options)} if self.search_options else {}),
            **({"lightning_cli": self.lightning_cli.meaning()} if self.lightning_cli else {}),
            **({"hydra": self.hydra.meaning()} if self.hydra else {}),
            # Only when it differs from the defaults, so that specs written before these sections keep their hash.
            **({} if self.run.meaning() == RunSections().meaning() else self.run.meaning()),
        }

    def hash(self) -> str:
        """SHA-256 of :meth:`meaning` in canonical JSON; a resume with another hash is refused."""
        return hashlib.sha256(json.dumps(self.meaning(), sort_keys=True).encode()).hexdigest()

    def study_kwargs(self, storage: str | None) -> dict[str, Any]:
        """The keyword arguments of :func:`tunebridge.api.study_options` this spec stands for."""
        return {
            "metric": list(self.metrics),
            "mode": list(self.modes),
            "backend": self.backend,
            "search": {"name": self.search, **self.search_options} if self.search_options else self.search,
            "pruner": self.pruner,
            "max_epochs": self.max_epochs,
            "storage": storage,
            "study": self.study,
            "seed": self.seed,
            "spec_hash": self.hash(),
        }

    def tune_kwargs(self, storage: str | None) -> dict[str, Any]:
        """The keyword arguments of :func:`tunebridge.tune` this spec stands for (all but the builder and space).

        ``trainer`` and ``run`` are mappings of :class:`tunebridge.options.TrainerOptions` and
        :class:`tunebridge.options.RunOptions` fields, for the CLI to add its own (progress, workers, ray).
        """
        kwargs = self.study_kwargs(storage)
        trainer = {
            "accelerator": self.accelerator,
            "threads": self.threads,
            **self.run.trainer_options(),
            "callbacks": self.callback_factories(),
        }
        run = {**self.run.run_options(), "spec_hash": kwargs.pop("spec_hash")}
        return {**kwargs, "trials": self.trials, "early_stopping": self.early_stopping, "trainer": trainer, "run": run}

    def callback_factories(self) -> tuple[Any, ...]:
        """The spec's callbacks as factories, imported from the spec's folder (this imports their modules)."""
        if not self.run.callbacks:
            return ()
        from tunebridge.lightning import callback_factories

        return callback_factories(self.run.callbacks, base_dir=self.base_dir)

    def with_overrides(self, **changes: Any) -> RunSpec:
        """A copy with CLI overrides applied (None values are ignored); ``--study`` obeys the spec's rule."""
        if changes.get("study") is not None:
            check_study_name(changes["study"], path="--study")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
