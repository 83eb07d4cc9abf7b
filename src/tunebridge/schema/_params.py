"""Parameter kinds: small immutable objects, validated on construction, bounds inclusive everywhere."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from tunebridge.errors import SchemaError

__all__ = ["Bool", "Choice", "Fixed", "Float", "Int", "Param", "Scalar", "is_json_scalar", "same_value"]

Scalar = Union[str, int, float, bool, None]
Condition = tuple[tuple[str, tuple[Scalar, ...]], ...]

# Relative tolerance used to decide whether a float lies on a ``step`` grid: backends compute
# ``low + k * step`` in floating point, so exact equality would reject their own samples.
_STEP_RTOL = 1e-9


def is_json_scalar(value: object) -> bool:
    """True when ``value`` survives a JSON round trip unchanged (no NaN/inf, no containers)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    return isinstance(value, float) and math.isfinite(value)


def same_value(a: object, b: object) -> bool:
    """Equality that keeps JSON types apart (``True`` is not ``1``, ``1`` is not ``1.0``)."""
    return type(a) is type(b) and a == b


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _normalize_when(owner: str, when: Mapping[str, Any] | None) -> Condition:
    if when is None or when == ():
        return ()
    if isinstance(when, tuple) and all(isinstance(c, tuple) and len(c) == 2 for c in when):
        when = dict(when)  # already normalized (e.g. dataclasses.replace)
    if not isinstance(when, Mapping) or not when:
        raise SchemaError(
            "`when` must map a parent parameter to the value(s) that activate this one",
            path=owner,
            value=repr(when),
            fix='Write e.g. when={"optimizer": ["sgd", "rmsprop"]}.',
        )
    out = []
    for parent, values in when.items():
        if not isinstance(parent, str) or not parent:
            raise SchemaError(
                "`when` keys must be parameter names", path=owner, value=repr(parent),
                fix="Use the name of a parameter declared in the same space.",
            )
        vals = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not vals:
            raise SchemaError(
                f"`when[{parent!r}]` must list at least one value", path=owner, value="[]",
                fix=f"List the values of {parent!r} that activate this parameter.",
            )
        for v in vals:
            if not is_json_scalar(v):
                raise SchemaError(
                    f"`when[{parent!r}]` values must be JSON scalars", path=owner, value=repr(v),
                    fix="Use str, int, float, bool or null values.",
                )
        out.append((parent, vals))
    return tuple(out)


