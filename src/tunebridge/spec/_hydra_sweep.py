"""hydra-optuna-sweeper's search syntax, read without the sweeper: ``interval(…)``, ``range(…)``, ``choice(…)``, ``tag(log, …)``.

Standard library only: ``tunebridge check`` and ``tunebridge import hydra-sweeper`` never import Hydra. A
value reads as the sweeper (hydra-optuna-sweeper 1.3) turns it into an Optuna distribution, in
tunebridge's words (both bounds inclusive):

============================  ==========================================  =============================
sweeper value                 the sweeper samples                         tunebridge space
============================  ==========================================  =============================
``interval(a, b)``            a float in [a, b] (Hydra reads a, b as      ``{type: float, low, high}``
                              floats even when written as integers)
``int(interval(a, b))``       an integer in [a, b]                        ``{type: int, low, high}``
``tag(log, interval(a, b))``  the same, log-uniform                       ``… log: true``
``range(a, b, s)``            a, a+s, … up to **and including** b when    ``{type: int|float, low, high,
                              b is on the grid (Optuna's inclusive        step}`` (high: the last point)
                              ``high``; Hydra's basic sweeper stops
                              before b)
``choice(x, y)``, ``x,y``     one of the values                           ``{type: choice, values}``
anything else                 the same value in every trial               an override ``key=value``
============================  ==========================================  =============================

Only :func:`parse_sweep` lives here; :mod:`tunebridge.spec._hydra_search` reads the whole sweeper file.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from typing import Any

from tunebridge._overrides import primitive

__all__ = ["Sweep", "SweepSyntaxError", "parse_sweep"]

_NAME = re.compile(r"[A-Za-z_]\w*")
_FUNCTIONS = ("choice", "range", "interval", "tag", "int", "float", "sort")
_REFUSED = {
    "shuffle": "the order of a shuffled sweep is random: write choice(...) with the values",
    "glob": "a glob selects config group options by pattern: write choice(...) with the option names",
    "str": "write choice(...) with quoted values, e.g. choice('1', '2')",
    "bool": "write choice(true, false)",
    "json_str": "write choice(...) with the values",
    "extend_list": "a list append is not a search parameter: move it to `hydra.overrides`",
}


class SweepSyntaxError(ValueError):
    """A value the reader cannot carry: the message says why and what to write instead."""


@dataclass(frozen=True)
class Sweep:
    """One parameter of the sweeper: its tunebridge form, or a fixed value.

    Attributes:
        param: The tunebridge parameter (the spec's ``space:`` form), or None for a fixed value.
        fixed: The override value, written as Hydra reads it (``fixed`` parameters only).
        note: Where the sweeper's reading differs from Hydra's own (for ``tunebridge import``), or "".
    """

    param: dict[str, Any] | None
    fixed: str = ""
    note: str = ""


@dataclass
class _Call:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]


class _Reader:
    """A small recursive-descent reader of Hydra's override value grammar (the part sweeps use)."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def fail(self, why: str) -> SweepSyntaxError:
        return SweepSyntaxError(f"{why} at character {self.i + 1} of {self.text!r}")

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.i] if self.i < len(self.text) else ""

    def value(self) -> Any:
        char = self.peek()
        if char in ("'", '"'):
            return self.quoted(char)
        if char in ("[", "{"):
            raise SweepSyntaxError(
                f"a list or mapping as a swept value ({self.text!r}): tunebridge's choice values are scalars; "
                "tune one key per element, or choose between config group options"
            )
        match = _NAME.match(self.text, self.i)
        if match and self.text[match.end() :].lstrip().startswith("("):
            self.i = match.end()
            return self.call(match.group())
        start = self.i
        while self.i < len(self.text) and self.text[self.i] not in ",()[]{}='\"":
            self.i += 1
        word = self.text[start : self.i].strip()
        if not word:
            raise self.fail("a value is missing")
        return primitive(word)

    def quoted(self, quote: str) -> str:
        out, self.i = [], self.i + 1
        while self.i < len(self.text):
            char = self.text[self.i]
            if char == "\\" and self.i + 1 < len(self.text):
                out.append(self.text[self.i + 1])
                self.i += 2
                continue
            self.i += 1
            if char == quote:
                return "".join(out)
            out.append(char)
        raise self.fail("a quoted string is not closed")

    def call(self, name: str) -> _Call:
        if name in _REFUSED:
            raise SweepSyntaxError(f"{name}(...) is not carried: {_REFUSED[name]}")
        if name not in _FUNCTIONS:
            raise SweepSyntaxError(f"unknown sweep function {name}(...); known: {', '.join(_FUNCTIONS)}")
        self.i = self.text.index("(", self.i) + 1
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        while self.peek() != ")":
            keyword = _NAME.match(self.text, self.i)
            if keyword and self.text[keyword.end() :].lstrip().startswith("="):
                self.i = self.text.index("=", keyword.end()) + 1
                kwargs[keyword.group()] = self.value()
            else:
                args.append(self.value())
            if self.peek() == ",":
                self.i += 1
            elif self.peek() != ")":
                raise self.fail(f"expected ',' or ')' in {name}(...)")
        self.i += 1
        return _Call(name, args, kwargs)

    def whole(self) -> Any:
        first = self.value()
        if self.peek() == ",":  # the simple form of a choice: a,b,c
            items = [first]
            while self.peek() == ",":
                self.i += 1
                items.append(self.value())
            first = _Call("choice", items, {})
        if self.peek():
            raise self.fail("unexpected text")
        return first


