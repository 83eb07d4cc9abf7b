"""What :func:`tunebridge.tune` prepares before the first trial: trial settings, folders, first configs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunebridge import _record, _rules
from tunebridge._storage_url import is_memory, local_file
from tunebridge.errors import SchemaError, show
from tunebridge.schema import EarlyStoppingSpec, Scalar, Space

__all__ = ["check_choice", "initial_configs", "run_folder"]


def check_choice(name: str, value: object, allowed: tuple[str, ...], *, optional: bool = False) -> None:
    """:func:`tunebridge._rules.check_choice` at ``name``; None passes when ``optional``."""
    if not (optional and value is None):
        _rules.check_choice(value, allowed, path=name)


def run_folder(storage: str | None, study: str | None, what: str) -> str:
    """An absolute folder for a study's files (``checkpoints``, ``logs``).

    Next to a SQLite or journal-file study (``sqlite:///runs/t.db`` -> ``runs/STUDY/checkpoints``);
    for an in-memory study, a fresh temporary folder (the study lives as long as the process, and a
    library call writes nothing into the working directory); else (a database server) under
    ``./tunebridge-runs/STUDY/``, the CLI's output folder. Absolute, since Ray trials run elsewhere.
    """
    if is_memory(storage):
        return tempfile.mkdtemp(prefix=f"tunebridge-{what}-")
    file = local_file(storage)
    base = os.path.dirname(file) if file is not None else os.path.abspath("tunebridge-runs")
    return os.path.join(base, study or "study", what)


def _configs_from_file(path: Path) -> list[dict[str, Any]]:
    import yaml

    data = yaml.safe_load(path.read_text())
    if isinstance(data, Mapping) and isinstance(data.get("config"), Mapping):  # a best.yaml
        configs = [dict(data["config"])]
        configs += [dict(t["config"]) for t in data.get("pareto_front", []) if isinstance(t, Mapping)]
        return configs
    if isinstance(data, list) and all(isinstance(c, Mapping) for c in data):
        return [dict(c) for c in data]
    raise SchemaError(
        "a warm start file must be a best.yaml or a list of configs",
        path="warm_start",
        value=str(path),
        fix="Point warm_start at the best.yaml of an earlier run.",
    )


def _configs_from_study(name: str, storage: str | None, top_k: int) -> list[dict[str, Any]]:
    import optuna

    from tunebridge.backends.optuna import make_storage

    try:
        earlier = optuna.load_study(study_name=name, storage=make_storage(storage))
    except KeyError:
        raise SchemaError(
            "no such study to warm-start from",
            path="warm_start",
            value=repr(name),
            fix="Name a study in the same storage, or the path of a best.yaml.",
        ) from None
    complete = earlier.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    sign = 1.0 if earlier.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1.0
    ranked = sorted((t for t in complete if t.values), key=lambda t: sign * t.values[0])
    return [c for t in ranked[:top_k] if (c := _record.config_of(t.user_attrs)) is not None]


def initial_configs(
    space: Space,
    *,
    enqueue: Sequence[Mapping[str, Any]] | None,
    warm_start: str | Mapping[str, Any] | None,
    storage: str | None,
) -> list[dict[str, Scalar]]:
    """The configs evaluated first: ``enqueue`` as given, then a warm start's, each validated.

    ``warm_start`` is the path of a ``best.yaml`` (or a YAML list of configs), the name of an
    earlier study in the same storage (its 5 best configs), or ``{study: NAME, storage: URL,
    top_k: K}``. Duplicates are dropped.

    Raises:
        SchemaError: A config that does not fit the space (``enqueue[i]: ...``), or a warm start
            that cannot be read.
    """
    configs: list[tuple[str, Mapping[str, Any]]] = []
    if enqueue is not None:
        if isinstance(enqueue, (str, Mapping)) or not isinstance(enqueue, Sequence):
            raise SchemaError("`enqueue` must be a list of configs", path="enqueue", value=show(enqueue))
        configs += [(f"enqueue[{i}]", c) for i, c in enumerate(enqueue)]
    if warm_start is not None:
        if isinstance(warm_start, Mapping):
            found = _configs_from_study(
                str(warm_start.get("study")), warm_start.get("storage", storage), int(warm_start.get("top_k", 5))
            )
        elif isinstance(warm_start, str) and Path(warm_start).expanduser().is_file():
            found = _configs_from_file(Path(warm_start).expanduser())
        elif isinstance(warm_start, str):
            found = _configs_from_study(warm_start, storage, 5)
        else:
            raise SchemaError(
                "`warm_start` must be a best.yaml path, a study name or {study, storage, top_k}",
                path="warm_start",
                value=show(warm_start),
            )
        configs += [(f"warm_start[{i}]", c) for i, c in enumerate(found)]
    out: list[dict[str, Scalar]] = []
    for where, config in configs:
        if not isinstance(config, Mapping):
            raise SchemaError("a config must be a mapping of parameter values", path=where, value=show(config))
        try:
            space.validate(dict(config))
        except SchemaError as e:
            raise e.at(where) from None
        if dict(config) not in out:
            out.append(dict(config))
    return out


def early_stopping_spec(
    value: EarlyStoppingSpec | Mapping[str, Any] | bool | None, *, metric: str, mode: str
) -> EarlyStoppingSpec | None:
    """``tune(early_stopping=...)`` as a spec (True: the defaults), checked against the run's metric and mode
    before any trial (:meth:`EarlyStoppingSpec.check_run`)."""
    spec = value if isinstance(value, EarlyStoppingSpec) or value is None else EarlyStoppingSpec.from_dict(value)
    if spec is not None:
        spec.check_run(metric, mode)
    return spec
