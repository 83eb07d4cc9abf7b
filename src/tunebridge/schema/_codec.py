"""Dict / YAML forms of parameters: strict keys, nearest-key suggestions, safe YAML only."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from tunebridge.errors import SchemaError
from tunebridge.schema._params import Bool, Choice, Fixed, Float, Int, Param, is_json_scalar

__all__ = ["check_keys", "load_yaml", "param_from_dict", "suggest"]

_KINDS: dict[str, type[Param]] = {"int": Int, "float": Float, "choice": Choice, "bool": Bool, "fixed": Fixed}
_KIND_ALIASES = {"categorical": "choice", "integer": "int", "boolean": "bool", "const": "fixed", "constant": "fixed"}
_COMMON = ("type", "when", "per_layer")
_KEYS: dict[str, tuple[str, ...]] = {
    "int": (*_COMMON, "low", "high", "step", "log", "grid"),
    "float": (*_COMMON, "low", "high", "step", "log", "grid"),
    "choice": (*_COMMON, "values", "ordered"),
    "bool": _COMMON,
    "fixed": (*_COMMON, "value"),
}
_REQUIRED = {"int": ("low", "high"), "float": ("low", "high"), "choice": ("values",), "bool": (), "fixed": ("value",)}

# Documents deeper than this are refused before anything recursive touches them.
MAX_DEPTH = 64
MAX_BYTES = 1_000_000


def suggest(word: str, known: Any) -> str:
    """A "did you mean" sentence for ``word`` among ``known`` names, or an empty string."""
    match = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f"Did you mean {match[0]!r}?" if match else ""


def check_keys(where: str, data: Mapping[str, Any], allowed: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`SchemaError` for the first key of ``data`` not in ``allowed``."""
    for key in data:
        if key not in allowed:
            hint = suggest(key, allowed)
            raise SchemaError(
                "unknown key", path=where, value=repr(key),
                fix=(hint + " " if hint else "") + f"Known keys: {', '.join(allowed)}.",
            )


def param_from_dict(name: str, data: Any) -> Param:
    """Build one parameter from its dict form (or a shorthand: a list is a choice, a scalar fixed)."""
    if isinstance(data, list):
        data = {"type": "choice", "values": data}
    elif is_json_scalar(data):
        data = {"type": "fixed", "value": data}
    if not isinstance(data, Mapping):
        raise SchemaError(
            "a parameter must be a mapping with a `type`", path=name, value=type(data).__name__,
            fix="Write e.g. {type: int, low: 1, high: 4}.",
        )
    kind = data.get("type")
    if not isinstance(kind, str) or kind.lower() not in (*_KINDS, *_KIND_ALIASES):
        hint = suggest(kind, _KINDS) if isinstance(kind, str) else ""
        raise SchemaError(
            "`type` must be one of int, float, choice, bool, fixed", path=f"{name}.type", value=repr(kind),
            fix=hint or "Add e.g. `type: float`.",
        )
    kind = _KIND_ALIASES.get(kind.lower(), kind.lower())
    check_keys(name, data, _KEYS[kind])
    for req in _REQUIRED[kind]:
        if req not in data:
            raise SchemaError(f"a {kind} parameter needs `{req}`", path=name, value="nothing",
                              fix=f"Add `{req}:`.")
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if kind in ("int", "float") and isinstance(kwargs.get("grid"), list):
        kwargs["grid"] = tuple(kwargs["grid"])
    if "when" in kwargs and kwargs["when"] is None:
        del kwargs["when"]
    for bool_key in ("log", "ordered"):
        if bool_key in kwargs and not isinstance(kwargs[bool_key], bool):
            raise SchemaError(f"`{bool_key}` must be true or false", path=f"{name}.{bool_key}",
                              value=repr(kwargs[bool_key]))
    try:
        cls = _KINDS[kind]
        if kind in ("int", "float"):
            return cls(kwargs.pop("low"), kwargs.pop("high"), **kwargs)  # type: ignore[call-arg]
        if kind == "choice":
            return Choice(kwargs.pop("values"), **kwargs)
        if kind == "fixed":
            return Fixed(kwargs.pop("value"), **kwargs)
        return Bool(**kwargs)
    except SchemaError as e:
        raise SchemaError(e.rule, path=name, value=e.value, fix=e.fix) from None
    except TypeError as e:  # wrong argument types that dataclasses reject before our checks
        raise SchemaError("malformed parameter", path=name, value=str(e), fix="Check the keys and types.") from None


def _yaml_loader() -> Any:
    import yaml  # pyyaml is a core dependency; imported here so `tunebridge.schema` stays light

    class Loader(yaml.SafeLoader):
        """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of plain containers, iteratively (no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    seen: set[int] = set()
    while stack:
        item, d = stack.pop()
        if isinstance(item, (dict, list)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, d + 1) for c in children)
    return deepest


def load_yaml(text: str | bytes, *, where: str = "spec") -> Any:
    """Parse YAML safely: no tags that build objects, bounded size and depth, errors as SchemaError."""
    import yaml

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SchemaError("the file must be UTF-8 text", path=where, value=f"undecodable byte at {e.start}",
                              fix="Save it as UTF-8 YAML.") from None
    if len(text) > MAX_BYTES:
        raise SchemaError("the document is too large", path=where, value=f"{len(text)} characters",
                          fix=f"Keep specs under {MAX_BYTES} characters.")
    if "\x00" in text:
        raise SchemaError("the file must be text", path=where, value="a NUL byte", fix="Pass a YAML text file.")
    # Cheap pre-check so PyYAML's recursive composer never sees absurd nesting.
    if max((len(m) for m in re.findall(r"[\[{]+", text)), default=0) > MAX_DEPTH:
        raise SchemaError("the document is nested too deeply", path=where, value=f"more than {MAX_DEPTH} levels",
                          fix="Flatten it; a spec needs only a few levels.")
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise SchemaError(f"the YAML is malformed{at}", path=where, value=str(problem),
                          fix="Fix the YAML syntax.") from None
    except RecursionError:
        raise SchemaError("the document is nested too deeply", path=where, value=f"more than {MAX_DEPTH} levels",
                          fix="Flatten it; a spec needs only a few levels.") from None
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise SchemaError("the document is nested too deeply", path=where, value=f"more than {MAX_DEPTH} levels",
                          fix="Flatten it; a spec needs only a few levels.")
    return data