@dataclass(frozen=True)
class Param:
    """Common part of every parameter kind.

    Attributes:
        when: Conditions as data; the parameter exists only when every named parent took one of the
            listed values. An inactive parameter is absent from the sampled config.
        per_layer: Name of an integer parameter; this parameter is then repeated as
            ``name/0 … name/{n-1}``, one independent parameter per layer.
    """

    kind: ClassVar[str] = ""
    when: Condition = field(default=(), kw_only=True)
    per_layer: str | None = field(default=None, kw_only=True)

    def _common_checks(self) -> None:
        object.__setattr__(self, "when", _normalize_when(self._label(), self.when))  # type: ignore[arg-type]
        if self.per_layer is not None and (not isinstance(self.per_layer, str) or not self.per_layer):
            raise SchemaError(
                "`per_layer` must name an int parameter", path=self._label(), value=repr(self.per_layer),
                fix='Write e.g. per_layer="n_layers".',
            )

    def _label(self) -> str:
        return f"{type(self).__name__}(...)"

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a value this parameter can take."""
        raise NotImplementedError

    def enumerate(self) -> tuple[Scalar, ...] | None:
        """Every value in order, or None if the parameter is continuous."""
        raise NotImplementedError

    def grid_values(self) -> tuple[Scalar, ...]:
        """The values a grid search visits."""
        values = self.enumerate()
        assert values is not None  # overridden by Float, the only continuous kind
        return values

    def to_dict(self) -> dict[str, Any]:
        """Canonical dict form (defaults omitted); inverse of :func:`param_from_dict`."""
        out: dict[str, Any] = {"type": self.kind}
        out.update(self._fields_dict())
        if self.when:
            out["when"] = {p: list(v) for p, v in self.when}
        if self.per_layer is not None:
            out["per_layer"] = self.per_layer
        return out

    def _fields_dict(self) -> dict[str, Any]:
        raise NotImplementedError


def _check_grid(owner: Param, grid: Sequence[Any] | None) -> tuple[Any, ...] | None:
    if grid is None:
        return None
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid:
        raise SchemaError(
            "`grid` must be a non-empty list of values", path=owner._label(), value=repr(grid),
            fix="Write e.g. grid: [0.001, 0.01, 0.1].",
        )
    seen: list[Any] = []
    for v in grid:
        if not owner.contains(v):
            raise SchemaError(
                "every `grid` value must lie in the parameter's range", path=owner._label(), value=repr(v),
                fix="Remove it or widen low/high.",
            )
        if any(same_value(v, s) for s in seen):
            raise SchemaError(
                "`grid` values must be unique", path=owner._label(), value=repr(v), fix="Remove the duplicate.",
            )
        seen.append(v)
    return tuple(grid)


@dataclass(frozen=True)
class Int(Param):
    """An integer in ``[low, high]`` (both inclusive) on a ``step`` grid, optionally log-scaled.

    Example:
        >>> Int(1, 4).enumerate()
        (1, 2, 3, 4)
    """

    kind: ClassVar[str] = "int"
    low: int
    high: int
    step: int = field(default=1, kw_only=True)
    log: bool = field(default=False, kw_only=True)
    grid: tuple[int, ...] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            v = getattr(self, name)
            if not _is_int(v):
                raise SchemaError(
                    f"`{name}` of an int parameter must be an integer", path=self._label(), value=repr(v),
                    fix="Use a whole number, or a float parameter for fractional values.",
                )
        if not isinstance(self.log, bool):
            raise SchemaError("`log` must be true or false", path=self._label(), value=repr(self.log))
        if self.low > self.high:
            raise SchemaError(
                "`low <= high` must hold", path=self._label(), value=f"low={self.low}, high={self.high}",
                fix="Swap the bounds.",
            )
        if self.step < 1:
            raise SchemaError("`step >= 1` must hold", path=self._label(), value=f"step={self.step}",
                              fix="Use a positive step.")
        if (self.high - self.low) % self.step:
            raise SchemaError(
                "`step` must divide `high - low` so that both bounds are reachable", path=self._label(),
                value=f"low={self.low}, high={self.high}, step={self.step}",
                fix=f"Use high={self.low + (self.high - self.low) // self.step * self.step} or another step.",
            )
        if self.log and self.low <= 0:
            raise SchemaError(
                "a log-scaled parameter needs `low > 0`", path=self._label(), value=f"low={self.low}",
                fix="Raise low to 1 or more, or add a separate on/off Bool parameter for zero.",
            )
        self._common_checks()
        object.__setattr__(self, "grid", _check_grid(self, self.grid))

    def _label(self) -> str:
        return f"Int(low={self.low!r}, high={self.high!r})"

    def contains(self, value: object) -> bool:
        return _is_int(value) and self.low <= value <= self.high and (value - self.low) % self.step == 0  # type: ignore[operator]

    def enumerate(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def grid_values(self) -> tuple[Scalar, ...]:
        return self.grid if self.grid is not None else self.enumerate()

    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    def _fields_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step != 1:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        if self.grid is not None:
            out["grid"] = list(self.grid)
        return out


@dataclass(frozen=True)
class Float(Param):
    """A float in ``[low, high]`` (both inclusive), optionally on a ``step`` grid or log-scaled.

    A grid search needs ``step`` or an explicit ``grid`` list.
    """

    kind: ClassVar[str] = "float"
    low: float
    high: float
    step: float | None = field(default=None, kw_only=True)
    log: bool = field(default=False, kw_only=True)
    grid: tuple[float, ...] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        for name in ("low", "high") + (("step",) if self.step is not None else ()):
            v = getattr(self, name)
            if not _is_number(v) or not math.isfinite(v):
                raise SchemaError(
                    f"`{name}` of a float parameter must be a finite number", path=self._label(),
                    value=repr(v), fix="Write a number such as 0.001 or 1.0e-3.",
                )
            object.__setattr__(self, name, float(v))
        if not isinstance(self.log, bool):
            raise SchemaError("`log` must be true or false", path=self._label(), value=repr(self.log))
        if self.low > self.high:
            raise SchemaError(
                "`low <= high` must hold", path=self._label(), value=f"low={self.low}, high={self.high}",
                fix="Swap the bounds.",
            )
        if self.log and self.low <= 0:
            raise SchemaError(
                "a log-scaled parameter needs `low > 0`", path=self._label(), value=f"low={self.low}",
                fix="Use a small positive low such as 1e-6, or add an on/off Bool parameter for zero.",
            )
        if self.step is not None:
            if self.step <= 0:
                raise SchemaError("`step > 0` must hold", path=self._label(), value=f"step={self.step}",
                                  fix="Use a positive step.")
            n = (self.high - self.low) / self.step
            if abs(n - round(n)) > _STEP_RTOL * max(1.0, abs(n)):
                raise SchemaError(
                    "`step` must divide `high - low` so that both bounds are reachable", path=self._label(),
                    value=f"low={self.low}, high={self.high}, step={self.step}",
                    fix=f"Use high={self.low + math.floor(n) * self.step:g} or another step.",
                )
        self._common_checks()
        object.__setattr__(self, "grid", _check_grid(self, self.grid))
        if self.grid is not None:
            object.__setattr__(self, "grid", tuple(float(v) for v in self.grid))

    def _label(self) -> str:
        return f"Float(low={self.low!r}, high={self.high!r})"

    def contains(self, value: object) -> bool:
        if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
            return False
        v = float(value)  # type: ignore[arg-type]
        tol = _STEP_RTOL * max(1.0, abs(self.low), abs(self.high))
        if not (self.low - tol <= v <= self.high + tol):
            return False
        if self.step is None:
            return True
        k = (v - self.low) / self.step
        return abs(k - round(k)) <= _STEP_RTOL * max(1.0, abs(k)) * 1e3

    def enumerate(self) -> tuple[float, ...] | None:
        if self.step is None:
            return None
        n = round((self.high - self.low) / self.step)
        return tuple(float(round(self.low + i * self.step, 12)) for i in range(n)) + (self.high,)

    def grid_values(self) -> tuple[Scalar, ...]:
        if self.grid is not None:
            return self.grid
        values = self.enumerate()
        if values is None:
            raise SchemaError(
                "a grid search needs the values of every float parameter", path=self._label(),
                value="no `grid` and no `step`",
                fix="Add an explicit `grid: [...]` list or a `step` to this parameter.",
            )
        return values

    def _fields_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        if self.grid is not None:
            out["grid"] = list(self.grid)
        return out


@dataclass(frozen=True)
class Choice(Param):
    """One of a list of JSON-safe values; ``ordered=True`` marks them as an ordinal scale.

    Example:
        >>> Choice(["relu", "tanh"]).contains("relu")
        True
    """

    kind: ClassVar[str] = "choice"
    values: tuple[Scalar, ...]
    ordered: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        vals = self.values
        if isinstance(vals, (str, bytes)) or not isinstance(vals, (Sequence, set, frozenset)):
            raise SchemaError(
                "`values` must be a list", path="Choice(...)", value=repr(vals),
                fix="Write e.g. values: [relu, tanh].",
            )
        vals = tuple(vals)
        object.__setattr__(self, "values", vals)
        if not vals:
            raise SchemaError("a choice needs at least one value", path=self._label(), value="[]",
                              fix="List the values, or use a fixed parameter.")
        for i, v in enumerate(vals):
            if not is_json_scalar(v):
                raise SchemaError(
                    "choice values must be JSON-safe scalars (str, int, float, bool, null)",
                    path=self._label(), value=f"{v!r} at index {i}",
                    fix="Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
                )
            for j in range(i):
                if vals[j] == v:
                    hint = "" if same_value(vals[j], v) else " (they compare equal in Python and in Optuna)"
                    raise SchemaError(
                        f"choice values must be unique{hint}", path=self._label(),
                        value=f"{vals[j]!r} and {v!r}", fix="Remove the duplicate.",
                    )
        if not isinstance(self.ordered, bool):
            raise SchemaError("`ordered` must be true or false", path=self._label(), value=repr(self.ordered))
        self._common_checks()

    def _label(self) -> str:
        shown = list(self.values[:4]) + (["..."] if len(self.values) > 4 else [])
        return f"Choice({shown!r})"

    def contains(self, value: object) -> bool:
        return any(same_value(value, v) for v in self.values)

    def index(self, value: Scalar) -> int:
        for i, v in enumerate(self.values):
            if same_value(value, v):
                return i
        raise ValueError(f"{value!r} is not one of {list(self.values)!r}")

    def enumerate(self) -> tuple[Scalar, ...]:
        return self.values

    def _fields_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"values": list(self.values)}
        if self.ordered:
            out["ordered"] = True
        return out


@dataclass(frozen=True)
class Bool(Param):
    """``False`` or ``True``."""

    kind: ClassVar[str] = "bool"

    def __post_init__(self) -> None:
        self._common_checks()

    def _label(self) -> str:
        return "Bool()"

    def contains(self, value: object) -> bool:
        return isinstance(value, bool)

    def enumerate(self) -> tuple[bool, ...]:
        return (False, True)

    def _fields_dict(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class Fixed(Param):
    """A constant that is part of every config where it is active (never searched)."""

    kind: ClassVar[str] = "fixed"
    value: Scalar

    def __post_init__(self) -> None:
        if not is_json_scalar(self.value):
            raise SchemaError(
                "a fixed value must be a JSON-safe scalar (str, int, float, bool, null)",
                path="Fixed(...)", value=repr(self.value), fix="Store a name and build the object late.",
            )
        self._common_checks()

    def _label(self) -> str:
        return f"Fixed({self.value!r})"

    def contains(self, value: object) -> bool:
        return same_value(value, self.value)

    def enumerate(self) -> tuple[Scalar, ...]:
        return (self.value,)

    def _fields_dict(self) -> dict[str, Any]:
        return {"value": self.value}
