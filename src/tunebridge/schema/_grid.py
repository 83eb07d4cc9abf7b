"""Grid enumeration: every config of a space, honouring conditions and per-layer copies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from tunebridge.errors import SchemaError
from tunebridge.schema._base import Scalar, layer_keys
from tunebridge.schema._numeric import Float

if TYPE_CHECKING:
    from tunebridge.schema._space import Space

__all__ = ["DEFAULT_MAX_GRID", "grid", "iter_grid"]

DEFAULT_MAX_GRID = 100_000


def _check_grid_values(space: Space) -> None:
    for name, p in space.items():
        if isinstance(p, Float) and p.step is None and p.grid is None:
            raise SchemaError(
                "a grid search needs the values of every float parameter",
                path=name,
                value="no `grid` and no `step`",
                fix="Add an explicit `grid: [...]` list or a `step` to this parameter.",
            )


def iter_grid(space: Space) -> Iterator[dict[str, Scalar]]:
    """Every config of the grid of ``space``; see :meth:`Space.iter_grid`.

    Lazy and iterative: a huge grid costs nothing until it is consumed, and deep spaces do not
    recurse. Every parameter's grid values are distinct, so distinct paths give distinct configs.
    """
    _check_grid_values(space)
    order = space.order
    config: dict[str, Scalar] = {}

    def advance(i: int, keys: list[str]) -> tuple[int, list[str]] | None:
        """The next (position, keys still to assign) after ``order[:i]``, or None at a complete config."""
        while not keys:
            if i == len(order):
                return None
            name = order[i]
            i += 1
            if space.active(name, config):
                keys = layer_keys(name, space[name], config)
        return i, keys

    # One frame per assigned key: (key, its remaining values, where the walk goes on after it).
    stack: list[tuple[str, Iterator[Scalar], int, list[str]]] = []

    def push(slot: tuple[int, list[str]]) -> None:
        i, keys = slot
        stack.append((keys[0], space[order[i - 1]].iter_grid_values(), i, keys[1:]))

    first = advance(0, [])
    if first is None:
        yield {}
        return
    push(first)
    end = object()
    while stack:
        key, values, i, rest = stack[-1]
        v = next(values, end)
        if v is end:
            stack.pop()
            config.pop(key, None)
            continue
        config[key] = v  # type: ignore[assignment]
        slot = advance(i, rest)
        if slot is None:
            yield dict(config)
        else:
            push(slot)


def grid(space: Space, *, max_size: int = DEFAULT_MAX_GRID) -> list[dict[str, Scalar]]:
    """The whole grid of ``space`` as a list; see :meth:`Space.grid`."""
    out: list[dict[str, Scalar]] = []
    for cfg in space.iter_grid():
        out.append(cfg)
        if len(out) > max_size:
            raise SchemaError(
                "the grid is too large",
                path="space",
                value=f"more than {max_size} configs",
                fix="Give floats a coarser `grid:` list, narrow ranges, or use random/tpe search.",
            )
    return out
