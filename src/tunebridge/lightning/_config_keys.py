"""The rules a project's own config follows as a build (``lightning_cli:``, ``hydra:``), in one home.

A space names dotted keys of the config; each must exist (else the nearest key is named), none may be a
Trainer option tunebridge owns, none may be per-layer; the config's ``trainer`` section becomes Trainer
options of the runner, tunebridge's own left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tunebridge._hints import did_you_mean
from tunebridge._vocab import OWNED_TRAINER_KEYS
from tunebridge.errors import SchemaError
from tunebridge.schema import Space

__all__ = ["check_names", "flatten", "refuse_per_layer", "split_trainer"]


def flatten(data: Any, prefix: str = "") -> Iterable[str]:
    """Every dotted key of a nested mapping, inner ones included."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            yield name
            yield from flatten(value, name)


def _same_prefix(name: str, keys: Iterable[str]) -> str:
    parent = name.rpartition(".")[0]
    siblings = sorted(k for k in keys if k.rpartition(".")[0] == parent)[:8]
    return f"Keys under {parent!r}: {', '.join(siblings)}." if siblings else ""


def check_names(names: Iterable[str], keys: set[str], *, config: str, example: str, trainer: str = "trainer") -> None:
    """Every space name must be a key of the config; tunebridge's Trainer keys are refused.

    Args:
        names: The space's parameter names.
        keys: The config's dotted keys (and whatever else a name may be, e.g. Hydra's config groups).
        config: What the config is called in the message (``LightningCLI config``).
        example: How to list its keys (the end of the fix).
        trainer: The key of the config's Trainer section.

    Raises:
        SchemaError: The first bad name, with the nearest existing key.
    """
    for name in names:
        head, _, rest = name.partition(".")
        if head == trainer and rest.split(".")[0] in OWNED_TRAINER_KEYS:
            raise SchemaError(
                "tunebridge sets this Trainer option itself",
                path=f"space.{name}",
                value=repr(name),
                fix=OWNED_TRAINER_KEYS[rest.split(".")[0]] + ".",
            )
        if name not in keys:
            hint = did_you_mean(name, keys) or _same_prefix(name, keys)
            raise SchemaError(
                f"a space parameter names a key that is not in the {config}",
                path=f"space.{name}",
                value=repr(name),
                fix=(hint + " " if hint else "") + f"Space keys are dotted config keys, {example}.",
            )


def refuse_per_layer(space: Space, *, config: str, example: str) -> None:
    """A config has no per-layer keys: a ``per_layer`` parameter's copies (``name/0``...) name nothing.

    Raises:
        SchemaError: The first per-layer parameter.
    """
    for name in space.names:
        if space[name].per_layer is not None:
            raise SchemaError(
                f"a {config} has no per-layer keys",
                path=f"space.{name}",
                value=f"per_layer: {space[name].per_layer}",
                fix=f"Name each key instead ({example}).",
            )


def split_trainer(
    section: Mapping[str, Any], values: Mapping[str, Any], config: Iterable[str], *, trainer: str = "trainer"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(from the base config, from the trial)``: the Trainer options a config sets, tunebridge's left out.

    Args:
        section: The keys the config's Trainer section writes (the base config's, before any trial value).
        values: The Trainer section's values for this trial (parsed or instantiated).
        config: The trial's parameter names; ``trainer.X`` ones are the trial's.
    """
    base = {k: values[k] for k in section if k not in OWNED_TRAINER_KEYS and k in values}
    trial_keys = {k.split(".")[1] for k in config if k.startswith(trainer + ".")}
    return base, {k: values[k] for k in trial_keys}
