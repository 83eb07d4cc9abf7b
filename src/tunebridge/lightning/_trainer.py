"""The user's Trainer options, callbacks and logger, checked once and made fresh for every trial."""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from tunebridge._compat import require
from tunebridge._imports import import_or_refuse, search_first
from tunebridge._rules import check_choice
from tunebridge._vocab import LOGGERS, OWNED_TRAINER_KEYS
from tunebridge.errors import MissingDependencyError, SchemaError, show
from tunebridge.schema import Scalar

__all__ = ["OWNED_TRAINER_KEYS", "callback_factories", "check_trainer_options", "make_callbacks", "make_logger"]


def _trainer_parameters() -> list[str]:
    from tunebridge._compat import lightning_namespace

    signature = inspect.signature(lightning_namespace().Trainer.__init__)
    return [name for name in signature.parameters if name != "self"]


def check_trainer_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user's ``Trainer`` keywords, refusing the ones tunebridge owns and names Trainer does not know.

    Raises:
        SchemaError: A key tunebridge sets itself (saying where to set it instead), or one that is no
            ``Trainer`` argument (with the nearest one).
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise SchemaError(
            "`trainer` must be a mapping of Trainer keyword arguments",
            path="trainer",
            value=show(options),
            fix="Write e.g. trainer: {precision: bf16-mixed, gradient_clip_val: 1.0}.",
        )
    known: list[str] | None = None
    for key in options:
        if key in OWNED_TRAINER_KEYS:
            raise SchemaError(
                "tunebridge sets this Trainer argument itself",
                path=f"trainer.{key}",
                value=show(options[key]),
                fix=OWNED_TRAINER_KEYS[key][0].upper() + OWNED_TRAINER_KEYS[key][1:] + ".",
            )
        known = _trainer_parameters() if known is None else known
        fix = "See the Trainer's documentation for its arguments."
        check_choice(key, known, path=f"trainer.{key}", rule="not an argument of Lightning's Trainer", fix=fix)
    return dict(options)


def _import_object(ref: str, where: str) -> Any:
    fix = "Write module:Class, importable from the spec's folder or sys.path."
    return import_or_refuse(ref, path=where, rule="cannot import the callback class", fix=fix)


def callback_factories(
    callbacks: Sequence[Any] | None, *, base_dir: str | None = None
) -> tuple[Callable[[], Any], ...]:
    """One factory per user callback, so that every trial gets fresh ones (a callback keeps state).

    Each item is a callback instance (deep-copied per trial), a class or zero-argument callable, a
    ``"module:Class"`` string, or ``{"class_path": "module:Class", "init_args": {...}}`` (the
    LightningCLI form).

    Raises:
        SchemaError: An item that is none of these, or a class that cannot be imported.
    """
    search_first(base_dir)
    out: list[Callable[[], Any]] = []
    for i, item in enumerate(callbacks or ()):
        where = f"callbacks[{i}]"
        if isinstance(item, str):
            cls = _import_object(item, where)
            out.append(cls)
        elif isinstance(item, Mapping):
            unknown = set(item) - {"class_path", "init_args"}
            if "class_path" not in item or unknown:
                raise SchemaError(
                    "a callback is module:Class or {class_path: module:Class, init_args: {...}}",
                    path=where,
                    value=show(dict(item)),
                    fix="Write e.g. {class_path: my_callbacks:Logit, init_args: {every: 2}}.",
                )
            cls = _import_object(str(item["class_path"]), f"{where}.class_path")
            kwargs = dict(item.get("init_args") or {})
            out.append(functools.partial(cls, **kwargs))
        elif callable(item):  # a class or a factory (callback instances are not callable)
            out.append(item)
        else:
            out.append(functools.partial(copy.deepcopy, item))
    return tuple(out)


def make_callbacks(ns: ModuleType, factories: Sequence[Callable[[], Any]]) -> list[Any]:
    """Fresh user callbacks for one trial, each checked against the module's Lightning package.

    Raises:
        TypeError: A callback of the other Lightning package (the two are separate class trees).
    """
    made = [factory() for factory in factories]
    for cb in made:
        if not isinstance(cb, ns.Callback):
            raise TypeError(
                f"the callback {type(cb).__name__} is not a {ns.__name__}.Callback, but the module runs under "
                f"{ns.__name__}: lightning.pytorch and pytorch_lightning are separate class trees, so derive "
                "the callback from the module's package."
            )
    return made


def make_logger(
    ns: ModuleType, kind: str | None, *, save_dir: str, study: str, label: str, config: Mapping[str, Scalar]
) -> Any:
    """A per-trial logger: one run per trial (``label``), grouped by study, the config as hyperparameters.

    Raises:
        SchemaError: An unknown logger name. MissingDependencyError: mlflow/tensorboard not installed.
    """
    if kind is None:
        return False
    check_choice(kind, LOGGERS, path="logger", rule="unknown logger", fix=f"Use {', '.join(LOGGERS)}.")
    loggers = ns.loggers
    if kind == "csv":
        logger = loggers.CSVLogger(save_dir=save_dir, name=study, version=label)
    elif kind == "tensorboard":
        try:
            logger = loggers.TensorBoardLogger(save_dir=save_dir, name=study, version=label, default_hp_metric=False)
        except ModuleNotFoundError:
            raise MissingDependencyError("logger: tensorboard", "tensorboard", "tensorboard") from None
    else:
        require("mlflow", "logger: mlflow")
        uri = "file:" + os.path.abspath(os.path.join(save_dir, "mlruns"))
        logger = loggers.MLFlowLogger(experiment_name=study, run_name=label, tracking_uri=uri)
    logger.log_hyperparams(dict(config))
    return logger