def _is_sweep(text: str) -> bool:
    """A function call (``choice(...)``) or a comma outside quotes and brackets (the simple choice ``a,b``)."""
    if re.match(r"\s*[A-Za-z_]\w*\s*\(", text):
        return True
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            return True
    return False


def _args(call: _Call, names: tuple[str, ...], required: int) -> list[Any]:
    unknown = set(call.kwargs) - set(names)
    if unknown or len(call.args) > len(names):
        raise SweepSyntaxError(f"{call.name}(...) takes {', '.join(names)}, but got {call.args} {call.kwargs}")
    values = list(call.args) + [call.kwargs.get(n) for n in names[len(call.args) :]]
    if any(v is None for v in values[:required]):
        raise SweepSyntaxError(f"{call.name}(...) needs {', '.join(names[:required])}")
    for v in values:
        if isinstance(v, _Call) or isinstance(v, bool) or (v is not None and not isinstance(v, (int, float))):
            raise SweepSyntaxError(f"{call.name}(...) takes numbers, but got {v!r}")
    return values


def _number(value: Any, cast: str | None) -> int | float:
    if cast == "int":
        if isinstance(value, float) and not value.is_integer():
            raise SweepSyntaxError(f"int(...) of {value!r} would drop its fraction: write an integer bound")
        return int(value)
    return float(value) if cast == "float" else value


def _interval(call: _Call, cast: str | None, log: bool) -> dict[str, Any]:
    start, end = _args(call, ("start", "end"), 2)
    # Hydra reads interval() bounds as floats unless int(...) casts them: interval(1, 5) is a float in [1.0, 5.0].
    low, high = (_number(start, "int"), _number(end, "int")) if cast == "int" else (float(start), float(end))
    if low > high:
        raise SweepSyntaxError(f"interval(start={start}, end={end}) has start > end: swap them")
    param: dict[str, Any] = {"type": "int" if cast == "int" else "float", "low": low, "high": high}
    if log:
        if low <= 0:
            raise SweepSyntaxError(f"tag(log, ...) needs start > 0, but got start={start}")
        param["log"] = True
    return param


def _last_point(low: Any, high: Any, step: Any) -> Any:
    """The last grid point ``low + k * step <= high``: Optuna's adjusted ``high`` (decimal, as written)."""
    if isinstance(low, int) and isinstance(high, int) and isinstance(step, int):
        return low + (high - low) // step * step
    d_low, d_step = decimal.Decimal(repr(float(low))), decimal.Decimal(repr(float(step)))
    k = ((decimal.Decimal(repr(float(high))) - d_low) / d_step).to_integral_value(rounding=decimal.ROUND_FLOOR)
    return float(d_low + k * d_step)


