"""The ``space:`` section of a run spec: parameters, or presets with overrides, removals and extras.

Re-exported by :mod:`tunebridge.spec`; standard library (+ PyYAML) only, like the rest of the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunebridge import presets
from tunebridge._hints import did_you_mean
from tunebridge._rules import check_mapping
from tunebridge.errors import SchemaError, show
from tunebridge.schema import Param, Space
from tunebridge.schema._codec import check_keys, param_from_dict

__all__ = ["space_from_spec"]

_SPACE_FORM = ("presets", "preset", "override", "remove", "params")


def space_from_spec(data: Any) -> Space:
    """The ``space:`` section: either parameters, or ``{presets: [...], override: {...}, remove: [...], params: {...}}``.

    ``override`` and ``params`` entries may refer to parameters of the presets (``when``, ``per_layer``);
    a preset parameter whose condition an override makes impossible goes (see :meth:`Space.replace`).
    """
    if isinstance(data, str):
        try:
            return presets.get(data)
        except SchemaError as e:
            raise SchemaError(e.rule, path="space", value=e.value, fix=e.fix) from None
    if isinstance(data, Mapping) and ("presets" in data or "preset" in data):
        check_keys("space", data, _SPACE_FORM)
        if "presets" in data and "preset" in data:
            raise SchemaError(
                "give `presets` or `preset`, not both",
                path="space",
                value="both",
                fix="Merge them into one list under `presets:`.",
            )
        names = data.get("presets", data.get("preset"))
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise SchemaError(
                "`presets` must be a list of preset names",
                path="space.presets",
                value=show(names),
                fix=f"Use some of: {', '.join(presets.PRESETS)}.",
            )
        space = presets.get(names[0])
        for name in names[1:]:
            more = presets.get(name)
            try:
                space = space + more
            except SchemaError as e:
                raise e.at("space.presets") from None
        remove = data.get("remove") or []
        if not isinstance(remove, list) or not all(isinstance(n, str) for n in remove):
            raise SchemaError(
                "`remove` must be a list of parameter names",
                path="space.remove",
                value=show(remove),
                fix="Write e.g. remove: [l1_on, l1].",
            )
        if remove:
            try:
                space = space.without(*remove)
            except SchemaError as e:
                raise e.at("space.remove") from None
        for section in ("override", "params"):
            extra = data.get(section)
            if extra is None:
                continue
            space = _extend(space, section, extra)
        return space
    return Space.from_dict(data, where="space")


def _extend(space: Space, section: str, extra: Any) -> Space:
    """Apply ``override:`` or ``params:`` to the presets' space, one parameter at a time."""
    where = f"space.{section}"
    rule = f"`{section}` must be a mapping of parameter names to definitions"
    fix = "Write e.g. `lr: {type: float, low: 1.0e-4, high: 0.1, log: true}`."
    check_mapping(extra, path=where, rule=rule, fix=fix)
    params: dict[str, Param] = {}
    for name, body in extra.items():
        if not isinstance(name, str):
            raise SchemaError("parameter names must be strings", path=where, value=show(name), fix="Quote the name.")
        if section == "override" and name not in space:
            raise SchemaError(
                "`override` names a parameter the presets do not have",
                path=where,
                value=show(name),
                fix=did_you_mean(name, space.names) or "Put new parameters under `params:`.",
            )
        try:
            params[name] = param_from_dict(name, body)
        except SchemaError as e:
            raise e.at(where) from None
    try:
        return space.replace(**params)
    except SchemaError as e:
        raise e.at("space") from None
