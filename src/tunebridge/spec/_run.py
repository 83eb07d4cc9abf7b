"""The spec file's sections about how trials run and when the study stops (standard library only).

``trainer:``, ``callbacks:``, ``logger:``, ``objective:``, ``keep_checkpoints:``, ``timeout:``,
``stop:``, ``enqueue:`` and ``warm_start:``: their shapes are checked here, before anything imports
torch; what needs Lightning (a Trainer argument's name, a callback's class) is checked when a run starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunebridge._rules import check_choice, check_finite, check_fuse, check_int, check_mapping
from tunebridge._vocab import LOGGERS, OBJECTIVE_RULES, OWNED_TRAINER_KEYS
from tunebridge.backends import ResumeOptions
from tunebridge.errors import SchemaError, show
from tunebridge.schema import is_json_scalar
from tunebridge.schema._codec import check_keys

__all__ = ["RUN_KEYS", "RunSections", "parse_run_sections"]

RUN_KEYS = (
    "trainer",
    "callbacks",
    "logger",
    "objective",
    "keep_checkpoints",
    "timeout",
    "stop",
    "enqueue",
    "warm_start",
    "fuse",
    "resume",
)


@dataclass(frozen=True)
class RunSections:
    """The spec's run sections; :meth:`trainer_options` and :meth:`run_options` give them as ``tune()``'s groups."""

    trainer: Mapping[str, Any] = field(default_factory=dict)
    callbacks: tuple[Any, ...] = ()
    logger: str | None = None
    objective: str = "best_epoch"
    keep_checkpoints: int = 1
    timeout: float | None = None
    target: float | None = None
    patience_trials: int | None = None
    enqueue: tuple[Mapping[str, Any], ...] = ()
    warm_start: str | Mapping[str, Any] | None = None
    fuse: int | str | None = None
    resume: ResumeOptions | None = field(default_factory=ResumeOptions)

    def meaning(self) -> dict[str, Any]:
        """The part that decides what a trial computes (for the spec hash)."""
        return {"trainer": dict(self.trainer), "callbacks": list(self.callbacks), "objective": self.objective}

    def trainer_options(self) -> dict[str, Any]:
        """The ``trainer:`` section as :class:`tunebridge.options.TrainerOptions` fields (callbacks apart)."""
        return {"options": dict(self.trainer), "logger": self.logger}

    def run_options(self) -> dict[str, Any]:
        """These sections as :class:`tunebridge.options.RunOptions` fields."""
        return {
            "objective": self.objective,
            "fuse": self.fuse,
            "checkpoints": {"keep": self.keep_checkpoints},
            "stop": {"timeout": self.timeout, "target": self.target, "patience_trials": self.patience_trials},
            "enqueue": [dict(c) for c in self.enqueue],
            "warm_start": self.warm_start,
            "resume": False if self.resume is None else self.resume,
        }


def _plain(value: Any) -> bool:
    if is_json_scalar(value):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _trainer(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    rule = "`trainer` must be a mapping of Trainer keyword arguments"
    fix = "Write e.g. trainer: {precision: bf16-mixed, gradient_clip_val: 1.0}."
    check_mapping(value, path="trainer", rule=rule, fix=fix)
    for key, item in value.items():
        if key in OWNED_TRAINER_KEYS:
            reason = OWNED_TRAINER_KEYS[key]
            raise SchemaError(
                "tunebridge sets this Trainer argument itself",
                path=f"trainer.{key}",
                value=show(item),
                fix=reason[0].upper() + reason[1:] + ".",
            )
        if not isinstance(key, str) or not _plain(item):
            raise SchemaError(
                "Trainer arguments must be plain values (strings, numbers, true/false, null, lists, mappings)",
                path=f"trainer.{key}",
                value=show(item),
                fix="Pass objects (a strategy instance, a profiler) through tune(trainer={...}) in Python.",
            )
    return dict(value)


def _callbacks(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SchemaError(
            "`callbacks` must be a list",
            path="callbacks",
            value=show(value),
            fix="Write e.g. callbacks: [my_callbacks:Logit].",
        )
    for i, item in enumerate(value):
        ok = isinstance(item, str) and ":" in item
        if isinstance(item, Mapping):
            check_keys(f"callbacks[{i}]", item, ("class_path", "init_args"))
            init_args = item.get("init_args", {})
            ok = (
                isinstance(item.get("class_path"), str) and ":" in item["class_path"] and isinstance(init_args, Mapping)
            )
            ok = ok and _plain(dict(init_args))
        if not ok:
            raise SchemaError(
                "a callback is 'module:Class' or {class_path: module:Class, init_args: {...}}",
                path=f"callbacks[{i}]",
                value=show(item),
                fix="Write e.g. {class_path: my_callbacks:Logit, init_args: {every: 2}}.",
            )
    return tuple(value)


def _count(value: Any, path: str, minimum: int, fix: str) -> int | None:
    return None if value is None else check_int(value, minimum, path=path, fix=fix)


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise SchemaError(
            "`timeout` must be a number > 0",
            path="timeout",
            value=show(value),
            fix="Write e.g. timeout: 3600 (seconds).",
        )
    return value


def _stop(value: Any) -> tuple[float | None, int | None]:
    if value is None:
        return None, None
    check_mapping(value, path="stop", fix="Write e.g. stop: {target: 0.98, patience_trials: 20}.")
    check_keys("stop", value, ("target", "patience_trials"))
    target = value.get("target")
    patience = _count(
        value.get("patience_trials"), "stop.patience_trials", 1, "Write e.g. stop: {patience_trials: 20}."
    )
    return (None if target is None else check_finite(target, path="stop.target")), patience


def _enqueue(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(c, Mapping) and _plain(dict(c)) for c in value):
        raise SchemaError(
            "`enqueue` must be a list of configs (mappings of parameter values)",
            path="enqueue",
            value=show(value),
            fix="Write e.g. enqueue: [{n_layers: 2, lr: 0.01}].",
        )
    return tuple(dict(c) for c in value)


def _warm_start(value: Any) -> str | Mapping[str, Any] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        check_keys("warm_start", value, ("study", "storage", "top_k"))
        if not isinstance(value.get("study"), str):
            raise SchemaError(
                "`warm_start.study` must name a study", path="warm_start.study", value=show(value.get("study"))
            )
        _count(value.get("top_k"), "warm_start.top_k", 1, "Write e.g. warm_start: {study: NAME, top_k: 5}.")
        return dict(value)
    raise SchemaError(
        "`warm_start` must be a best.yaml path, a study name or {study, storage, top_k}",
        path="warm_start",
        value=show(value),
    )


def parse_run_sections(data: Mapping[str, Any]) -> RunSections:
    """The run sections of a spec document (absent ones take their defaults)."""
    target, patience = _stop(data.get("stop"))
    return RunSections(
        trainer=_trainer(data.get("trainer")),
        callbacks=_callbacks(data.get("callbacks")),
        logger=None if data.get("logger") is None else check_choice(data["logger"], LOGGERS, path="logger"),
        objective=check_choice(data.get("objective", "best_epoch"), OBJECTIVE_RULES, path="objective"),
        keep_checkpoints=check_int(
            data.get("keep_checkpoints", 1),
            0,
            path="keep_checkpoints",
            fix="Keep the best trial's weights with 1 (the default), none with 0.",
        ),
        timeout=_timeout(data.get("timeout")),
        target=target,
        patience_trials=patience,
        enqueue=_enqueue(data.get("enqueue")),
        warm_start=_warm_start(data.get("warm_start")),
        fuse=None if data.get("fuse") is None else check_fuse(data["fuse"]),
        resume=ResumeOptions.of(data.get("resume")),
    )
