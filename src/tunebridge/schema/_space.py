"""A named, ordered set of parameters with conditions and per-layer repetition."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tunebridge.errors import SchemaError, show
from tunebridge.schema._codec import dump_yaml, load_yaml, param_from_dict, suggest
from tunebridge.schema._params import Fixed, Float, Int, Param, Scalar, count_bounds, same_value

__all__ = ["DEFAULT_MAX_GRID", "Space"]

DEFAULT_MAX_GRID = 100_000
# The most copies a per-layer parameter may have: every backend unrolls them into separate parameters.
MAX_LAYERS = 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

Draw = Callable[[str, Param], Scalar]


def _values_hint(param: Param) -> str:
    """The values a parent can take, in words, for an error's fix."""
    if isinstance(param, Int):
        step = f" on a step of {param.step}" if param.step != 1 else ""
        return f"an integer from {param.low} to {param.high}{step}"
    if isinstance(param, Float):
        return f"a number from {param.low!r} to {param.high!r}"
    values = param.enumerate() or ()
    return "one of " + show(list(values[:10]))


def _copies(config: Mapping[str, Any], count: str) -> int:
    """How many per-layer copies ``config`` asks for; an absent (inactive) count means none."""
    n = config.get(count)
    return 0 if n is None else int(n)


class Space:
    """Named parameters in order; the single source of meaning every backend compiles from.

    Args:
        params: Mapping of name to parameter (order is kept).
        **kwargs: More parameters by keyword.

    Raises:
        SchemaError: A name is invalid, a condition names a missing parameter or a value its parent
            can never take, conditions form a cycle, or ``per_layer`` names a non-int parameter.

    Example:
        >>> from tunebridge.schema import Choice, Float, Int, Space
        >>> space = Space(
        ...     n_layers=Int(1, 3),
        ...     units=Int(16, 128, log=True, per_layer="n_layers"),
        ...     optimizer=Choice(["sgd", "adam"]),
        ...     momentum=Float(0.0, 0.99, when={"optimizer": "sgd"}),
        ... )
        >>> sorted(space.names)
        ['momentum', 'n_layers', 'optimizer', 'units']
    """

    def __init__(self, params: Mapping[str, Param] | None = None, /, **kwargs: Param) -> None:
        if params is not None and not isinstance(params, Mapping):
            raise SchemaError(
                "a space takes a mapping of names to parameters",
                path="space",
                value=type(params).__name__,
                fix="Write Space({'lr': Float(...)}) or Space(lr=Float(...)).",
            )
        merged: dict[str, Param] = {}
        for source in (params or {}, kwargs):
            for name, p in source.items():
                if name in merged:
                    raise SchemaError(
                        "parameter names must be unique", path=str(name), value=show(name), fix="Rename one of them."
                    )
                merged[name] = p
        for name, p in merged.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise SchemaError(
                    "parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-'",
                    value=show(name),
                    fix="Rename it ('/' is reserved for per-layer copies).",
                )
            if not isinstance(p, Param):
                raise SchemaError(
                    "a parameter must be Int, Float, Choice, Bool or Fixed",
                    path=name,
                    value=type(p).__name__,
                    fix="Wrap the value, e.g. Fixed(3) or Choice([...]).",
                )
        self._params = merged
        self._check_links()
        self._order = self._topological_order()

    # -- construction checks -------------------------------------------------------------------
    def _check_links(self) -> None:
        for name, p in self._params.items():
            for parent, values in p.when:
                if parent == name:
                    raise SchemaError(
                        "a parameter cannot be conditioned on itself",
                        path=f"{name}.when",
                        value=show(parent),
                        fix="Name another parameter.",
                    )
                if parent not in self._params:
                    hint = suggest(parent, self._params)
                    raise SchemaError(
                        "`when` names a parameter that does not exist",
                        path=f"{name}.when",
                        value=show(parent),
                        fix=hint or "Declare the parent parameter too.",
                    )
                pp = self._params[parent]
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
                count = self._params.get(p.per_layer)
                if count is None:
                    hint = suggest(p.per_layer, self._params)
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

    def _parents(self, name: str) -> list[str]:
        p = self._params[name]
        out = [parent for parent, _ in p.when]
        if p.per_layer is not None:
            out.append(p.per_layer)
        return out

    def _topological_order(self) -> tuple[str, ...]:
        """Parents before children, otherwise declaration order; a cycle is an error.

        Iterative depth-first search: a chain of thousands of conditions must not hit the recursion limit.
        """
        order: list[str] = []
        done: set[str] = set()
        for root in self._params:
            if root in done:
                continue
            trail = [root]
            stack = [iter(self._parents(root))]
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
                    stack.append(iter(self._parents(parent)))
        return tuple(order)

    # -- introspection -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in declaration order."""
        return tuple(self._params)

    @property
    def order(self) -> tuple[str, ...]:
        """Parameter names in sampling order (every parent before its children)."""
        return self._order

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def items(self) -> list[tuple[str, Param]]:
        return list(self._params.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and list(self._params.items()) == list(other._params.items())

    def __hash__(self) -> int:
        return hash(tuple(self._params.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"Space({inner})"

    def is_conditional(self) -> bool:
        """True when some parameter has a condition or is repeated per layer."""
        return any(p.when or p.per_layer for p in self._params.values())

    def always_active(self, name: str) -> bool:
        """True when ``name`` appears in every config."""
        p = self._params[name]
        return not p.when and p.per_layer is None

    def max_layers(self, name: str) -> int:
        """Largest number of copies a per-layer parameter can have."""
        p = self._params[name]
        if p.per_layer is None:
            raise ValueError(f"{name!r} is not a per-layer parameter")
        bounds = count_bounds(self._params[p.per_layer])
        return 0 if bounds is None else bounds[1]

    # -- composition ---------------------------------------------------------------------------
    def __add__(self, other: Space) -> Space:
        """Union of two spaces; a name in both must have the same definition."""
        merged = dict(self._params)
        for name, p in other._params.items():
            if name in merged and merged[name] != p:
                raise SchemaError(
                    "both spaces define this parameter differently",
                    path=name,
                    value=f"{show(merged[name].to_dict())} vs {show(p.to_dict())}",
                    fix="Use .replace() or .without() first.",
                )
            merged[name] = p
        return Space(merged)

    def replace(self, **params: Param) -> Space:
        """A copy with some parameters replaced or added (added ones go last).

        A replaced parent that can no longer take some value a dependent's ``when`` lists narrows that
        dependent's condition to the values it can still take; a dependent left with none can never be
        active and goes, with everything that depends on it. Either way the configs keep their meaning:
        ``presets.training().replace(optimizer=Choice(["adam", "momentum"]))`` keeps ``momentum`` for
        ``optimizer == "momentum"`` only. Parameters passed here are taken as given.
        """
        merged = {**self._params, **params}
        gone: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, p in list(merged.items()):
                if name in params:
                    continue
                if p.per_layer in gone or any(parent in gone for parent, _ in p.when):
                    gone.add(name)
                    del merged[name]
                    changed = True
                    continue
                when = tuple(
                    (parent, tuple(v for v in values if parent not in merged or merged[parent].contains(v)))
                    for parent, values in p.when
                )
                if any(not values for _, values in when):
                    gone.add(name)
                    del merged[name]
                    changed = True
                elif when != p.when:
                    merged[name] = dataclasses.replace(p, when=when)
                    changed = True
        return Space(merged)

    def without(self, *names: str) -> Space:
        """A copy without the named parameters; parameters that depend on them must go too."""
        for n in names:
            if n not in self._params:
                known = ", ".join(list(self._params)[:10]) + (", ..." if len(self._params) > 10 else "")
                raise SchemaError(
                    "cannot remove a parameter that does not exist",
                    path=show(n) if not isinstance(n, str) else n,
                    value=show(n),
                    fix=suggest(n, self._params) or f"Known parameters: {known}.",
                )
        for name in self._params:
            if name in names:
                continue
            for parent in self._parents(name):
                if parent in names:
                    raise SchemaError(
                        f"cannot remove {parent!r} alone: {name!r} depends on it",
                        path=name,
                        value=show(parent),
                        fix=f"Remove {name!r} too, or replace it with a version that does not refer to {parent!r}.",
                    )
        return Space({k: v for k, v in self._params.items() if k not in names})

    # -- sampling ------------------------------------------------------------------------------
    def active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether ``name`` is active given the values sampled so far (parents come first)."""
        for parent, values in self._params[name].when:
            if parent not in config or not any(same_value(config[parent], v) for v in values):
                return False
        return True

    def walk(self, draw: Draw) -> dict[str, Scalar]:
        """Define-by-run sampling: call ``draw(name, param)`` for every active parameter in order.

        This loop *is* the meaning of a space: every backend samples through it, so conditions and
        per-layer copies mean the same everywhere. ``Fixed`` values are filled in without a draw.
        """
        config: dict[str, Scalar] = {}
        for name in self._order:
            p = self._params[name]
            if not self.active(name, config):
                continue
            keys = [name] if p.per_layer is None else [f"{name}/{i}" for i in range(_copies(config, p.per_layer))]
            for key in keys:
                config[key] = p.value if isinstance(p, Fixed) else draw(key, p)
        return config

    def errors(self, config: Mapping[str, Any]) -> list[str]:
        """Every problem with a concrete config, as sentences (empty when it is valid).

        A parameter whose parent is missing or out of range is not judged: whether it should be there
        depends on a value the config does not have.
        """
        if not isinstance(config, Mapping):
            return [f"a config must be a mapping of parameter names to values, not {type(config).__name__}"]
        problems: list[str] = []
        expected: set[str] = set()
        valid: dict[str, Any] = {}  # values that passed, which decide what is active further down
        unknown: set[str] = set()  # parameters whose presence cannot be judged
        for name in self._order:
            p = self._params[name]
            if any(parent in unknown for parent in self._parents(name)):
                unknown.add(name)
                continue
            if not self.active(name, valid):
                continue
            keys = [name] if p.per_layer is None else [f"{name}/{i}" for i in range(_copies(valid, p.per_layer))]
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
            owner = self._params.get(base)
            if owner is None:
                hint = suggest(key, self._params)
                problems.append(f"{key!r} is not a parameter of this space" + (f"; {hint}" if hint else ""))
            elif layer and owner.per_layer is None:
                problems.append(f"{key!r} is not a parameter of this space ({base!r} is not repeated per layer)")
            elif not layer and owner.per_layer is not None:
                problems.append(f"{key!r} is repeated per layer; name its copies {base}/0, {base}/1, ...")
            else:
                problems.append(f"{key!r} is present but inactive in this config; remove it")
        return problems

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check a concrete config (e.g. a hand-written one).

        Raises:
            SchemaError: Listing every missing, extra, inactive or out-of-range value.
        """
        problems = self.errors(config)
        if problems:
            raise SchemaError(
                "the config does not fit the space",
                path="config",
                value="; ".join(problems),
                fix="Fix the listed values (tunebridge check SPEC shows each parameter's range).",
            )

    # -- grid ----------------------------------------------------------------------------------
    def _check_grid_values(self) -> None:
        for name, p in self._params.items():
            if isinstance(p, Float) and p.step is None and p.grid is None:
                raise SchemaError(
                    "a grid search needs the values of every float parameter",
                    path=name,
                    value="no `grid` and no `step`",
                    fix="Add an explicit `grid: [...]` list or a `step` to this parameter.",
                )

    def iter_grid(self) -> Iterator[dict[str, Scalar]]:
        """Every config of the grid, honouring conditions, in a deterministic order, without duplicates.

        Lazy and iterative: a huge grid costs nothing until it is consumed, and deep spaces do not
        recurse. Every parameter's grid values are distinct, so distinct paths give distinct configs.

        Raises:
            SchemaError: A float has neither ``step`` nor ``grid``.
        """
        self._check_grid_values()
        order = self._order
        config: dict[str, Scalar] = {}

        def advance(i: int, keys: list[str]) -> tuple[int, list[str]] | None:
            """The next (position, keys still to assign) after ``order[:i]``, or None at a complete config."""
            while not keys:
                if i == len(order):
                    return None
                name = order[i]
                i += 1
                p = self._params[name]
                if self.active(name, config):
                    keys = (
                        [name] if p.per_layer is None else [f"{name}/{j}" for j in range(_copies(config, p.per_layer))]
                    )
            return i, keys

        # One frame per assigned key: (key, its remaining values, where the walk goes on after it).
        stack: list[tuple[str, Iterator[Scalar], int, list[str]]] = []

        def push(slot: tuple[int, list[str]]) -> None:
            i, keys = slot
            stack.append((keys[0], self._params[order[i - 1]].iter_grid_values(), i, keys[1:]))

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

    def grid(self, *, max_size: int = DEFAULT_MAX_GRID) -> list[dict[str, Scalar]]:
        """The whole grid as a list.

        Raises:
            SchemaError: A float has neither ``step`` nor ``grid``, or the grid exceeds ``max_size``.
        """
        out: list[dict[str, Scalar]] = []
        for cfg in self.iter_grid():
            out.append(cfg)
            if len(out) > max_size:
                raise SchemaError(
                    "the grid is too large",
                    path="space",
                    value=f"more than {max_size} configs",
                    fix="Give floats a coarser `grid:` list, narrow ranges, or use random/tpe search.",
                )
        return out

    # -- dict / YAML ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Canonical dict form; ``Space.from_dict(space.to_dict()) == space``."""
        return {name: p.to_dict() for name, p in self._params.items()}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "space") -> Space:
        """Build a space from its dict form (as found under ``space:`` in a spec file)."""
        if not isinstance(data, Mapping):
            raise SchemaError(
                "a space must be a mapping of parameter names to definitions",
                path=where,
                value=type(data).__name__,
                fix="Write e.g. `lr: {type: float, low: 1e-4, high: 0.1, log: true}`.",
            )
        if not data:
            raise SchemaError(
                "a space needs at least one parameter", path=where, value="{}", fix="Add parameters or use a preset."
            )
        params: dict[str, Param] = {}
        for name, body in data.items():
            if not isinstance(name, str):
                raise SchemaError(
                    "parameter names must be strings", path=where, value=show(name), fix="Quote the name."
                )
            try:
                params[name] = param_from_dict(name, body)
            except SchemaError as e:
                raise e.at(where) from None
        try:
            return cls(params)
        except SchemaError as e:
            raise e.at(where) from None

    def to_yaml(self) -> str:
        """YAML text; ``Space.from_yaml(space.to_yaml()) == space``."""
        return dump_yaml(self.to_dict())

    @classmethod
    def from_yaml(cls, source: str | bytes | os.PathLike[str]) -> Space:
        """Build a space from YAML text or from a ``.yaml`` file path (``os.PathLike``).

        Raises:
            SchemaError: The file cannot be read, the YAML is malformed, or the space is invalid.
        """
        where = "space"
        if isinstance(source, os.PathLike):
            where = os.fspath(source)
            try:
                text: str | bytes = Path(source).read_bytes()
            except OSError as e:
                raise SchemaError(
                    "cannot read the space file",
                    path=where,
                    value=e.strerror or type(e).__name__,
                    fix="Check the path.",
                ) from None
        else:
            text = source
        data = load_yaml(text, where=where)
        if data is None:
            raise SchemaError("the document is empty", path=where, value="nothing", fix="Add parameters.")
        if isinstance(data, Mapping) and "space" in data and len(data) == 1:
            data = data["space"]
        return cls.from_dict(data, where=where)
