"""Checks of a space: its links when it is built (parents, layer counts, cycles), then concrete configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tunebridge._hints import did_you_mean
from tunebridge.errors import SchemaError, show
from tunebridge.schema._base import Param, layer_keys, parent_names
from tunebridge.schema._params import Float, Int, count_bounds

if TYPE_CHECKING:
    from tunebridge.schema._space import Space

__all__ = ["MAX_LAYERS", "check_links", "config_errors", "sampling_order"]

# The most copies a per-layer parameter may have: every backend unrolls them into separate parameters.
MAX_LAYERS = 1024


def _values_hint(param: Param) -> str:
    """The values a parent can take, in words, for an error's fix."""
    if isinstance(param, Int):
        step = f" on a step of {param.step}" if param.step != 1 else ""
        return f"an integer from {param.low} to {param.high}{step}"
    if isinstance(param, Float):
        return f"a number from {param.low!r} to {param.high!r}"
    values = param.enumerate() or ()
    return "one of " + show(list(values[:10]))


def check_links(params: Mapping[str, Param]) -> None:
    """Every ``when`` and ``per_layer`` names a parameter of ``params`` that can take the listed values."""
    for name, p in params.items():
        for parent, values in p.when:
            if parent == name:
                raise SchemaError(
                    "a parameter cannot be conditioned on itself",
                    path=f"{name}.when",
                    value=show(parent),
                    fix="Name another parameter.",
                )
            if parent not in params:
                hint = did_you_mean(parent, params)
                raise SchemaError(
                    "`when` names a parameter that does not exist",
                    path=f"{name}.when",
                    value=show(parent),
                    fix=hint or "Declare the parent parameter too.",
                )
            pp = params[parent]
            if pp.per_layer is not None:
                raise SchemaError(
                    "`when` cannot name a per-layer parameter",
                    path=f"{name}.when",
                    value=show(parent),
                    fix="Condition on a parameter that is not repeated.",
                )
            for v in values:
                if not pp.contains(v):
                    raise SchemaError(
                        f"`when[{parent!r}]` lists a value {parent!r} can never take",
                        path=f"{name}.when",
                        value=show(v),
                        fix=f"Use {_values_hint(pp)}.",
                    )
        if p.per_layer is not None:
            count = params.get(p.per_layer)
            if count is None:
                hint = did_you_mean(p.per_layer, params)
                raise SchemaError(
                    "`per_layer` names a parameter that does not exist",
                    path=f"{name}.per_layer",
                    value=show(p.per_layer),
                    fix=hint or "Declare the layer-count parameter.",
                )
            bounds = count_bounds(count)
            if p.per_layer == name or count.per_layer is not None or bounds is None:
                raise SchemaError(
                    "`per_layer` must name a non-repeated int parameter whose values are all >= 0",
                    path=f"{name}.per_layer",
                    value=f"{p.per_layer!r} ({count._label()})",
                    fix="Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
                )
            if bounds[1] > MAX_LAYERS:
                raise SchemaError(
                    f"a layer count must stay <= {MAX_LAYERS}",
                    path=f"{name}.per_layer",
                    value=f"{p.per_layer!r} up to {show(bounds[1])}",
                    fix=f"Lower the largest value of {p.per_layer!r}.",
                )


def sampling_order(params: Mapping[str, Param]) -> tuple[str, ...]:
    """Parents before children, otherwise declaration order; a cycle is an error.

    Iterative depth-first search: a chain of thousands of conditions must not hit the recursion limit.
    """
    order: list[str] = []
    done: set[str] = set()
    for root in params:
        if root in done:
            continue
        trail = [root]
        stack = [iter(parent_names(params[root]))]
        while stack:
            parent = next(stack[-1], None)
            if parent is None:
                stack.pop()
                name = trail.pop()
                done.add(name)
                order.append(name)
            elif parent in trail:
                cycle = [*trail[trail.index(parent) :], parent]
                raise SchemaError(
                    "conditions must not form a cycle",
                    path=f"{parent}.when",
                    value=" -> ".join(cycle),
                    fix="Remove one of the conditions in the loop.",
                )
            elif parent not in done:
                trail.append(parent)
                stack.append(iter(parent_names(params[parent])))
    return tuple(order)


def config_errors(space: Space, config: Mapping[str, Any]) -> list[str]:
    """Every problem with ``config`` as a config of ``space``, as sentences; see :meth:`Space.errors`.

    A parameter whose parent is missing or out of range is not judged: whether it should be there
    depends on a value the config does not have.
    """
    if not isinstance(config, Mapping):
        return [f"a config must be a mapping of parameter names to values, not {type(config).__name__}"]
    problems: list[str] = []
    expected: set[str] = set()
    valid: dict[str, Any] = {}  # values that passed, which decide what is active further down
    unknown: set[str] = set()  # parameters whose presence cannot be judged
    for name in space.order:
        p = space[name]
        if any(parent in unknown for parent in parent_names(p)):
            unknown.add(name)
            continue
        if not space.active(name, valid):
            continue
        keys = layer_keys(name, p, valid)
        for key in keys:
            expected.add(key)
            if key not in config:
                problems.append(f"{key!r} is missing (it is active in this config); add a value for it")
            elif not p.contains(config[key]):
                problems.append(f"{key!r} = {show(config[key])} is not a value of {p._label()}")
            else:
                valid[key] = config[key]
                continue
            if p.per_layer is None:
                unknown.add(name)
    for key in config:
        if key in expected:
            continue
        if not isinstance(key, str):
            problems.append(f"{show(key)} is not a parameter name (names are strings)")
            continue
        base, _, layer = key.partition("/")
        if base in unknown:
            continue
        owner = space[base] if base in space else None
        if owner is None:
            hint = did_you_mean(key, space.names)
            problems.append(f"{key!r} is not a parameter of this space" + (f"; {hint}" if hint else ""))
        elif layer and owner.per_layer is None:
            problems.append(f"{key!r} is not a parameter of this space ({base!r} is not repeated per layer)")
        elif not layer and owner.per_layer is not None:
            problems.append(f"{key!r} is repeated per layer; name its copies {base}/0, {base}/1, ...")
        else:
            problems.append(f"{key!r} is present but inactive in this config; remove it")
    return problems
