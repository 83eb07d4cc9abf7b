"""Parameter kinds: small immutable objects, validated on construction, bounds inclusive everywhere.

The common part lives in ``_base`` and the numeric kinds in ``_numeric``; this module holds the discrete
kinds (:class:`Choice`, :class:`Bool`, :class:`Fixed`) and re-exports every kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tunebridge._rules import is_int_at_least
from tunebridge.errors import show
from tunebridge.schema._base import Param, Scalar, When, _field_error, is_json_scalar, same_value
from tunebridge.schema._base import _finite_float as _finite_float  # re-exported: _policies uses it
from tunebridge.schema._numeric import Float, Int

__all__ = ["Bool", "Choice", "Fixed", "Float", "Int", "Param", "Scalar", "is_json_scalar", "same_value"]


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
        ints = [v for v in param.enumerate() if is_int_at_least(v, 0)]
        if len(ints) == len(param.enumerate()):
            return min(ints), max(ints)
    return None
