"""Numeric parameter kinds: :class:`Int` and :class:`Float`, their ``step`` and ``grid`` checks."""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from tunebridge.errors import show
from tunebridge.schema._base import Param, Scalar, When, _finite_float, _is_int

__all__ = ["Float", "Int"]

# Relative tolerance used to decide whether a float lies in a range or on a ``step`` grid: backends
# compute ``low + k * step`` in floating point, so exact equality would reject their own samples.
_STEP_RTOL = 1e-9
# How far (in steps) a float may sit from its grid point and still count as on it.
_STEP_KTOL = 1e-5
# A float ``step`` below this fraction of the bounds' magnitude cannot be told apart from rounding
# noise: its grid points would collide or fall off the grid.
_MIN_STEP_REL = 1e-9
# Grid points are computed in decimal from the shortest reprs of ``low`` and ``step``; 50 digits hold
# ``low + k * step`` exactly for every float a user writes, so the only rounding is the final float().
# No traps: an impossible operation gives NaN (never equal to 0), and the binary check decides.
_DECIMAL = decimal.Context(prec=50, traps=[])


def _exact(x: float) -> decimal.Decimal:
    """``x`` as the decimal a person wrote (``0.1`` -> ``Decimal('0.1')``, not the binary expansion)."""
    return decimal.Decimal(repr(x))


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
        # Exact in decimal (2.0, 2.0000001, step 1e-07 as written), or up to rounding (a `high` computed
        # as low + n * step in binary): binary (high - low) / step alone is off by up to 1e-7 steps.
        if _DECIMAL.remainder(_DECIMAL.subtract(_exact(self.high), _exact(self.low)), _exact(step)) == 0:
            return
        n = (self.high - self.low) / step
        if abs(n - round(n)) > _STEP_RTOL * max(1.0, abs(n)):
            self._fail(
                "`step` must divide `high - low` so that both bounds are reachable",
                "step",
                f"low={self.low!r}, high={self.high!r}, step={step!r}",
                f"Use high={self._grid_point(math.floor(n))!r} or another step.",
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

    @cached_property
    def _n_steps(self) -> int:
        assert self.step is not None
        return round((self.high - self.low) / self.step)

    def _grid_point(self, k: int) -> float:
        """``low + k * step`` computed in decimal, so 0.1 + 2 * 0.1 is 0.3."""
        assert self.step is not None
        return float(_DECIMAL.add(_exact(self.low), _DECIMAL.multiply(k, _exact(self.step))))

    def _point(self, k: int) -> float:
        """Grid point ``k`` of ``0 … n``; the ends are the bounds as written (-0.0 stays -0.0, and a
        step may divide the range only up to rounding)."""
        if k <= 0:
            return self.low
        return self.high if k >= self._n_steps else self._grid_point(k)

    def snap(self, value: float) -> float:
        """The value of the step grid nearest ``value``, exact to the decimals of ``low`` and ``step``.

        Backends compute ``low + k * step`` in binary floating point (0.30000000000000004); every value
        tunebridge hands out (sampled, decoded, enumerated) goes through here instead. Without a ``step``
        the value is returned as it is.

        Example:
            >>> Float(0.1, 0.5, step=0.1).snap(0.1 + 0.2)
            0.3
        """
        if self.step is None or not math.isfinite(value):
            return value
        k = round((float(value) - self.low) / self.step)
        return self._point(min(max(k, 0), self._n_steps))

    def _steps(self) -> Iterator[float]:
        """``low, low + step, …, high``, each point exact (0.3, not 0.30000000000000004)."""
        return (self._point(k) for k in range(self._n_steps + 1))

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