def _range(call: _Call, cast: str | None, tags: set[str]) -> tuple[dict[str, Any], str]:
    if "log" in tags:
        raise SweepSyntaxError(
            "the sweeper ignores tag(log, ...) on range(...): write tag(log, int(interval(a, b))) for a log "
            "scale, or drop the tag"
        )
    values = _args(call, ("start", "stop", "step"), 1)
    start, stop, step = values if values[1] is not None else (0, values[0], values[2])
    step = 1 if step is None else step
    if cast is not None:
        start, stop, step = (_number(v, cast) for v in (start, stop, step))
    if step <= 0 or stop < start:
        raise SweepSyntaxError(f"range({start}, {stop}, {step}) is empty for the sweeper: use start <= stop, step > 0")
    is_int = all(isinstance(v, int) for v in (start, stop, step))
    high = _last_point(start, stop, step)
    param: dict[str, Any] = {"type": "int" if is_int else "float", "low": start, "high": high}
    if step != 1 or not is_int:
        param["step"] = step
    note = (
        f"range({start}, {stop}, {step}): the sweeper samples {start}..{high} step {step}, both ends included "
        f"(Optuna's high); Hydra's own basic sweeper stops before {stop}"
        if high == stop
        else ""
    )
    return param, note


def _choice(call: _Call, cast: str | None, sort: bool, reverse: bool) -> dict[str, Any]:
    if call.kwargs:
        raise SweepSyntaxError(f"choice(...) takes values, not {', '.join(call.kwargs)}=")
    values = list(call.args)
    for v in values:
        if isinstance(v, _Call) or v is None:
            raise SweepSyntaxError(f"choice values must be numbers, true/false or strings, but got {v!r}")
    if cast is not None:
        values = [_number(v, cast) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in values]
    if sort:
        values = sorted(values, reverse=reverse)
    return {"type": "choice", "values": values}


def _sweep(node: Any, cast: str | None = None, tags: frozenset[str] = frozenset()) -> tuple[dict[str, Any], str]:
    if not isinstance(node, _Call):
        raise SweepSyntaxError(f"expected interval(...), range(...) or choice(...), but got {node!r}")
    if node.name in ("int", "float"):
        if len(node.args) != 1 or node.kwargs:
            raise SweepSyntaxError(f"{node.name}(...) casts one sweep")
        return _sweep(node.args[0], node.name, tags)
    if node.name == "tag":
        *names, inner = node.args
        if not names or not all(isinstance(n, str) for n in names):
            raise SweepSyntaxError("tag(...) takes tag names, then the sweep: tag(log, interval(a, b))")
        return _sweep(inner, cast, tags | set(names))
    if node.name == "sort":
        if len(node.args) != 1 or set(node.kwargs) - {"reverse"}:
            raise SweepSyntaxError("sort(...) takes one choice(...) and reverse=true|false")
        inner = node.args[0]
        if not isinstance(inner, _Call) or inner.name != "choice":
            raise SweepSyntaxError("sort(...) is carried for choice(...) only: write the range as interval or choice")
        return _choice(inner, cast, True, node.kwargs.get("reverse") is True), ""
    if node.name == "interval":
        return _interval(node, cast, "log" in tags), ""
    if node.name == "range":
        return _range(node, cast, set(tags))
    if "log" in tags:
        raise SweepSyntaxError("the sweeper ignores tag(log, ...) on choice(...): drop the tag")
    return _choice(node, cast, False, False), ""


def parse_sweep(value: Any) -> Sweep:
    """One value of ``hydra.sweeper.params``, as hydra-optuna-sweeper reads it.

    Example:
        >>> parse_sweep("tag(log, interval(0.0001, 0.1))").param
        {'type': 'float', 'low': 0.0001, 'high': 0.1, 'log': True}
        >>> parse_sweep("choice(32, 64)").param
        {'type': 'choice', 'values': [32, 64]}
        >>> parse_sweep("adam").fixed
        'adam'

    Raises:
        SweepSyntaxError: Syntax the reader does not know or cannot carry (the message says what to write).
    """
    if not isinstance(value, str):
        if isinstance(value, (list, dict)):
            raise SweepSyntaxError(f"a list or mapping ({value!r}) is neither a sweep nor a plain value")
        return Sweep(
            None, fixed="null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
    if not _is_sweep(value):  # a plain value (an interpolation, a name, a number): the same in every trial
        return Sweep(None, fixed=value.strip())
    node = _Reader(value).whole()
    if not isinstance(node, _Call):
        return Sweep(None, fixed=value.strip())
    param, note = _sweep(node)
    return Sweep(param, note=note)
