"""Space.grid: conditions honoured, no duplicates, floats need values, huge grids refused fast."""

from __future__ import annotations

import json
import re
import time

import pytest

from tunebridge.errors import SchemaError
from tunebridge.schema import DEFAULT_MAX_GRID, Bool, Choice, Fixed, Float, Int, Space


def test_grid_honours_conditions_and_per_layer_copies() -> None:
    space = Space(
        n=Int(1, 2),
        units=Choice([8, 16], per_layer="n"),
        opt=Choice(["sgd", "adam"]),
        momentum=Float(0.5, 0.9, grid=(0.5, 0.9), when={"opt": "sgd"}),
        seed=Fixed(0),
    )
    grid = space.grid()
    assert len(grid) == (2 + 4) * (2 + 1)
    assert grid[0] == {"n": 1, "units/0": 8, "opt": "sgd", "momentum": 0.5, "seed": 0}
    assert {"n": 2, "units/0": 16, "units/1": 8, "opt": "adam", "seed": 0} in grid
    assert all(("momentum" in c) == (c["opt"] == "sgd") for c in grid)
    assert len({json.dumps(c, sort_keys=True) for c in grid}) == len(grid)
    for config in grid:
        space.validate(config)


@pytest.mark.parametrize(
    ("param", "values"),
    [
        (Int(0, 6, step=3), [0, 3, 6]),
        (Int(1, 100, log=True, grid=(1, 10, 100)), [1, 10, 100]),
        (Float(0.0, 0.3, step=0.1), [0.0, 0.1, 0.2, 0.3]),
        (Float(1e-4, 1e-1, log=True, grid=(1e-4, 1e-3)), [1e-4, 1e-3]),
        (Choice([1, "1", 1.5, None]), [1, "1", 1.5, None]),
        (Bool(), [False, True]),
        (Fixed("x"), ["x"]),
    ],
)
def test_each_kind_contributes_its_grid_values(param: object, values: list[object]) -> None:
    assert [c["x"] for c in Space(x=param).grid()] == values  # type: ignore[arg-type]


def test_a_float_without_step_or_grid_list_says_what_to_add() -> None:
    space = Space(n=Int(1, 2), lr=Float(1e-4, 1e-1, log=True, when={"n": 2}))
    message = "lr: a grid search needs the values of every float parameter, but got no `grid` and no `step`. Add an explicit `grid: [...]` list or a `step` to this parameter."
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        space.grid()
    assert str(info.value) == message
    with pytest.raises(SchemaError, match=re.escape(message)):
        next(space.iter_grid())


@pytest.mark.parametrize(
    "space",
    [
        Space(a=Int(0, 10**12)),
        Space(a=Float(0.0, 1.0, step=1e-9)),
        Space(a=Int(0, 999), b=Int(0, 999)),
        Space(n=Int(0, 1024), u=Bool(per_layer="n")),
    ],
    ids=["huge-int", "tiny-float-step", "product", "per-layer"],
)
def test_huge_grids_are_refused_quickly(space: Space) -> None:
    start = time.perf_counter()
    with pytest.raises(
        SchemaError,
        match=re.escape(
            f"space: the grid is too large, but got more than {DEFAULT_MAX_GRID} configs. Give floats a coarser `grid:` list, narrow ranges, or use random/tpe search."
        ),
    ):
        space.grid()
    with pytest.raises(SchemaError, match=r"^space: the grid is too large, but got more than 10 configs\."):
        space.grid(max_size=10)
    assert time.perf_counter() - start < 5
    assert next(space.iter_grid())  # lazy: the first config comes at once


def test_grid_of_exactly_max_size_is_allowed() -> None:
    space = Space(a=Int(1, 10), b=Bool())
    assert len(space.grid(max_size=20)) == 20
    with pytest.raises(SchemaError, match=r"more than 19 configs"):
        space.grid(max_size=19)


def test_grid_of_an_empty_space_is_one_empty_config() -> None:
    assert Space().grid() == [{}]


def test_grid_with_a_zero_layer_count_has_no_copies() -> None:
    space = Space(n=Int(0, 1), u=Bool(per_layer="n"))
    assert space.grid() == [{"n": 0}, {"n": 1, "u/0": False}, {"n": 1, "u/0": True}]


def test_grid_values_for_float_steps_are_the_ones_a_person_writes() -> None:
    assert [c["x"] for c in Space(x=Float(0.1, 0.7, step=0.1)).grid()] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
