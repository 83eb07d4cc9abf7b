"""Parameter kinds: small immutable objects, validated on construction, bounds inclusive everywhere."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from tunebridge.errors import SchemaError, show

__all__ = ["Bool", "Choice", "Fixed", "Float", "Int", "Param", "Scalar", "is_json_scalar", "same_value"]

Scalar = str | int | float | bool | None
Condition = tuple[tuple[str, tuple[Scalar, ...]], ...]
# What ``when=`` accepts; it is stored normalized as a Condition.
When = Mapping[str, Scalar | Sequence[Scalar]] | Condition | None

# Relative tolerance used to decide whether a float lies in a range or on a ``step`` grid: backends
# compute ``low + k * step`` in floating point, so exact equality would reject their own samples.
_STEP_RTOL = 1e-9
# How far (in steps) a float may sit from its grid point and still count as on it.
_STEP_KTOL = 1e-5
# A float ``step`` below this fraction of the bounds' magnitude cannot be told apart from rounding
# noise: its grid points would collide or fall off the grid.
_MIN_STEP_REL = 1e-9


def _field_error(rule: str, *, label: str, field: str = "", value: Any = None, fix: str = "") -> SchemaError:
    """A :class:`SchemaError` about one field of a parameter, at ``label.field``.

    The error remembers ``field`` so that ``param_from_dict`` can re-root the path at the parameter's
    name (``space.units.step`` rather than ``Int(low=1, high=8).step``).
    """
    error = SchemaError(rule, path=f"{label}.{field}" if field else label, value=value, fix=fix)
    error.field = field  # type: ignore[attr-defined]
    return error


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


def _finite_float(value: object) -> float | None:
    """``float(value)`` for a finite int or float (not a bool), else None; never raises."""
    if not _is_number(value):
        return None
    try:
        f = float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond the float range
        return None
    return f if math.isfinite(f) else None


def _typed(obj: Any) -> Any:
    """A hashable form of a ``to_dict`` value that keeps JSON types apart (``1``, ``1.0``, ``True``)."""
    if isinstance(obj, Mapping):
        return tuple((k, _typed(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return tuple(_typed(v) for v in obj)
    return (type(obj).__name__, obj)


def _normalize_when(owner: Param, when: Any) -> Condition:
    if when is None or (isinstance(when, tuple) and not when):
        return ()
    if isinstance(when, tuple) and all(isinstance(c, tuple) and len(c) == 2 for c in when):
        when = dict(when)  # already normalized (e.g. dataclasses.replace)
    if not isinstance(when, Mapping) or not when:
        owner._fail(
            "`when` must map a parent parameter to the value(s) that activate this one",
            "when",
            show(when),
            'Write e.g. when={"optimizer": ["sgd", "rmsprop"]}.',
        )
    out = []
    for parent, values in when.items():
        if not isinstance(parent, str) or not parent:
            owner._fail(
                "`when` keys must be parameter names",
                "when",
                show(parent),
                "Use the name of a parameter declared in the same space.",
            )
        vals = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not vals:
            owner._fail(
                f"`when[{parent!r}]` must list at least one value",
                "when",
                "[]",
                f"List the values of {parent!r} that activate this parameter.",
            )
        for v in vals:
            if not is_json_scalar(v):
                owner._fail(
                    f"`when[{parent!r}]` values must be JSON scalars",
                    "when",
                    show(v),
                    "Use str, int, float, bool or null values.",
                )
        out.append((parent, vals))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Param:
    """Common part of every parameter kind.

    Two parameters are equal when their :meth:`to_dict` forms are, JSON types included: ``Fixed(1)``,
    ``Fixed(1.0)`` and ``Fixed(True)`` are three different parameters.

    Attributes:
        when: Conditions as data; the parameter exists only when every named parent took one of the
            listed values. An inactive parameter is absent from the sampled config.
        per_layer: Name of an integer parameter; this parameter is then repeated as
            ``name/0 … name/{n-1}``, one independent parameter per layer.
    """

    kind: ClassVar[str] = ""
    when: Condition = field(default=(), kw_only=True)
    per_layer: str | None = field(default=None, kw_only=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Param):
            return NotImplemented
        return type(self) is type(other) and _typed(self.to_dict()) == _typed(other.to_dict())

    def __hash__(self) -> int:
        return hash(_typed(self.to_dict()))

    def _fail(self, rule: str, field: str = "", value: Any = None, fix: str = "") -> NoReturn:
        raise _field_error(rule, label=self._label(), field=field, value=value, fix=fix)

    def _common_checks(self) -> None:
        object.__setattr__(self, "when", _normalize_when(self, self.when))
        if self.per_layer is not None and (not isinstance(self.per_layer, str) or not self.per_layer):
            self._fail(
                "`per_layer` must name an int parameter",
                "per_layer",
                show(self.per_layer),
                'Write e.g. per_layer="n_layers".',
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
        return tuple(self.iter_grid_values())

    def iter_grid_values(self) -> Iterator[Scalar]:
        """The values a grid search visits, lazily (a huge range is never materialized)."""
        values = self.enumerate()
        if values is None:  # pragma: no cover - Float, the only continuous kind, overrides this
            raise NotImplementedError
        return iter(values)

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


def _check_grid(owner: Param, grid: Any, convert: Callable[[Any], Any] | None = None) -> tuple[Any, ...] | None:
    if grid is None:
        return None
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or not grid:
        owner._fail(
            "`grid` must be a non-empty list of values",
            "grid",
            show(grid),
            "List the values a grid search visits, e.g. grid: [16, 32, 64].",
        )
    out: list[Any] = []
    seen: set[Any] = set()
    for v in grid:
        if not owner.contains(v):
            owner._fail(
                "every `grid` value must lie in the parameter's range",
                "grid",
                show(v),
                "Remove it or widen low/high.",
            )
        if convert is not None:
            v = convert(v)  # a float grid of [1, 1.0] holds one value, not two
        if v in seen:
            owner._fail("`grid` values must be unique", "grid", show(v), "Remove the duplicate.")
        seen.add(v)
        out.append(v)
    return tuple(out)


@dataclass(frozen=True, eq=False)
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

    if TYPE_CHECKING:  # the arguments users pass, before normalization

        def __init__(
            self,
            low: int,
            high: int,
            *,
            step: int = 1,
            log: bool = False,
            grid: Sequence[int] | None = None,
            when: When = None,
            per_layer: str | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            v = getattr(self, name)
            if not _is_int(v):
                self._fail(
                    f"`{name}` of an int parameter must be an integer",
                    name,
                    show(v),
                    "Use a whole number, or a float parameter for fractional values.",
                )
        if not isinstance(self.log, bool):
            self._fail("`log` must be true or false", "log", show(self.log), "Write log: true or log: false.")
        if self.low > self.high:
            self._fail(
                "`low <= high` must hold", "", f"low={show(self.low)}, high={show(self.high)}", "Swap the bounds."
            )
        if self.step < 1:
            self._fail("`step >= 1` must hold", "step", f"step={show(self.step)}", "Use a positive step.")
        if (self.high - self.low) % self.step:
            self._fail(
                "`step` must divide `high - low` so that both bounds are reachable",
                "step",
                f"low={show(self.low)}, high={show(self.high)}, step={show(self.step)}",
                f"Use high={show(self.low + (self.high - self.low) // self.step * self.step)} or another step.",
            )
        if self.log and self.low <= 0:
            self._fail(
                "a log-scaled parameter needs `low > 0`",
                "low",
                f"low={show(self.low)}",
                "Raise low to 1 or more, or add a separate on/off Bool parameter for zero.",
            )
        self._common_checks()
        object.__setattr__(self, "grid", _check_grid(self, self.grid))

    def _label(self) -> str:
        return f"Int(low={show(self.low)}, high={show(self.high)})"

    def contains(self, value: object) -> bool:
        return _is_int(value) and self.low <= value <= self.high and (value - self.low) % self.step == 0  # type: ignore[operator]

    def enumerate(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def iter_grid_values(self) -> Iterator[Scalar]:
        return iter(self.grid if self.grid is not None else range(self.low, self.high + 1, self.step))

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


@dataclass(frozen=True, eq=False)
class Float(Param):
    """A float in ``[low, high]`` (both inclusive), optionally on a ``step`` grid or log-scaled.

    A grid search needs ``step`` or an explicit ``grid`` list.

    Example:
        >>> Float(0.0, 0.3, step=0.1).enumerate()
        (0.0, 0.1, 0.2, 0.3)
    """

    kind: ClassVar[str] = "float"
    low: float
    high: float
    step: float | None = field(default=None, kw_only=True)
    log: bool = field(default=False, kw_only=True)
    grid: tuple[float, ...] | None = field(default=None, kw_only=True)

    if TYPE_CHECKING:

        def __init__(
            self,
            low: float,
            high: float,
            *,
            step: float | None = None,
            log: bool = False,
            grid: Sequence[float] | None = None,
            when: When = None,
            per_layer: str | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        for name in ("low", "high", *(("step",) if self.step is not None else ())):
            v = getattr(self, name)
            f = _finite_float(v)
            if f is None:
                self._fail(
                    f"`{name}` of a float parameter must be a finite number",
                    name,
                    show(v),
                    "Write a number such as 0.001 or 1.0e-3.",
                )
            object.__setattr__(self, name, f)
        if not isinstance(self.log, bool):
            self._fail("`log` must be true or false", "log", show(self.log), "Write log: true or log: false.")
        if self.low > self.high:
            self._fail("`low <= high` must hold", "", f"low={self.low!r}, high={self.high!r}", "Swap the bounds.")
        if self.log and self.low <= 0:
            self._fail(
                "a log-scaled parameter needs `low > 0`",
                "low",
                f"low={self.low!r}",
                "Use a small positive low such as 1e-6, or add an on/off Bool parameter for zero.",
            )
        if not math.isfinite(self.high - self.low):
            self._fail(
                "`high - low` must be a finite number",
                "",
                f"low={self.low!r}, high={self.high!r}",
                "Narrow the range.",
            )
        if self.step is not None:
            self._check_step(self.step)
        self._common_checks()
        object.__setattr__(self, "grid", _check_grid(self, self.grid, float))

    def _check_step(self, step: float) -> None:
        if step <= 0:
            self._fail("`step > 0` must hold", "step", f"step={step!r}", "Use a positive step.")
        magnitude = max(abs(self.low), abs(self.high))
        if step < _MIN_STEP_REL * magnitude:
            self._fail(
                f"`step` must be at least {_MIN_STEP_REL:g} x max(|low|, |high|) to be told apart from rounding",
                "step",
                f"step={step!r}",
                f"Use a step of at least {_MIN_STEP_REL * magnitude:g}, or no step.",
            )
        n = (self.high - self.low) / step
        if abs(n - round(n)) > _STEP_RTOL * max(1.0, abs(n)):
            self._fail(
                "`step` must divide `high - low` so that both bounds are reachable",
                "step",
                f"low={self.low!r}, high={self.high!r}, step={step!r}",
                f"Use high={self.low + math.floor(n) * step:g} or another step.",
            )

    def _label(self) -> str:
        return f"Float(low={show(self.low)}, high={show(self.high)})"

    def contains(self, value: object) -> bool:
        v = _finite_float(value)
        if v is None:
            return False
        tol = _STEP_RTOL * max(abs(self.low), abs(self.high))
        if not (self.low - tol <= v <= self.high + tol):
            return False
        if self.step is None:
            return True
        k = (v - self.low) / self.step
        return abs(k - round(k)) <= _STEP_KTOL

    def _steps(self) -> Iterator[float]:
        """``low, low + step, …, high``; inner points rounded far below the step (0.3, not 0.30000000000000004)."""
        assert self.step is not None
        n = round((self.high - self.low) / self.step)
        digits = 9 - math.floor(math.log10(self.step))
        yield self.low
        for i in range(1, n):
            yield round(self.low + i * self.step, digits)
        if n > 0:
            yield self.high

    def enumerate(self) -> tuple[float, ...] | None:
        return None if self.step is None else tuple(self._steps())

    def iter_grid_values(self) -> Iterator[Scalar]:
        if self.grid is not None:
            return iter(self.grid)
        if self.step is None:
            self._fail(
                "a grid search needs the values of every float parameter",
                "",
                "no `grid` and no `step`",
                "Add an explicit `grid: [...]` list or a `step` to this parameter.",
            )
        return self._steps()

    def _fields_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        if self.grid is not None:
            out["grid"] = list(self.grid)
        return out


@dataclass(frozen=True, eq=False)
class Choice(Param):
    """One of a list of JSON-safe values; ``ordered=True`` marks them as an ordinal scale.

    Example:
        >>> Choice(["relu", "tanh"]).contains("relu")
        True
    """

    kind: ClassVar[str] = "choice"
    values: tuple[Scalar, ...]
    ordered: bool = field(default=False, kw_only=True)

    if TYPE_CHECKING:

        def __init__(
            self, values: Sequence[Scalar], *, ordered: bool = False, when: When = None, per_layer: str | None = None
        ) -> None: ...

    def __post_init__(self) -> None:
        vals = self.values
        # A set is refused: its order changes from one process to the next, and so would a seeded search.
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence):
            raise _field_error(
                "`values` must be a list",
                label="Choice(...)",
                field="values",
                value=show(vals),
                fix="Write e.g. values: [relu, tanh] (a list keeps its order; a set does not).",
            )
        vals = tuple(vals)
        object.__setattr__(self, "values", vals)
        if not vals:
            self._fail(
                "a choice needs at least one value", "values", "[]", "List the values, or use a fixed parameter."
            )
        seen: dict[Any, int] = {}
        for i, v in enumerate(vals):
            if not is_json_scalar(v):
                self._fail(
                    "choice values must be JSON-safe scalars (str, int, float, bool, null)",
                    "values",
                    f"{show(v)} at index {i}",
                    "Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
                )
            # 1, 1.0 and True hash and compare alike, so this finds what Python and Optuna would conflate.
            j = seen.setdefault(v, i)
            if j != i:
                hint = "" if same_value(vals[j], v) else " (they compare equal in Python and in Optuna)"
                self._fail(
                    f"choice values must be unique{hint}",
                    "values",
                    f"{show(vals[j])} and {show(v)}",
                    "Remove the duplicate.",
                )
        if not isinstance(self.ordered, bool):
            self._fail(
                "`ordered` must be true or false", "ordered", show(self.ordered), "Write ordered: true or false."
            )
        self._common_checks()

    def _label(self) -> str:
        values = self.values if isinstance(self.values, tuple) else ()
        shown = [show(v) for v in values[:4]] + (["..."] if len(values) > 4 else [])
        return f"Choice([{', '.join(shown)}])"

    def contains(self, value: object) -> bool:
        return any(same_value(value, v) for v in self.values)

    def index(self, value: Scalar) -> int:
        for i, v in enumerate(self.values):
            if same_value(value, v):
                return i
        raise ValueError(f"{show(value)} is not one of {show(list(self.values))}")

    def enumerate(self) -> tuple[Scalar, ...]:
        return self.values

    def _fields_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"values": list(self.values)}
        if self.ordered:
            out["ordered"] = True
        return out


@dataclass(frozen=True, eq=False)
class Bool(Param):
    """``False`` or ``True``."""

    kind: ClassVar[str] = "bool"

    if TYPE_CHECKING:

        def __init__(self, *, when: When = None, per_layer: str | None = None) -> None: ...

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


@dataclass(frozen=True, eq=False)
class Fixed(Param):
    """A constant that is part of every config where it is active (never searched)."""

    kind: ClassVar[str] = "fixed"
    value: Scalar

    if TYPE_CHECKING:

        def __init__(self, value: Scalar, *, when: When = None, per_layer: str | None = None) -> None: ...

    def __post_init__(self) -> None:
        if not is_json_scalar(self.value):
            raise _field_error(
                "a fixed value must be a JSON-safe scalar (str, int, float, bool, null)",
                label="Fixed(...)",
                field="value",
                value=show(self.value),
                fix="Store a name and build the object late.",
            )
        self._common_checks()

    def _label(self) -> str:
        return f"Fixed({show(self.value)})"

    def contains(self, value: object) -> bool:
        return same_value(value, self.value)

    def enumerate(self) -> tuple[Scalar, ...]:
        return (self.value,)

    def _fields_dict(self) -> dict[str, Any]:
        return {"value": self.value}


def count_bounds(param: Param) -> tuple[int, int] | None:
    """The smallest and largest layer count a ``per_layer`` parent can take, or None if it is no count.

    A count is an ``Int`` with ``low >= 0``, or a ``Choice``/``Fixed`` whose values are all ints >= 0.
    """
    if isinstance(param, Int):
        return (param.low, param.high) if param.low >= 0 else None
    if isinstance(param, (Choice, Fixed)):
        ints = [v for v in param.enumerate() if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        if len(ints) == len(param.enumerate()):
            return min(ints), max(ints)
    return None
