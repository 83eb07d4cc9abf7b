"""The run spec file: model builder, data, space (or presets + overrides), metric, budget, policies.

Standard library (+ PyYAML) only, so ``tunebridge check`` never imports torch. Nothing in a spec is
executed except importing the named ``module:function`` builder, and that only when a run starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunebridge._search import parse_search
from tunebridge._spec_cli import LightningCliSpec, parse_lightning_cli
from tunebridge._spec_run import RUN_KEYS, RunOptions, parse_run_options
from tunebridge._spec_space import space_from_spec
from tunebridge._vocab import BACKENDS, BUILTIN_DATA, BUILTIN_MODELS, MODES, RAY_OPTION_KEYS, SEARCH_ALGORITHMS
from tunebridge.errors import SchemaError, show
from tunebridge.schema import EarlyStoppingSpec, PruningSpec, Space, is_json_scalar
from tunebridge.schema._codec import check_keys, load_yaml
from tunebridge.schema._hints import did_you_mean

__all__ = ["BUILTIN_DATA", "BUILTIN_MODELS", "SEARCH", "RunSpec", "load_spec", "objectives", "space_from_spec"]

SEARCH = SEARCH_ALGORITHMS  # the spec's name for it (tunebridge._vocab is the one definition)
_BUILDER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_STUDY = re.compile(r"[\w.\-]{1,128}")
_KEYS = (
    "study",
    "model",
    "data",
    "builder",
    "lightning_cli",
    "space",
    "metric",
    "mode",
    "max_epochs",
    "early_stopping",
    "pruner",
    "search",
    "trials",
    "seed",
    "storage",
    "backend",
    "accelerator",
    "threads",
    "ray",
    "description",
    *RUN_KEYS,
)


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
    run: RunOptions = field(default_factory=RunOptions)
    lightning_cli: LightningCliSpec | None = None
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
            # Only when it differs from the defaults, so that specs written before these sections keep their hash.
            **({} if self.run.meaning() == RunOptions().meaning() else self.run.meaning()),
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
        """The keyword arguments of :func:`tunebridge.tune` this spec stands for (all but the builder and space)."""
        return {
            **self.study_kwargs(storage),
            "trials": self.trials,
            "early_stopping": self.early_stopping,
            "accelerator": self.accelerator,
            "threads": self.threads,
            **self.run.tune_kwargs(),
            "callbacks": self.callback_factories(),
        }

    def callback_factories(self) -> tuple[Any, ...]:
        """The spec's callbacks as factories, imported from the spec's folder (this imports their modules)."""
        if not self.run.callbacks:
            return ()
        from tunebridge.lightning._trainer import callback_factories

        return callback_factories(self.run.callbacks, base_dir=self.base_dir)

    def with_overrides(self, **changes: Any) -> RunSpec:
        """A copy with CLI overrides applied (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_NOTHING = object()


def objectives(metric: object, mode: object = "min") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The one check of a run's objectives (spec files, :func:`tunebridge.tune` and workers alike).

    Args:
        metric: A metric name or a list of unique names (several make a multi-objective study).
        mode: ``min`` or ``max``, one for all metrics or one per metric.

    Returns:
        ``(metrics, modes)``, one mode per metric.

    Raises:
        SchemaError: No metric, an empty or repeated name, or a mode that is not min/max per metric.

    Example:
        >>> objectives(["val_loss", "n_params"], "min")
        (('val_loss', 'n_params'), ('min', 'min'))
    """
    metrics = [metric] if isinstance(metric, str) else metric
    if not isinstance(metrics, (list, tuple)) or not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise SchemaError(
            "`metric` must name the validation metric to optimise (or list several)",
            path="metric",
            value="nothing" if metric is _NOTHING else show(metric),
            fix="Write e.g. metric: val_acc.",
        )
    modes = [mode] * len(metrics) if isinstance(mode, str) else mode
    if not isinstance(modes, (list, tuple)) or len(modes) != len(metrics) or any(m not in MODES for m in modes):
        raise SchemaError(
            "`mode` must be min or max, one per metric",
            path="mode",
            value="nothing" if mode is _NOTHING else show(mode),
            fix="Write e.g. mode: max, or [min, min] for two metrics.",
        )
    if len(set(metrics)) != len(metrics):
        raise SchemaError("metrics must be unique", path="metric", value=show(metrics), fix="Remove the repeated name.")
    return tuple(metrics), tuple(modes)


def _int(data: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SchemaError(
            f"`{key}` must be an integer >= {minimum}",
            path=key,
            value=show(value),
            fix=f"Write e.g. {key}: {max(minimum, 1)}.",
        )
    return value


def _choice(data: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        hint = did_you_mean(value, allowed)
        raise SchemaError(
            f"`{key}` must be one of {', '.join(allowed)}",
            path=key,
            value=show(value),
            fix=hint or f"Use e.g. {key}: {default}.",
        )
    return value


def _ray(data: Any) -> dict[str, Any]:
    """The ``ray:`` section: known keys with plain values (the Ray backend checks their meaning)."""
    ray = {} if data is None else data
    if not isinstance(ray, Mapping):
        raise SchemaError(
            "`ray` must be a mapping",
            path="ray",
            value=show(ray),
            fix="Write e.g. ray: {cpus_per_trial: 1, max_concurrent: 2}.",
        )
    check_keys("ray", ray, RAY_OPTION_KEYS)
    for key, value in ray.items():
        names = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not (is_json_scalar(value) or names):
            raise SchemaError(
                f"`ray.{key}` must be a string, number, true/false, null or a list of names",
                path=f"ray.{key}",
                value=show(value),
                fix="Write a plain value.",
            )
    return {k: list(v) if isinstance(v, list) else v for k, v in ray.items()}


def parse_spec(data: Any, *, base_dir: str = ".", default_study: str | None = None) -> RunSpec:
    """Validate a spec document (already parsed) into a :class:`RunSpec`."""
    if data is None:
        raise SchemaError(
            "the spec is empty",
            path="spec",
            value="nothing",
            fix="See `tunebridge recipes --copy .` for complete examples.",
        )
    if not isinstance(data, Mapping):
        raise SchemaError(
            "a spec must be a mapping",
            path="spec",
            value=type(data).__name__,
            fix="See `tunebridge recipes --copy .` for complete examples.",
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SchemaError(
            "spec keys must be strings", path="spec", value=show(bad[0]), fix="Quote the key, or remove it."
        )
    check_keys("spec", data, _KEYS)
    if "space" not in data:
        raise SchemaError(
            "a spec needs a `space`",
            path="space",
            value="nothing",
            fix="Add `space: {presets: [mlp_full]}` or list parameters.",
        )
    model, dataset, builder = data.get("model"), data.get("data"), data.get("builder")
    cli = None if data.get("lightning_cli") is None else parse_lightning_cli(data["lightning_cli"], base_dir=base_dir)
    if cli is not None:
        if builder is not None or model is not None:
            raise SchemaError(
                "give one of `lightning_cli`, `builder` or `model` + `data`",
                path="lightning_cli",
                value=show({k: data[k] for k in ("builder", "model") if data.get(k) is not None}),
                fix="The LightningCLI config names the model and data; remove `builder`/`model`.",
            )
    elif builder is not None:
        if not isinstance(builder, str) or not _BUILDER.fullmatch(builder):
            guess = ":".join(builder.rsplit(".", 1)) if isinstance(builder, str) and ":" not in builder else ""
            raise SchemaError(
                "`builder` must be 'module:function'",
                path="builder",
                value=show(builder),
                fix=(f"Did you mean {guess!r}? " if _BUILDER.fullmatch(guess) else "")
                + "Write e.g. builder: my_models:build (a function config -> (module, datamodule)).",
            )
        if model is not None:
            raise SchemaError(
                "give either `builder` or `model` + `data`", path="model", value=show(model), fix="Remove one of them."
            )
    else:
        if model is None:
            raise SchemaError(
                "a spec needs `model` (built-in) or `builder` (module:function)",
                path="model",
                value="nothing",
                fix="Write e.g. model: mlp and data: digits.",
            )
        model = _choice(data, "model", "mlp", BUILTIN_MODELS)
        dataset = _choice(data, "data", "digits", BUILTIN_DATA)
        if model == "cnn" and dataset != "digits":
            raise SchemaError(
                "the built-in CNN needs image data",
                path="data",
                value=repr(dataset),
                fix="Use data: digits, or model: mlp for tabular data.",
            )
    study = data.get("study", default_study)
    if study is not None and (not isinstance(study, str) or not _STUDY.fullmatch(study)):
        raise SchemaError(
            "`study` must be a name of letters, digits, '_', '.', '-'",
            path="study",
            value=show(study),
            fix="Write e.g. study: digits-mlp (at most 128 characters).",
        )
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise SchemaError(
            "`storage` must be a URL string",
            path="storage",
            value=show(storage),
            fix="Write e.g. storage: sqlite:///runs/study.db.",
        )
    ray = _ray(data.get("ray"))
    metrics, modes = objectives(data.get("metric", _NOTHING), data.get("mode", _NOTHING))
    max_epochs = _int(data, "max_epochs", 20, 1)
    threads = _int(data, "threads", None, 1)
    accelerator = data.get("accelerator", "auto")
    if not isinstance(accelerator, str):
        raise SchemaError(
            "`accelerator` must be a string", path="accelerator", value=show(accelerator), fix="Use auto, cpu or gpu."
        )
    pruner = PruningSpec.from_dict(data.get("pruner"))
    early = EarlyStoppingSpec.from_dict(data.get("early_stopping"))
    search, search_options = parse_search(data.get("search", "tpe"))
    space = space_from_spec(data["space"])
    if search == "grid":
        try:  # refuse an impossible grid now, not after the study is created
            space.grid()
        except SchemaError as e:
            raise (e if e.path == "space" else e.at("space")) from None
    return RunSpec(
        space=space,
        metrics=metrics,
        modes=modes,
        model=model,
        data=dataset,
        builder=builder,
        study=study,
        max_epochs=max_epochs or 20,
        early_stopping=early,
        pruner=pruner,
        search=search,
        search_options=search_options,
        trials=_int(data, "trials", 20, 1) or 20,
        seed=_int(data, "seed", 0, 0) or 0,
        storage=storage,
        backend=_choice(data, "backend", "optuna", BACKENDS),
        accelerator=accelerator,
        threads=threads,
        ray=ray,
        run=parse_run_options(data),
        lightning_cli=cli,
        base_dir=base_dir,
    )


def load_spec(path: str | os.PathLike[str]) -> RunSpec:
    """Read and validate a spec file; the study name defaults to the file's stem.

    Raises:
        SchemaError: The file cannot be read, is not safe plain YAML, or the spec is invalid; the
            message starts with the file's name.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        reason = "the spec file does not exist" if isinstance(e, FileNotFoundError) else "cannot read the spec file"
        raise SchemaError(
            reason,
            path=str(p),
            value=repr(str(p)) if reason.endswith("exist") else e.strerror,
            fix="Check the path; `tunebridge recipes` lists the bundled recipes.",
        ) from None
    data = load_yaml(raw, where=str(p))
    try:
        return parse_spec(data, base_dir=str(p.resolve().parent), default_study=p.stem)
    except SchemaError as e:
        where = f"{p.name}: {e.path}" if e.path and e.path != "spec" else p.name  # "spec" is the file itself
        raise SchemaError(e.rule, path=where, value=e.value, fix=e.fix) from None
