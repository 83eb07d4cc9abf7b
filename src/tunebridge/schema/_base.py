"""The common part of every parameter kind: :class:`Param`, its ``when`` conditions and shared helpers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from tunebridge.errors import SchemaError, show

__all__ = ["Condition", "Param", "Scalar", "When", "is_json_scalar", "layer_keys", "parent_names", "same_value"]

Scalar = str | int | float | bool | None
Condition = tuple[tuple[str, tuple[Scalar, ...]], ...]
# What ``when=`` accepts; it is stored normalized as a Condition.
When = Mapping[str, Scalar | Sequence[Scalar]] | Condition | None


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


def parent_names(param: Param) -> list[str]:
    """The parameters ``param`` depends on: its ``when`` parents, then its ``per_layer`` count."""
    out = [parent for parent, _ in param.when]
    if param.per_layer is not None:
        out.append(param.per_layer)
    return out


def layer_keys(name: str, param: Param, config: Mapping[str, Any]) -> list[str]:
    """The config keys of ``name``: itself, or its per-layer copies ``name/0 … name/{n-1}``.

    The count is read from ``config``; an absent (inactive) count means no copies.
    """
    if param.per_layer is None:
        return [name]
    n = config.get(param.per_layer)
    return [f"{name}/{i}" for i in range(0 if n is None else int(n))]
