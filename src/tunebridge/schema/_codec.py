"""Dict / YAML forms of parameters: strict keys, nearest-key suggestions, safe YAML only."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from tunebridge._hints import did_you_mean
from tunebridge.errors import SchemaError, show
from tunebridge.schema._params import Bool, Choice, Fixed, Float, Int, Param, is_json_scalar

__all__ = ["check_keys", "dump_yaml", "load_yaml", "param_from_dict"]

_KINDS: dict[str, type[Param]] = {"int": Int, "float": Float, "choice": Choice, "bool": Bool, "fixed": Fixed}
# Names people write for a documented kind. They are refused (one spelling per kind, as in the README);
# this only points the error at the documented name.
_KIND_SYNONYMS = {
    "categorical": "choice",
    "category": "choice",
    "integer": "int",
    "boolean": "bool",
    "const": "fixed",
    "constant": "fixed",
    "uniform": "float",
    "loguniform": "float",
}
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
# Values a document may expand to. Without aliases a document of MAX_BYTES characters cannot hold more,
# so only a "billion laughs" of nested aliases reaches this.
MAX_VALUES = MAX_BYTES

# YAML 1.1 reads ``1e-4`` and ``1.5e3`` as strings; people mean floats. The loader and the dumper share
# this resolver, so a string that looks like such a float is quoted on the way out and survives.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_FLOAT_FIRST = list("-+0123456789.")
_MERGE = "tag:yaml.org,2002:merge"


def check_keys(where: str, data: Mapping[Any, Any], allowed: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`SchemaError` for the first key of ``data`` not in ``allowed``."""
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            hint = did_you_mean(key, allowed)
            raise SchemaError(
                "unknown key",
                path=where,
                value=show(key),
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
            "a parameter must be a mapping with a `type` (or a list of choices, or a fixed value)",
            path=name,
            value=show(data),
            fix="Write e.g. {type: int, low: 1, high: 4}.",
        )
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _KINDS:
        word = kind.strip().lower() if isinstance(kind, str) else ""
        raise SchemaError(
            "`type` must be one of int, float, choice, bool, fixed",
            path=f"{name}.type",
            value=show(kind) if "type" in data else "nothing",
            fix=did_you_mean(_KIND_SYNONYMS.get(word, word), _KINDS) or "Add e.g. `type: float`.",
        )
    check_keys(name, data, _KEYS[kind])
    for req in _REQUIRED[kind]:
        if req not in data:
            article = "an" if kind == "int" else "a"
            raise SchemaError(
                f"{article} {kind} parameter needs `{req}`", path=name, value="nothing", fix=f"Add `{req}:`."
            )
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if kind in ("int", "float") and isinstance(kwargs.get("grid"), list):
        kwargs["grid"] = tuple(kwargs["grid"])
    if "when" in kwargs and kwargs["when"] is None:
        del kwargs["when"]
    try:
        if kind == "int":
            return Int(kwargs.pop("low"), kwargs.pop("high"), **kwargs)
        if kind == "float":
            return Float(kwargs.pop("low"), kwargs.pop("high"), **kwargs)
        if kind == "choice":
            return Choice(kwargs.pop("values"), **kwargs)
        if kind == "fixed":
            return Fixed(kwargs.pop("value"), **kwargs)
        return Bool(**kwargs)
    except SchemaError as e:
        field = getattr(e, "field", "")
        raise SchemaError(e.rule, path=f"{name}.{field}" if field else name, value=e.value, fix=e.fix) from None


class _Refused(Exception):
    """Raised inside the loader; ``load_yaml`` turns it into a SchemaError with the file's name."""

    def __init__(self, rule: str, value: str, fix: str, mark: Any = None) -> None:
        super().__init__(rule)
        self.rule, self.value, self.fix, self.mark = rule, value, fix, mark


def _at(mark: Any) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


_TOO_DEEP = (
    "the document is nested too deeply",
    f"more than {MAX_DEPTH} levels",
    "Flatten it; a spec needs only a few levels.",
)


