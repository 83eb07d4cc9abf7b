"""Reading a spec document: its top-level keys checked, each section parsed, a :class:`RunSpec` made.

Standard library (+ PyYAML) only, so ``tunebridge check`` never imports torch. Nothing in a spec is
executed except importing the named ``module:function`` builder, and that only when a run starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunebridge._rules import check_backend, check_choice, check_int, check_mapping, check_study_name
from tunebridge._search import parse_search
from tunebridge._vocab import BUILTIN_DATA, BUILTIN_MODELS, RAY_OPTION_KEYS
from tunebridge.errors import SchemaError, show
from tunebridge.schema import EarlyStoppingSpec, PruningSpec, is_json_scalar, load_yaml
from tunebridge.schema._codec import check_keys
from tunebridge.spec._cli import parse_lightning_cli
from tunebridge.spec._hydra import parse_hydra
from tunebridge.spec._objectives import NOTHING, objectives
from tunebridge.spec._run import RUN_KEYS, parse_run_sections
from tunebridge.spec._runspec import RunSpec
from tunebridge.spec._space import space_from_spec

__all__ = ["load_spec", "parse_spec"]

_BUILDER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_KEYS = (
    "study",
    "model",
    "data",
    "builder",
    "lightning_cli",
    "hydra",
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


def _int(data: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = data.get(key, default)
    return None if value is None else check_int(value, minimum, path=key)


def _ray(data: Any) -> dict[str, Any]:
    """The ``ray:`` section: known keys with plain values (the Ray backend checks their meaning)."""
    ray = {} if data is None else data
    check_mapping(ray, path="ray", fix="Write e.g. ray: {cpus_per_trial: 1, max_concurrent: 2}.")
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
    hydra = None
    if data.get("hydra") is not None:
        hydra, data = _with_hydra(data, base_dir)
    if "space" not in data:
        raise SchemaError(
            "a spec needs a `space`",
            path="space",
            value="nothing",
            fix="Add `space: {presets: [mlp_full]}` or list parameters.",
        )
    model, dataset, builder = data.get("model"), data.get("data"), data.get("builder")
    cli = None if data.get("lightning_cli") is None else parse_lightning_cli(data["lightning_cli"], base_dir=base_dir)
    if hydra is not None and any(x is not None for x in (cli, builder, model, dataset)):
        raise SchemaError(
            "give one of `hydra`, `lightning_cli`, `builder` or `model` + `data`",
            path="hydra",
            value=show({k: data[k] for k in ("lightning_cli", "builder", "model", "data") if data.get(k) is not None}),
            fix="The Hydra config names the model and data; remove `lightning_cli`/`builder`/`model`/`data`.",
        )
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
    elif hydra is None:
        if model is None:
            raise SchemaError(
                "a spec needs `model` (built-in) or `builder` (module:function)",
                path="model",
                value="nothing",
                fix="Write e.g. model: mlp and data: digits.",
            )
        model = check_choice(data.get("model", "mlp"), BUILTIN_MODELS, path="model")
        dataset = check_choice(data.get("data", "digits"), BUILTIN_DATA, path="data")
        if model == "cnn" and dataset != "digits":
            raise SchemaError(
                "the built-in CNN needs image data",
                path="data",
                value=repr(dataset),
                fix="Use data: digits, or model: mlp for tabular data.",
            )
    study = data.get("study", default_study)
    if study is not None:
        check_study_name(study)
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise SchemaError(
            "`storage` must be a URL string",
            path="storage",
            value=show(storage),
            fix="Write e.g. storage: sqlite:///runs/study.db.",
        )
    ray = _ray(data.get("ray"))
    metrics, modes = objectives(data.get("metric", NOTHING), data.get("mode", NOTHING))
    max_epochs = _int(data, "max_epochs", 20, 1)
    threads = _int(data, "threads", None, 1)
    accelerator = data.get("accelerator", "auto")
    if not isinstance(accelerator, str):
        raise SchemaError(
            "`accelerator` must be a string", path="accelerator", value=show(accelerator), fix="Use auto, cpu or gpu."
        )
    pruner = PruningSpec.from_dict(data.get("pruner"))
    early = EarlyStoppingSpec.from_dict(data.get("early_stopping"))
    if early is not None:
        early.check_run(metrics[0], modes[0])
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
        backend=check_backend(data.get("backend", "optuna")),
        accelerator=accelerator,
        threads=threads,
        ray=ray,
        run=parse_run_sections(data),
        lightning_cli=cli,
        hydra=hydra,
        base_dir=base_dir,
    )


def _with_hydra(data: Mapping[str, Any], base_dir: str) -> tuple[Any, Mapping[str, Any]]:
    """The ``hydra:`` section, and the document with a sweeper config's search as its defaults."""
    hydra, search = parse_hydra(data["hydra"], base_dir=base_dir)
    if search is None:
        return hydra, data
    if "space" in data:
        raise SchemaError(
            "give the space in the spec or in the sweeper config (`hydra.search`), not both",
            path="space",
            value=f"a `space:` and hydra.search: {os.path.basename(hydra.search or '')}",
            fix="Remove `space:` (the sweeper config's params are the space), or remove `hydra.search`.",
        )
    return hydra, {**search.document(), **data}


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
