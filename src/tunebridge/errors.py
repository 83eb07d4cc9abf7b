"""The tunebridge error hierarchy.

Every error tunebridge raises on purpose derives from :class:`TunebridgeError` and from the builtin a
user would naturally catch (``ValueError`` for bad input, ``ImportError`` for a missing extra), so
``except ValueError`` keeps working for code that does not know tunebridge.

This module is standard library only: the schema imports it.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "ConversionError",
    "MetricNotFoundError",
    "MissingDependencyError",
    "NonFiniteMetricError",
    "SchemaError",
    "SpecMismatchError",
    "TrialOutOfMemoryError",
    "TrialTimeoutError",
    "TunebridgeError",
]


# Error messages show user input through this bounded repr: a hostile document (a YAML "billion
# laughs" of shared aliases, a 300 000-item list, a 5 000-digit integer) must not make rendering the
# message itself hang, exhaust memory or raise.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 8
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlong = 100


def show(value: object) -> str:
    """``repr(value)`` for an error message, bounded in size and in the work it takes."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        if isinstance(value, int):
            return f"an integer of {value.bit_length()} bits"
        return f"a {type(value).__name__}"


class TunebridgeError(Exception):
    """Root of every error tunebridge raises on purpose."""


class SchemaError(TunebridgeError, ValueError):
    """A search space, spec file or concrete config is malformed.

    The message names the parameter path, the rule that was broken, the offending value and the fix.

    Attributes:
        path: Where the problem is, e.g. ``"space.lr"`` (may be empty).
        rule: The rule that does not hold.
        value: The offending value (already rendered for humans).
        fix: What to do about it.
    """

    def __init__(self, rule: str, *, path: str = "", value: Any = None, fix: str = "") -> None:
        self.path = path
        self.rule = rule
        self.value = value
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.path}: " if self.path else ""
        got = "" if self.value is None else f", but got {self.value}"
        fix = f" {self.fix}" if self.fix else ""
        return f"{head}{self.rule}{got}.{fix}"

    def at(self, prefix: str) -> SchemaError:
        """Return a copy of this error located under ``prefix`` (e.g. ``"space"``)."""
        path = f"{prefix}.{self.path}" if self.path else prefix
        return SchemaError(self.rule, path=path, value=self.value, fix=self.fix)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across Ray / multiprocessing
        return (_rebuild_schema_error, (self.rule, self.path, self.value, self.fix))


def _rebuild_schema_error(rule: str, path: str, value: Any, fix: str) -> SchemaError:
    return SchemaError(rule, path=path, value=value, fix=fix)


class ConversionError(TunebridgeError, ValueError):
    """A space (or option) cannot be expressed losslessly in a backend.

    Raised before any trial runs; tunebridge never degrades a space silently.
    """

    def __init__(self, *, backend: str, param: str, option: str, fix: str) -> None:
        self.backend = backend
        self.param = param
        self.option = option
        self.fix = fix
        super().__init__(f"{backend} cannot express {param!r} with {option}. {fix}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_conversion_error, (self.backend, self.param, self.option, self.fix))


def _rebuild_conversion_error(backend: str, param: str, option: str, fix: str) -> ConversionError:
    return ConversionError(backend=backend, param=param, option=option, fix=fix)


class MetricNotFoundError(TunebridgeError, LookupError):
    """The monitored metric was never logged by the LightningModule."""

    def __init__(self, metric: str, available: list[str]) -> None:
        self.metric = metric
        self.available = available
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"metric {metric!r} was not logged during validation; the metrics that are logged: "
            f"{listed}. Log it in validation_step with self.log({metric!r}, value) or set "
            f"`metric:` to one of the logged names."
        )

    def __str__(self) -> str:  # LookupError would quote the message otherwise
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (MetricNotFoundError, (self.metric, self.available))


class MissingDependencyError(TunebridgeError, ImportError):
    """An optional feature was used without its extra installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature} needs the {module!r} package, which is not installed. "
            f"Install it with: pip install 'tunebridge[{extra}]'"
        )


class SpecMismatchError(TunebridgeError, ValueError):
    """A study is resumed with a spec that differs from the one it was started with."""


class TrialTimeoutError(TunebridgeError, TimeoutError):
    """A trial ran past its ``trial_timeout`` and was stopped; it is marked failed."""


class TrialOutOfMemoryError(TunebridgeError, MemoryError):
    """A trial ran out of (CPU or CUDA) memory; it fails with the batch size in the reason."""


class NonFiniteMetricError(TunebridgeError, ArithmeticError):
    """A monitored metric or a loss became NaN or infinite; the trial fails with this reason."""