@functools.cache
def _yaml_loader() -> Any:
    import yaml  # pyyaml is a core dependency; imported here so `tunebridge.schema` stays light

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads ``1e-4`` as a float and refuses, with a position: nesting beyond
        MAX_DEPTH (PyYAML composes recursively), duplicate keys (PyYAML keeps the last silently), tags
        outside the safe set, and scalars its constructors cannot read (``!!int abc``, a 5000-digit
        int, ``2024-13-45``)."""

        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise _Refused(*_TOO_DEEP, self.peek_event().start_mark)  # type: ignore[no-untyped-call]
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def refuse_tag(self, node: Any) -> Any:
            raise _Refused(
                "YAML tags that build objects are not allowed",
                show(node.tag),
                "Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
                node.start_mark,
            )

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (ValueError, OverflowError, KeyError, TypeError, AttributeError, IndexError):
                kind = str(node.tag).rsplit(":", 1)[-1]
                raise _Refused(
                    f"cannot read a YAML value as {kind}",
                    show(node.value),
                    f"Quote it to make it a string, or write a valid {kind}.",
                    node.start_mark,
                ) from None

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == _MERGE:  # keys merged in with `<<` may be overridden
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                    except TypeError:
                        continue  # unhashable: the base class reports it
                    if duplicate:
                        raise _Refused(
                            "a key appears twice in one mapping",
                            show(key),
                            "Remove one of them (YAML would silently keep the last).",
                            key_node.start_mark,
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    Loader.add_constructor(None, Loader.refuse_tag)
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, _FLOAT_FIRST)
    return Loader


@functools.cache
def _yaml_dumper() -> Any:
    import yaml

    class Dumper(yaml.SafeDumper):
        """SafeDumper that quotes strings the loader would read as floats (``"1e-4"``)."""

    Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, _FLOAT_FIRST)
    return Dumper


def dump_yaml(data: Any) -> str:
    """YAML text that :func:`load_yaml` reads back to ``data`` exactly (plain JSON-like data only)."""
    import yaml

    return str(yaml.dump(data, Dumper=_yaml_dumper(), sort_keys=False, default_flow_style=None))


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    return list(obj)


def _check_shape(data: Any, where: str) -> None:
    """Refuse cycles, nesting beyond MAX_DEPTH and alias bombs, without recursion.

    YAML aliases make a document a graph: ``&a [*a]`` is a cycle, and nine aliases of nine aliases of
    ... expand to 9**9 values. Height and expanded size are computed once per shared node.
    """
    containers = (dict, list, tuple, set)
    if not isinstance(data, containers):
        return
    done: dict[int, tuple[int, int]] = {}  # id -> (height, expanded size)
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        obj, finish = stack.pop()
        key = id(obj)
        if not finish:
            if key in done:
                continue
            visiting.add(key)
            stack.append((obj, True))
            for child in _children(obj):
                if isinstance(child, containers) and id(child) not in done:
                    if id(child) in visiting:
                        raise SchemaError(
                            "the document contains itself through a YAML alias",
                            path=where,
                            value="a recursive alias",
                            fix="Remove the alias that points back into its own parent.",
                        )
                    stack.append((child, False))
            continue
        visiting.discard(key)
        height, size = 1, 1
        for child in _children(obj):
            if isinstance(child, containers):
                h, n = done[id(child)]
                height, size = max(height, h + 1), size + n
            else:
                size += 1
        done[key] = (height, size)
        if height > MAX_DEPTH:
            raise SchemaError(_TOO_DEEP[0], path=where, value=_TOO_DEEP[1], fix=_TOO_DEEP[2])
        if size > MAX_VALUES:
            raise SchemaError(
                "the document expands to too many values through YAML aliases",
                path=where,
                value=f"more than {MAX_VALUES} values",
                fix="Write the values out instead of repeating aliases of aliases.",
            )


def load_yaml(text: str | bytes, *, where: str = "spec") -> Any:
    """Parse YAML safely: plain data only (no tags that build objects), bounded size, depth and
    expansion, duplicate keys refused; every problem is a :class:`SchemaError` with a position."""
    import yaml

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SchemaError(
                "the file must be UTF-8 text",
                path=where,
                value=f"undecodable byte {e.object[e.start]:#04x} at offset {e.start}",
                fix="Save it as UTF-8 YAML.",
            ) from None
    if len(text) > MAX_BYTES:
        raise SchemaError(
            "the document is too large",
            path=where,
            value=f"{len(text)} characters",
            fix=f"Keep specs under {MAX_BYTES} characters.",
        )
    if "\x00" in text:
        raise SchemaError(
            "the file must be text",
            path=where,
            value=f"a NUL byte at offset {text.index(chr(0))}",
            fix="Pass a YAML text file.",
        )
    loader = None
    try:
        loader = _yaml_loader()(text)  # the reader checks the characters here already
        data = loader.get_single_data()
    except _Refused as e:
        raise SchemaError(e.rule + _at(e.mark), path=where, value=e.value, fix=e.fix) from None
    except RecursionError:  # e.g. `<<` merges chained through thousands of aliases
        raise SchemaError(_TOO_DEEP[0], path=where, value=_TOO_DEEP[1], fix=_TOO_DEEP[2]) from None
    except yaml.reader.ReaderError as e:
        char = f"U+{e.character:04X}" if isinstance(e.character, int) else show(e.character)
        raise SchemaError(
            "the file holds a character YAML does not allow",
            path=where,
            value=f"{char} at offset {e.position}",
            fix="Remove it; a spec is printable UTF-8 text.",
        ) from None
    except yaml.MarkedYAMLError as e:
        problem, context = str(e.problem or ""), str(e.context or "")
        if problem.startswith("but found another document"):
            rule, value, fix = "a spec holds one YAML document", "a second one after ---", "Remove the --- line."
        elif problem == "second occurrence":
            rule, value, fix = "YAML anchors must be unique", context.split(";")[0], "Rename one of the anchors."
        else:
            rule, value, fix = "the YAML is malformed", problem or context, "Fix the YAML syntax."
        raise SchemaError(rule + _at(e.problem_mark), path=where, value=value, fix=fix) from None
    except yaml.YAMLError as e:  # pragma: no cover - every PyYAML error above is a MarkedYAMLError
        raise SchemaError("the YAML is malformed", path=where, value=show(str(e)), fix="Fix the YAML syntax.") from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_shape(data, where)
    return data
