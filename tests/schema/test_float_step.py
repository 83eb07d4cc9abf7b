"""Values on a float ``step`` grid are exact to the step's decimals: 0.3, never 0.30000000000000004.

Backends compute ``low + k * step`` in binary floating point; every value tunebridge hands out
(sampled on either backend, decoded, enumerated by the grid) goes through :meth:`Float.snap`.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tunebridge.errors import SchemaError
from tunebridge.schema import Float, Space

# Deterministic in CI (the same examples every run); widen locally with --hypothesis-seed=random.
PROPS = settings(max_examples=300, deadline=None, derandomize=True, database=None)

EXAMPLE = Space(x=Float(0.1, 0.5, step=0.1))
EXACT = ["0.1", "0.2", "0.3", "0.4", "0.5"]


def _decimals(value: float) -> int:
    """Digits after the point in the shortest repr (``0.3`` -> 1, ``1e-05`` -> 5, ``2.0`` -> 0)."""
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@st.composite
def stepped_floats(draw: st.DrawFn) -> tuple[Float, Decimal, Decimal]:
    """A stepped Float written as a person would (decimals of its own), with ``low`` and ``step`` as decimals."""
    low = Decimal(draw(st.integers(-(10**5), 10**5))).scaleb(-draw(st.integers(0, 7)))
    step = Decimal(draw(st.integers(1, 10**4))).scaleb(-draw(st.integers(0, 7)))
    high = low + draw(st.integers(0, 30)) * step
    assume(float(step) >= 1e-9 * max(abs(float(low)), abs(float(high))))  # finer steps are refused by design
    return Float(float(low), float(high), step=float(step)), low, step


@PROPS
@given(stepped_floats())
def test_grid_points_are_exact_and_printed_with_the_steps_decimals(case: tuple[Float, Decimal, Decimal]) -> None:
    param, low, step = case
    assert param.step is not None
    decimals = max(_decimals(param.low), _decimals(param.step))
    values = param.grid_values()
    for k, value in enumerate(values):
        exact = float(low + k * step)
        assert value == exact and _decimals(value) <= decimals, (k, value)
        assert param.contains(value) and param.snap(value) == value
        # What backends compute: plain binary arithmetic, and Optuna's round-then-rescale.
        binary = param.low + k * param.step
        optuna = min(max(round((binary - param.low) / param.step) * param.step + param.low, param.low), param.high)
        for raw in (binary, optuna):
            assert param.contains(raw) and param.snap(raw) == exact, (k, raw)
    assert values[0] == param.low and values[-1] == param.high  # the bounds as written


@pytest.mark.parametrize(
    ("param", "raw", "snapped"),
    [
        (Float(0.1, 0.5, step=0.1), 0.1 + 0.2, 0.3),
        (Float(0.1, 0.5, step=0.1), 0.30000000000000004, 0.3),
        (Float(0.05, 0.45, step=0.1), 0.15000000000000002, 0.15),  # low's decimals count too
        (Float(-1.0, 1.0, step=0.1), -0.30000000000000004, -0.3),
        (Float(1e-05, 5e-05, step=1e-05), 3.0000000000000004e-05, 3e-05),
        (Float(0.0, 1.0, step=0.25), 0.7500000001, 0.75),
        (Float(0.1, 0.5, step=0.1), 0.49, 0.5),  # the nearest grid point
        (Float(0.1, 0.5, step=0.1), 0.7, 0.5),  # never off the grid
        (Float(0.0, 1.0), 0.30000000000000004, 0.30000000000000004),  # no step: nothing to snap to
    ],
)
def test_snap_is_the_nearest_grid_point_as_a_person_writes_it(param: Float, raw: float, snapped: float) -> None:
    assert param.snap(raw) == snapped
    assert repr(param.snap(raw)) == repr(snapped)


def test_the_grid_of_the_issue_example_is_exact() -> None:
    assert [repr(c["x"]) for c in EXAMPLE.grid()] == EXACT
    assert [repr(v) for v in EXAMPLE["x"].enumerate() or ()] == EXACT


@pytest.mark.parametrize("backend", ["optuna", pytest.param("ray", marks=pytest.mark.ray)])
def test_samples_of_the_issue_example_are_exact_on_both_backends(backend: str) -> None:
    if backend == "ray":
        pytest.importorskip("ray.tune")
    values = [c["x"] for c in EXAMPLE.sample(200, seed=0, backend=backend)]
    assert sorted({repr(v) for v in values}) == EXACT


@pytest.mark.parametrize("value", [0.3, 0.30000000000000004, 0.1 + 0.2, 0.29999999999999993])
def test_validate_accepts_the_exact_value_and_the_binary_one(value: float) -> None:
    EXAMPLE.validate({"x": value})


@pytest.mark.parametrize("value", [0.35, 0.6, 0.0])
def test_validate_refuses_values_off_the_grid(value: float) -> None:
    message = f"'x' = {value!r} is not a value of Float(low=0.1, high=0.5)"
    with pytest.raises(SchemaError, match=re.escape(message)):
        EXAMPLE.validate({"x": value})
