"""Hypothesis properties over random valid spaces: sampling, reachability, round trips, the grid."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tunebridge.errors import SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, Scalar, Space

# Deterministic in CI (the same examples every run); widen locally with --hypothesis-seed=random.
PROPS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)


@st.composite
def int_params(draw: st.DrawFn) -> Int:
    log = draw(st.booleans())
    step = 1 if log else draw(st.integers(1, 3))
    low = draw(st.integers(1, 50) if log else st.integers(-20, 20))
    high = low + step * draw(st.integers(0, 4))
    grid = None
    if draw(st.integers(0, 4)) == 0:
        grid = tuple(draw(st.lists(st.sampled_from(range(low, high + 1, step)), min_size=1, max_size=3, unique=True)))
    return Int(low, high, step=step, log=log, grid=grid)


@st.composite
def float_params(draw: st.DrawFn) -> Float:
    if draw(st.booleans()):  # log scale, continuous
        low = draw(st.floats(1e-6, 1e3))
        return Float(low, low * draw(st.floats(1.0, 1e4)), log=True)
    low = draw(st.floats(-1e3, 1e3))
    if draw(st.booleans()):
        step = draw(st.sampled_from([0.001, 0.1, 0.25, 0.5, 1.0, 2.5]))
        return Float(low, low + step * draw(st.integers(0, 4)), step=step)
    high = low + draw(st.floats(0.0, 1e3))
    if draw(st.booleans()):
        grid = draw(st.lists(st.floats(low, high), min_size=1, max_size=3, unique=True))
        return Float(low, high, grid=tuple(grid))
    return Float(low, high)


def choice_params() -> st.SearchStrategy[Choice]:
    # unique_by Python equality: 1, 1.0 and True collide, exactly as the rule says they must.
    values = st.lists(JSON_SCALARS, min_size=1, max_size=3, unique_by=lambda v: v)
    return st.builds(lambda vs, o: Choice(vs, ordered=o), values, st.booleans())


def base_params() -> st.SearchStrategy[Param]:
    return st.one_of(int_params(), float_params(), choice_params(), st.just(Bool()), JSON_SCALARS.map(Fixed))


def _parent_values(p: Param) -> tuple[Scalar, ...] | None:
    """The values a condition may list for parent ``p`` (None: not a condition parent here)."""
    if isinstance(p, (Choice, Bool)) or (isinstance(p, Int) and p.grid is None):
        return p.enumerate()
    return None


@st.composite
def spaces(draw: st.DrawFn, max_params: int = 5) -> Space:
    """A random valid space: conditions point at earlier choice/bool/int parents (one each, so every
    parameter is reachable), per-layer parameters at earlier layer counts; declared in shuffled order."""
    params: dict[str, Param] = {}
    for i in range(draw(st.integers(1, max_params))):
        name = f"p{i}"
        if draw(st.integers(0, 5)) == 0:  # a layer count for later per-layer parameters
            params[name] = Int(draw(st.integers(0, 1)), draw(st.integers(1, 2)))
            continue
        p = draw(base_params())
        parents = [n for n, q in params.items() if q.per_layer is None and _parent_values(q)]
        when: dict[str, list[Scalar]] = {}
        if parents and draw(st.booleans()):
            parent = draw(st.sampled_from(parents))
            options = list(_parent_values(params[parent]) or ())
            when[parent] = draw(st.lists(st.sampled_from(options), min_size=1, max_size=2, unique_by=lambda v: v))
        counts = [
            n for n, q in params.items() if isinstance(q, Int) and q.per_layer is None and 0 <= q.low and q.high <= 2
        ]
        per_layer = draw(st.sampled_from(counts)) if counts and draw(st.integers(0, 2)) == 0 else None
        if per_layer in when:  # e.g. copies only when the count is 0: valid, but never present
            per_layer = None
        params[name] = type(p)(**{**_fields(p), "when": when or None, "per_layer": per_layer})
    names = draw(st.permutations(list(params)))
    return Space({n: params[n] for n in names})


def _fields(p: Param) -> dict[str, Any]:
    return {k: v for k, v in vars(p).items() if k not in ("when", "per_layer")}


def walks(space: Space, values: Callable[[str, Param], tuple[Scalar, ...]], limit: int = 3000) -> list[dict[str, Any]]:
    """Every config reachable by walking the space when each draw may return any of ``values``.

    Depth-first over the draw sequence, independently of ``Space.grid``: returns None past ``limit``.
    """
    out: list[dict[str, Any]] = []
    stack: list[list[int]] = [[]]
    while stack:
        prefix = stack.pop()
        arities: list[int] = []

        def draw(key: str, p: Param, prefix: list[int] = prefix, arities: list[int] = arities) -> Scalar:
            options = values(key, p)
            i = prefix[len(arities)] if len(arities) < len(prefix) else 0
            arities.append(len(options))
            return options[i]

        config = space.walk(draw)
        if len(arities) > len(prefix):  # branch at the first undecided draw
            stack.extend([*prefix, i] for i in range(arities[len(prefix)] - 1, -1, -1))
        else:
            out.append(config)
            if len(out) > limit:
                raise OverflowError
    return out


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def _small(space: Space, limit: int = 3000) -> bool:
    try:
        return sum(1 for _ in zip(range(limit + 1), space.iter_grid(), strict=False)) <= limit
    except SchemaError:
        return True


# -- sampling ------------------------------------------------------------------------------------


def _random_draw(rng: random.Random) -> Callable[[str, Param], Scalar]:
    def draw(key: str, p: Param) -> Scalar:
        if isinstance(p, Int):
            return rng.randrange(p.low, p.high + 1, p.step)
        if isinstance(p, Float):
            if p.step is not None:  # what Optuna does: low + k * step, clipped to high
                return min(p.low + rng.randrange(0, len(p.enumerate() or ())) * p.step, p.high)
            if p.log:
                return min(max(math.exp(rng.uniform(math.log(p.low), math.log(p.high))), p.low), p.high)
            return rng.uniform(p.low, p.high)
        values = p.enumerate() or ()
        return values[rng.randrange(len(values))]

    return draw


@PROPS
@given(space=spaces(), seed=st.integers(0, 2**32 - 1))
def test_every_sampled_config_validates(space: Space, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5):
        config = space.walk(_random_draw(rng))
        assert space.errors(config) == []
        space.validate(config)


@PROPS
@given(space=spaces())
def test_both_ends_of_every_int_range_are_reachable(space: Space) -> None:
    def ends(key: str, p: Param) -> tuple[Scalar, ...]:
        if isinstance(p, Float):
            return (p.low, p.high)
        return p.enumerate() or ()  # every int value: a condition may need any of them

    try:
        configs = walks(space, ends)
    except OverflowError:
        assume(False)
        raise
    for name, p in space.items():
        if not isinstance(p, Int):
            continue
        seen = {v for c in configs for k, v in c.items() if k == name or k.startswith(f"{name}/")}
        if p.per_layer is not None and space.max_layers(name) == 0:
            continue
        assert {p.low, p.high} <= seen, (name, p, seen)
    for config in configs:
        space.validate(config)


@PROPS
@given(space=spaces(), seed=st.integers(0, 2**32 - 1))
def test_a_config_with_a_value_out_of_range_is_refused(space: Space, seed: int) -> None:
    config = space.walk(_random_draw(random.Random(seed)))
    key = sorted(config)[seed % len(config)] if config else None
    assume(key is not None)
    assert key is not None
    config[key] = ["not", "a", "scalar"]
    problems = space.errors(config)
    assert any(key in problem for problem in problems)
    with pytest.raises(SchemaError, match=r"^config: the config does not fit the space, but got "):
        space.validate(config)


# -- round trips ---------------------------------------------------------------------------------


def _typed(obj: Any) -> Any:
    """JSON with types kept apart: 1, 1.0 and True differ, -0.0 is not 0.0."""
    if isinstance(obj, dict):
        return [(k, _typed(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_typed(v) for v in obj]
    return [type(obj).__name__, repr(obj)]


@PROPS
@given(space=spaces())
def test_yaml_round_trip_is_exact(space: Space) -> None:
    text = space.to_yaml()
    back = Space.from_yaml(text)
    assert back == space
    assert _typed(back.to_dict()) == _typed(space.to_dict())
    assert back.to_yaml() == text
    assert back.order == space.order


@PROPS
@given(space=spaces())
def test_dict_round_trip_is_exact_and_json_safe(space: Space) -> None:
    data = space.to_dict()
    assert Space.from_dict(data) == space
    assert _typed(Space.from_dict(data).to_dict()) == _typed(data)
    assert Space.from_dict(json.loads(json.dumps(data))) == space  # JSON-safe, nothing lost
    assert hash(Space.from_dict(data)) == hash(space)


# -- grid ----------------------------------------------------------------------------------------


def _gridable(space: Space) -> bool:
    return not any(isinstance(p, Float) and p.step is None and p.grid is None for _, p in space.items())


@PROPS
@given(space=spaces())
def test_grid_is_exactly_the_configs_reachable_by_walking(space: Space) -> None:
    if not _gridable(space):
        with pytest.raises(SchemaError, match=r"a grid search needs the values of every float parameter"):
            space.grid()
        return
    assume(_small(space))
    grid = space.grid()
    keys = [_key(c) for c in grid]
    assert len(keys) == len(set(keys)), "the grid has duplicates"
    for config in grid:
        space.validate(config)
    assert sorted(keys) == sorted(_key(c) for c in walks(space, lambda _, p: p.grid_values()))
    assert grid == list(space.iter_grid())  # deterministic order


@PROPS
@given(space=spaces(), max_size=st.integers(1, 20))
def test_grid_is_refused_past_max_size(space: Space, max_size: int) -> None:
    assume(_gridable(space) and _small(space))
    n = len(space.grid())
    if n > max_size:
        with pytest.raises(
            SchemaError, match=rf"^space: the grid is too large, but got more than {max_size} configs\."
        ):
            space.grid(max_size=max_size)
    else:
        assert len(space.grid(max_size=max_size)) == n


# -- malformed input -----------------------------------------------------------------------------


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    obj[path[0]] = _set(obj[path[0]], path[1:], value)
    return obj


JSON_VALUES = st.recursive(
    JSON_SCALARS | st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, -5, 0, "n_layers", "p0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5) | JSON_SCALARS, inner, max_size=3),
    max_leaves=6,
)


@settings(PROPS, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(space=spaces(), data=st.data())
@pytest.mark.slow
def test_a_mutated_space_is_either_valid_or_a_schema_error(space: Space, data: st.DataObject) -> None:
    doc = json.loads(json.dumps(space.to_dict()))
    path = data.draw(st.sampled_from(list(_leaves(doc))))
    doc = _set(doc, path, data.draw(JSON_VALUES))
    try:
        mutated = Space.from_dict(doc)
    except SchemaError as e:
        assert e.rule and str(e).startswith("space")
        return
    assert Space.from_dict(mutated.to_dict()) == mutated
    if _small(mutated, 200) and _gridable(mutated):
        for config in mutated.grid():
            mutated.validate(config)
