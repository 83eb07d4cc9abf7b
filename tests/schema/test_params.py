"""Parameter kinds: every construction rule, membership, enumeration, dict form, type-strict equality."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest

from tunebridge.errors import SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, is_json_scalar, same_value
from tunebridge.schema._params import count_bounds

NAN, INF = float("nan"), float("inf")

# (id, constructor, the exact message)
CONSTRUCTION_RULES: list[tuple[str, Callable[[], Param], str]] = [
    # -- Int
    (
        "int-low-above-high",
        lambda: Int(5, 1),
        "Int(low=5, high=1): `low <= high` must hold, but got low=5, high=1. Swap the bounds.",
    ),
    (
        "int-fractional-low",
        lambda: Int(1.5, 3),
        "Int(low=1.5, high=3).low: `low` of an int parameter must be an integer, but got 1.5. Use a whole number, or a float parameter for fractional values.",
    ),
    (
        "int-bool-high",
        lambda: Int(0, True),
        "Int(low=0, high=True).high: `high` of an int parameter must be an integer, but got True. Use a whole number, or a float parameter for fractional values.",
    ),
    (
        "int-string-step",
        lambda: Int(0, 4, step="1"),
        "Int(low=0, high=4).step: `step` of an int parameter must be an integer, but got '1'. Use a whole number, or a float parameter for fractional values.",
    ),
    (
        "int-step-zero",
        lambda: Int(0, 4, step=0),
        "Int(low=0, high=4).step: `step >= 1` must hold, but got step=0. Use a positive step.",
    ),
    (
        "int-step-not-dividing",
        lambda: Int(0, 10, step=3),
        "Int(low=0, high=10).step: `step` must divide `high - low` so that both bounds are reachable, but got low=0, high=10, step=3. Use high=9 or another step.",
    ),
    (
        "int-log-low-zero",
        lambda: Int(0, 10, log=True),
        "Int(low=0, high=10).low: a log-scaled parameter needs `low > 0`, but got low=0. Raise low to 1 or more, or add a separate on/off Bool parameter for zero.",
    ),
    (
        "int-log-low-negative",
        lambda: Int(-4, 10, log=True),
        "Int(low=-4, high=10).low: a log-scaled parameter needs `low > 0`, but got low=-4. Raise low to 1 or more, or add a separate on/off Bool parameter for zero.",
    ),
    (
        "int-log-not-bool",
        lambda: Int(1, 10, log="yes"),
        "Int(low=1, high=10).log: `log` must be true or false, but got 'yes'. Write log: true or log: false.",
    ),
    (
        "int-grid-outside",
        lambda: Int(1, 4, grid=(5,)),
        "Int(low=1, high=4).grid: every `grid` value must lie in the parameter's range, but got 5. Remove it or widen low/high.",
    ),
    (
        "int-grid-off-step",
        lambda: Int(0, 8, step=2, grid=(3,)),
        "Int(low=0, high=8).grid: every `grid` value must lie in the parameter's range, but got 3. Remove it or widen low/high.",
    ),
    (
        "int-grid-duplicate",
        lambda: Int(1, 4, grid=(2, 2)),
        "Int(low=1, high=4).grid: `grid` values must be unique, but got 2. Remove the duplicate.",
    ),
    (
        "int-grid-empty",
        lambda: Int(1, 4, grid=()),
        "Int(low=1, high=4).grid: `grid` must be a non-empty list of values, but got (). List the values a grid search visits, e.g. grid: [16, 32, 64].",
    ),
    # -- Float
    (
        "float-low-above-high",
        lambda: Float(1.0, 0.1),
        "Float(low=1.0, high=0.1): `low <= high` must hold, but got low=1.0, high=0.1. Swap the bounds.",
    ),
    (
        "float-nan",
        lambda: Float(NAN, 1.0),
        "Float(low=nan, high=1.0).low: `low` of a float parameter must be a finite number, but got nan. Write a number such as 0.001 or 1.0e-3.",
    ),
    (
        "float-inf",
        lambda: Float(0.0, INF),
        "Float(low=0.0, high=inf).high: `high` of a float parameter must be a finite number, but got inf. Write a number such as 0.001 or 1.0e-3.",
    ),
    (
        "float-string",
        lambda: Float("0.1", 1.0),
        "Float(low='0.1', high=1.0).low: `low` of a float parameter must be a finite number, but got '0.1'. Write a number such as 0.001 or 1.0e-3.",
    ),
    ("float-int-beyond-float", lambda: Float(0, 10**400), "high: `high` of a float parameter must be a finite number"),
    (
        "float-log-low-zero",
        lambda: Float(0.0, 1.0, log=True),
        "Float(low=0.0, high=1.0).low: a log-scaled parameter needs `low > 0`, but got low=0.0. Use a small positive low such as 1e-6, or add an on/off Bool parameter for zero.",
    ),
    (
        "float-log-low-negative",
        lambda: Float(-1.0, 1.0, log=True),
        "Float(low=-1.0, high=1.0).low: a log-scaled parameter needs `low > 0`, but got low=-1.0. Use a small positive low such as 1e-6, or add an on/off Bool parameter for zero.",
    ),
    (
        "float-step-zero",
        lambda: Float(0.0, 1.0, step=0.0),
        "Float(low=0.0, high=1.0).step: `step > 0` must hold, but got step=0.0. Use a positive step.",
    ),
    (
        "float-step-not-dividing",
        lambda: Float(0.0, 1.0, step=0.3),
        "Float(low=0.0, high=1.0).step: `step` must divide `high - low` so that both bounds are reachable, but got low=0.0, high=1.0, step=0.3. Use high=0.9 or another step.",
    ),
    (
        "float-step-below-precision",
        lambda: Float(1e6, 2e6, step=1e-6),
        "Float(low=1000000.0, high=2000000.0).step: `step` must be at least 1e-09 x max(|low|, |high|) to be told apart from rounding, but got step=1e-06. Use a step of at least 0.002, or no step.",
    ),
    (
        "float-range-overflows",
        lambda: Float(-1e308, 1e308),
        "Float(low=-1e+308, high=1e+308): `high - low` must be a finite number, but got low=-1e+308, high=1e+308. Narrow the range.",
    ),
    (
        "float-grid-duplicate-int-and-float",
        lambda: Float(0.0, 2.0, grid=(1, 1.0)),
        "Float(low=0.0, high=2.0).grid: `grid` values must be unique, but got 1.0. Remove the duplicate.",
    ),
    (
        "float-grid-outside",
        lambda: Float(0.0, 1.0, grid=(2.0,)),
        "Float(low=0.0, high=1.0).grid: every `grid` value must lie in the parameter's range, but got 2.0. Remove it or widen low/high.",
    ),
    # -- Choice
    (
        "choice-empty",
        lambda: Choice([]),
        "Choice([]).values: a choice needs at least one value, but got []. List the values, or use a fixed parameter.",
    ),
    (
        "choice-string",
        lambda: Choice("abc"),
        "Choice(...).values: `values` must be a list, but got 'abc'. Write e.g. values: [relu, tanh] (a list keeps its order; a set does not).",
    ),
    (
        "choice-set",
        lambda: Choice({"a"}),
        "Choice(...).values: `values` must be a list, but got {'a'}. Write e.g. values: [relu, tanh] (a list keeps its order; a set does not).",
    ),
    (
        "choice-duplicate",
        lambda: Choice(["a", "b", "a"]),
        "Choice(['a', 'b', 'a']).values: choice values must be unique, but got 'a' and 'a'. Remove the duplicate.",
    ),
    (
        "choice-1-and-true",
        lambda: Choice([1, True]),
        "Choice([1, True]).values: choice values must be unique (they compare equal in Python and in Optuna), but got 1 and True. Remove the duplicate.",
    ),
    (
        "choice-1-and-1.0",
        lambda: Choice([1, 1.0]),
        "Choice([1, 1.0]).values: choice values must be unique (they compare equal in Python and in Optuna), but got 1 and 1.0. Remove the duplicate.",
    ),
    (
        "choice-0-and-false",
        lambda: Choice([False, 0.0]),
        "Choice([False, 0.0]).values: choice values must be unique (they compare equal in Python and in Optuna), but got False and 0.0. Remove the duplicate.",
    ),
    (
        "choice-nan",
        lambda: Choice([0.5, NAN]),
        "Choice([0.5, nan]).values: choice values must be JSON-safe scalars (str, int, float, bool, null), but got nan at index 1. Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
    ),
    (
        "choice-inf",
        lambda: Choice([-INF]),
        "Choice([-inf]).values: choice values must be JSON-safe scalars (str, int, float, bool, null), but got -inf at index 0. Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
    ),
    (
        "choice-list-value",
        lambda: Choice([[1, 2]]),
        "Choice([[1, 2]]).values: choice values must be JSON-safe scalars (str, int, float, bool, null), but got [1, 2] at index 0. Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
    ),
    (
        "choice-object-value",
        lambda: Choice([dataclasses]),
        "values: choice values must be JSON-safe scalars (str, int, float, bool, null), but got <module 'dataclasses'",
    ),
    (
        "choice-ordered-not-bool",
        lambda: Choice(["a"], ordered="yes"),
        "Choice(['a']).ordered: `ordered` must be true or false, but got 'yes'. Write ordered: true or false.",
    ),
    # -- Fixed
    (
        "fixed-list",
        lambda: Fixed([1]),
        "Fixed(...).value: a fixed value must be a JSON-safe scalar (str, int, float, bool, null), but got [1]. Store a name and build the object late.",
    ),
    (
        "fixed-nan",
        lambda: Fixed(NAN),
        "Fixed(...).value: a fixed value must be a JSON-safe scalar (str, int, float, bool, null), but got nan. Store a name and build the object late.",
    ),
    # -- common: when / per_layer
    (
        "when-not-a-mapping",
        lambda: Bool(when=["a"]),
        """Bool().when: `when` must map a parent parameter to the value(s) that activate this one, but got ['a']. Write e.g. when={"optimizer": ["sgd", "rmsprop"]}.""",
    ),
    (
        "when-empty-mapping",
        lambda: Bool(when={}),
        """Bool().when: `when` must map a parent parameter to the value(s) that activate this one, but got {}. Write e.g. when={"optimizer": ["sgd", "rmsprop"]}.""",
    ),
    (
        "when-no-values",
        lambda: Bool(when={"a": []}),
        "Bool().when: `when['a']` must list at least one value, but got []. List the values of 'a' that activate this parameter.",
    ),
    (
        "when-int-key",
        lambda: Bool(when={1: True}),
        "Bool().when: `when` keys must be parameter names, but got 1. Use the name of a parameter declared in the same space.",
    ),
    (
        "when-nan-value",
        lambda: Bool(when={"a": NAN}),
        "Bool().when: `when['a']` values must be JSON scalars, but got nan. Use str, int, float, bool or null values.",
    ),
    (
        "per-layer-not-a-name",
        lambda: Int(1, 2, per_layer=3),
        """Int(low=1, high=2).per_layer: `per_layer` must name an int parameter, but got 3. Write e.g. per_layer="n_layers".""",
    ),
    (
        "per-layer-empty",
        lambda: Int(1, 2, per_layer=""),
        """Int(low=1, high=2).per_layer: `per_layer` must name an int parameter, but got ''. Write e.g. per_layer="n_layers".""",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"), [(m, msg) for _, m, msg in CONSTRUCTION_RULES], ids=[c[0] for c in CONSTRUCTION_RULES]
)
def test_construction_rule(make: Callable[[], Param], message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        make()
    assert info.value.rule and info.value.path  # every message names the parameter and the rule
    if message.startswith(("Int(", "Float(", "Choice(", "Bool(", "Fixed(")):
        assert str(info.value) == message


def test_a_schema_error_is_a_value_error_and_survives_pickling() -> None:
    import pickle

    with pytest.raises(ValueError, match=r"`low <= high` must hold") as info:
        Int(3, 1)
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, SchemaError) and str(again) == str(info.value)


@pytest.mark.parametrize(
    ("param", "inside", "outside"),
    [
        (Int(1, 4), [1, 2, 4], [0, 5, 2.0, True, "2", None, 10**400]),
        (Int(0, 8, step=2), [0, 4, 8], [1, 7, 9]),
        (Int(1, 1024, log=True), [1, 1024, 17], [0, 1025]),
        (Float(0.0, 1.0), [0.0, 0.5, 1.0, 0, 1], [-0.1, 1.1, NAN, INF, True, "0.5", 10**400]),
        (Float(0.0, 0.3, step=0.1), [0.0, 0.1, 0.30000000000000004, 0.3, 0.2], [0.15, 0.31]),
        (Float(1e-12, 1e-10, log=True), [1e-12, 5e-11, 1e-10], [0.0, 5e-13, 2e-10]),  # tolerance is relative
        (Choice(["a", 1, 1.5, None]), ["a", 1, 1.5, None], [1.0, True, "b", 2, 1.50000001]),
        (Choice([True, "x"]), [True, "x"], [1, 1.0, False]),
        (Bool(), [True, False], [0, 1, "true", None]),
        (Fixed(3), [3], [3.0, True, "3"]),
    ],
    ids=[
        "int",
        "int-step",
        "int-log",
        "float",
        "float-step",
        "float-tiny-log",
        "choice",
        "choice-bool",
        "bool",
        "fixed",
    ],
)
def test_contains_keeps_json_types_apart(param: Param, inside: list[Any], outside: list[Any]) -> None:
    assert all(param.contains(v) for v in inside)
    assert not any(param.contains(v) for v in outside)


@pytest.mark.parametrize(
    ("param", "values"),
    [
        (Int(1, 4), (1, 2, 3, 4)),
        (Int(0, 8, step=4), (0, 4, 8)),
        (Int(7, 7), (7,)),
        (Float(0.0, 0.3, step=0.1), (0.0, 0.1, 0.2, 0.3)),
        (Float(0.1, 0.7, step=0.3), (0.1, 0.4, 0.7)),
        (Float(1e-13, 5e-13, step=1e-13), (1e-13, 2e-13, 3e-13, 4e-13, 5e-13)),  # tiny steps keep every point
        (Float(-1.0, -1.0, step=0.5), (-1.0,)),
        (Float(0.0, 1.0), None),
        (Choice(["b", "a"]), ("b", "a")),
        (Bool(), (False, True)),
        (Fixed("x"), ("x",)),
    ],
)
def test_enumerate_lists_every_value_in_order(param: Param, values: tuple[Any, ...] | None) -> None:
    assert param.enumerate() == values
    if values is not None:
        assert all(param.contains(v) for v in values)
        assert param.grid_values() == values


def test_grid_list_overrides_the_enumeration() -> None:
    assert Int(1, 100, grid=(1, 10, 100)).grid_values() == (1, 10, 100)
    assert Float(1e-4, 1e-1, log=True, grid=[1e-4, 1e-2]).grid_values() == (1e-4, 1e-2)  # type: ignore[arg-type]
    assert Float(0.0, 2.0, grid=(1, 2)).grid == (1.0, 2.0)  # stored as floats


def test_a_continuous_float_has_no_grid_and_says_so() -> None:
    with pytest.raises(
        SchemaError,
        match=r"a grid search needs the values of every float parameter, but got no `grid` and no `step`\. Add an explicit `grid: \[\.\.\.\]` list or a `step`",
    ):
        Float(0.0, 1.0).grid_values()


def test_huge_ranges_are_enumerated_lazily() -> None:
    big = Int(0, 10**12)
    assert big.size() == 10**12 + 1
    values = big.iter_grid_values()
    assert [next(values) for _ in range(3)] == [0, 1, 2]
    steps = Float(0.0, 1.0, step=1e-9).iter_grid_values()
    assert [next(steps) for _ in range(2)] == [0.0, 1e-9]


@pytest.mark.parametrize(
    ("param", "data"),
    [
        (Int(1, 4), {"type": "int", "low": 1, "high": 4}),
        (Int(0, 8, step=2, log=False, grid=(2, 4)), {"type": "int", "low": 0, "high": 8, "step": 2, "grid": [2, 4]}),
        (Float(1, 2), {"type": "float", "low": 1.0, "high": 2.0}),
        (Float(1e-4, 1e-1, log=True), {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}),
        (Choice(["a", 2], ordered=True), {"type": "choice", "values": ["a", 2], "ordered": True}),
        (Bool(when={"x": "a"}), {"type": "bool", "when": {"x": ["a"]}}),
        (Fixed(None, per_layer="n"), {"type": "fixed", "value": None, "per_layer": "n"}),
    ],
)
def test_to_dict_is_canonical(param: Param, data: dict[str, Any]) -> None:
    assert param.to_dict() == data
    assert [type(v) for v in param.to_dict().values()] == [type(v) for v in data.values()]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Fixed(1), Fixed(True)),
        (Fixed(1), Fixed(1.0)),
        (Fixed(0.0), Fixed(False)),
        (Choice([1, 2]), Choice([1.0, 2.0])),
        (Choice(["a", "b"]), Choice(["b", "a"])),
        (Choice(["a"]), Choice(["a"], ordered=True)),
        (Bool(when={"x": 1}), Bool(when={"x": True})),
        (Int(1, 2), Int(1, 2, log=True)),
        (Int(1, 2), Float(1, 2)),
    ],
)
def test_equality_is_type_strict(a: Param, b: Param) -> None:
    assert a != b and b != a


def test_equal_params_hash_alike_and_replace_revalidates() -> None:
    a = Int(1, 4, when={"opt": "sgd"})
    assert a == Int(1, 4, when={"opt": ["sgd"]}) and hash(a) == hash(Int(1, 4, when={"opt": ("sgd",)}))
    assert len({Fixed(1), Fixed(True), Fixed(1.0), Fixed(1)}) == 3
    assert dataclasses.replace(a, high=8) == Int(1, 8, when={"opt": "sgd"})
    with pytest.raises(SchemaError, match=r"`low <= high` must hold, but got low=1, high=0"):
        dataclasses.replace(a, high=0)


def test_params_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"cannot assign to field 'low'"):
        Int(1, 2).low = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("param", "bounds"),
    [
        (Int(1, 3), (1, 3)),
        (Int(0, 4, step=2), (0, 4)),
        (Int(-1, 3), None),
        (Choice([2, 4]), (2, 4)),
        (Choice([2, "4"]), None),
        (Choice([True, 2]), None),
        (Fixed(3), (3, 3)),
        (Bool(), None),
        (Float(1, 3), None),
    ],
)
def test_count_bounds(param: Param, bounds: tuple[int, int] | None) -> None:
    assert count_bounds(param) == bounds


def test_json_helpers() -> None:
    assert [is_json_scalar(v) for v in ("a", 1, 1.5, True, None)] == [True] * 5
    assert [is_json_scalar(v) for v in (NAN, INF, [1], {"a": 1}, b"x", (1,))] == [False] * 6
    assert same_value(1, 1) and not same_value(1, True) and not same_value(1, 1.0)
