"""A named, ordered set of parameters with conditions and per-layer repetition."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tunebridge.errors import SchemaError
from tunebridge.schema._codec import load_yaml, param_from_dict, suggest
from tunebridge.schema._params import Fixed, Param, Scalar, same_value

__all__ = ["DEFAULT_MAX_GRID", "Space"]

DEFAULT_MAX_GRID = 100_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

Draw = Callable[[str, Param], Scalar]


def _count_values(param: Param) -> tuple[int, ...] | None:
    """The layer counts a ``per_layer`` parent can take, or None if it is not a count."""
    values = param.enumerate()
    if values is None or not values:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    return tuple(values)  # type: ignore[arg-type]


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
        merged: dict[str, Param] = {}
        for source in (params or {}, kwargs):
            for name, p in source.items():
                if name in merged:
                    raise SchemaError("parameter names must be unique", path=str(name), value=repr(name),
                                      fix="Rename one of them.")
                merged[name] = p
        for name, p in merged.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise SchemaError(
                    "parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-'",
                    path=str(name), value=repr(name), fix="Rename it ('/' is reserved for per-layer copies).",
                )
            if not isinstance(p, Param):
                raise SchemaError("a parameter must be Int, Float, Choice, Bool or Fixed", path=name,
                                  value=type(p).__name__, fix="Wrap the value, e.g. Fixed(3) or Choice([...]).")
        self._params = merged
        self._check_links()
        self._order = self._topological_order()

    # -- construction checks -------------------------------------------------------------------
    def _check_links(self) -> None:
        for name, p in self._params.items():
            for parent, values in p.when:
                if parent == name:
                    raise SchemaError("a parameter cannot be conditioned on itself", path=f"{name}.when",
                                      value=repr(parent), fix="Name another parameter.")
                if parent not in self._params:
                    hint = suggest(parent, self._params)
                    raise SchemaError("`when` names a parameter that does not exist", path=f"{name}.when",
                                      value=repr(parent), fix=hint or "Declare the parent parameter too.")
                pp = self._params[parent]
                if pp.per_layer is not None:
                    raise SchemaError("`when` cannot name a per-layer parameter", path=f"{name}.when",
                                      value=repr(parent), fix="Condition on a parameter that is not repeated.")
                reachable = pp.enumerate()
                for v in values:
                    ok = pp.contains(v) if reachable is None else any(same_value(v, r) for r in reachable)
                    if not ok:
                        shown = "a continuous range" if reachable is None else list(reachable)[:10]
                        raise SchemaError(
                            f"`when[{parent!r}]` lists a value {parent!r} can never take", path=f"{name}.when",
                            value=repr(v), fix=f"Use one of {shown}.",
                        )
            if p.per_layer is not None:
                count = self._params.get(p.per_layer)
                if count is None:
                    hint = suggest(p.per_layer, self._params)
                    raise SchemaError("`per_layer` names a parameter that does not exist", path=f"{name}.per_layer",
                                      value=repr(p.per_layer), fix=hint or "Declare the layer-count parameter.")
                if p.per_layer == name or count.per_layer is not None or _count_values(count) is None:
                    raise SchemaError(
                        "`per_layer` must name a non-repeated int parameter whose values are all >= 0",
                        path=f"{name}.per_layer", value=f"{p.per_layer!r} ({type(count).__name__})",
                        fix="Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
                    )

    def _parents(self, name: str) -> list[str]:
        p = self._params[name]
        out = [parent for parent, _ in p.when]
        if p.per_layer is not None:
            out.append(p.per_layer)
        return out

    def _topological_order(self) -> tuple[str, ...]:
        """Parents before children, otherwise declaration order; a cycle is an error."""
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = trail[trail.index(name):] + [name]
                raise SchemaError("conditions must not form a cycle", path=f"{name}.when",
                                  value=" -> ".join(cycle), fix="Remove one of the conditions in the loop.")
            state[name] = 1
            for parent in self._parents(name):
                visit(parent, [*trail, name])
            state[name] = 2
            order.append(name)

        for name in self._params:
            visit(name, [])
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
        assert p.per_layer is not None
        return max(_count_values(self._params[p.per_layer]) or (0,))

    # -- composition ---------------------------------------------------------------------------
    def __add__(self, other: Space) -> Space:
        """Union of two spaces; a name in both must have the same definition."""
        merged = dict(self._params)
        for name, p in other._params.items():
            if name in merged and merged[name] != p:
                raise SchemaError("both spaces define this parameter differently", path=name,
                                  value=f"{merged[name]!r} vs {p!r}", fix="Use .replace() or .without() first.")
            merged[name] = p
        return Space(merged)

    def replace(self, **params: Param) -> Space:
        """A copy with some parameters replaced or added (added ones go last)."""
        return Space({**self._params, **params})

    def without(self, *names: str) -> Space:
        """A copy without the named parameters (their dependents must go too)."""
        for n in names:
            if n not in self._params:
                raise SchemaError("cannot remove a parameter that does not exist", path=n, value=repr(n),
                                  fix=suggest(n, self._params) or "Check the name.")
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
            keys = [name] if p.per_layer is None else [f"{name}/{i}" for i in range(int(config[p.per_layer]))]  # type: ignore[arg-type]
            for key in keys:
                config[key] = p.value if isinstance(p, Fixed) else draw(key, p)
        return config

    def errors(self, config: Mapping[str, Any]) -> list[str]:
        """Every problem with a concrete config, as sentences (empty when it is valid)."""
        problems: list[str] = []
        expected: dict[str, Param] = {}
        view: dict[str, Any] = {}
        for name in self._order:
            p = self._params[name]
            if not self.active(name, view):
                continue
            if p.per_layer is None:
                keys = [name]
            else:
                n = view.get(p.per_layer)
                keys = [f"{name}/{i}" for i in range(n)] if isinstance(n, int) and not isinstance(n, bool) else []
            for key in keys:
                expected[key] = p
                if key in config:
                    view[key] = config[key]
        for key, p in expected.items():
            if key not in config:
                problems.append(f"{key!r} is missing (it is active in this config); add a value for it")
            elif not p.contains(config[key]):
                problems.append(f"{key!r} = {config[key]!r} is not a value of {p._label()}")
        for key in config:
            if key not in expected:
                base = key.split("/", 1)[0]
                if base in self._params:
                    problems.append(f"{key!r} is present but inactive in this config; remove it")
                else:
                    hint = suggest(key, self._params)
                    problems.append(f"{key!r} is not a parameter of this space" + (f"; {hint}" if hint else ""))
        return problems

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check a concrete config (e.g. a hand-written one).

        Raises:
            SchemaError: Listing every missing, extra, inactive or out-of-range value.
        """
        problems = self.errors(config)
        if problems:
            raise SchemaError("the config does not fit the space", path="config", value="; ".join(problems),
                              fix="Fix the listed values (tunebridge check SPEC shows each parameter's range).")

    # -- grid ----------------------------------------------------------------------------------
    def iter_grid(self) -> Iterator[dict[str, Scalar]]:
        """Every config of the grid, honouring conditions, in a deterministic order, without duplicates."""
        order = self._order
        seen: set[str] = set()

        def expand(i: int, config: dict[str, Scalar]) -> Iterator[dict[str, Scalar]]:
            if i == len(order):
                yield dict(config)
                return
            name = order[i]
            p = self._params[name]
            if not self.active(name, config):
                yield from expand(i + 1, config)
                return
            keys = [name] if p.per_layer is None else [f"{name}/{j}" for j in range(int(config[p.per_layer]))]  # type: ignore[arg-type]
            yield from assign(keys, 0, p, i, config)

        def assign(keys: list[str], k: int, p: Param, i: int, config: dict[str, Scalar]) -> Iterator[dict[str, Scalar]]:
            if k == len(keys):
                yield from expand(i + 1, config)
                return
            for v in p.grid_values():
                config[keys[k]] = v
                yield from assign(keys, k + 1, p, i, config)
            del config[keys[k]]

        for cfg in expand(0, {}):
            key = json.dumps(cfg, sort_keys=True)
            if key not in seen:
                seen.add(key)
                yield cfg

    def grid(self, *, max_size: int = DEFAULT_MAX_GRID) -> list[dict[str, Scalar]]:
        """The whole grid as a list.

        Raises:
            SchemaError: A float has neither ``step`` nor ``grid``, or the grid exceeds ``max_size``.
        """
        out: list[dict[str, Scalar]] = []
        for cfg in self.iter_grid():
            out.append(cfg)
            if len(out) > max_size:
                raise SchemaError("the grid is too large", path="space", value=f"more than {max_size} configs",
                                  fix="Give floats a coarser `grid:` list, narrow ranges, or use random/tpe search.")
        return out

    # -- dict / YAML ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Canonical dict form; ``Space.from_dict(space.to_dict()) == space``."""
        return {name: p.to_dict() for name, p in self._params.items()}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "space") -> Space:
        """Build a space from its dict form (as found under ``space:`` in a spec file)."""
        if not isinstance(data, Mapping):
            raise SchemaError("a space must be a mapping of parameter names to definitions", path=where,
                              value=type(data).__name__, fix="Write e.g. `lr: {type: float, low: 1e-4, high: 0.1, log: true}`.")
        if not data:
            raise SchemaError("a space needs at least one parameter", path=where, value="{}",
                              fix="Add parameters or use a preset.")
        params: dict[str, Param] = {}
        for name, body in data.items():
            if not isinstance(name, str):
                raise SchemaError("parameter names must be strings", path=where, value=repr(name),
                                  fix="Quote the name.")
            try:
                params[name] = param_from_dict(name, body)
            except SchemaError as e:
                raise e.at(where) from None
        try:
            return cls(params)
        except SchemaError as e:
            raise e.at(where) from None

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> Space:
        """Build a space from YAML text or from a ``.yaml`` file path (``os.PathLike``)."""
        where = "space"
        if isinstance(source, os.PathLike):
            where = str(source)
            text: str | bytes = Path(source).read_bytes()
        else:
            text = source
        data = load_yaml(text, where=where)
        if data is None:
            raise SchemaError("the document is empty", path=where, value="nothing", fix="Add parameters.")
        if isinstance(data, Mapping) and "space" in data and len(data) == 1:
            data = data["space"]
        return cls.from_dict(data, where=where)

