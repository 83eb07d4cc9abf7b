"""A named, ordered set of parameters with conditions and per-layer repetition.

Checks of its links and of configs live in ``_validate``, grid enumeration in ``_grid``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tunebridge._hints import did_you_mean
from tunebridge.errors import SchemaError, show
from tunebridge.schema import _grid, _validate
from tunebridge.schema._base import layer_keys, parent_names
from tunebridge.schema._codec import dump_yaml, load_yaml, param_from_dict
from tunebridge.schema._grid import DEFAULT_MAX_GRID
from tunebridge.schema._params import Fixed, Param, Scalar, count_bounds, same_value
from tunebridge.schema._sample import backend_sampler

__all__ = ["DEFAULT_MAX_GRID", "Space"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

Draw = Callable[[str, Param], Scalar]


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
        _validate.check_links(merged)
        self._order = _validate.sampling_order(merged)

    def _parents(self, name: str) -> list[str]:
        return parent_names(self._params[name])

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
                    fix=did_you_mean(n, self._params) or f"Known parameters: {known}.",
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
            for key in layer_keys(name, p, config):
                config[key] = p.value if isinstance(p, Fixed) else draw(key, p)
        return config

    def errors(self, config: Mapping[str, Any]) -> list[str]:
        """Every problem with a concrete config, as sentences (empty when it is valid).

        A parameter whose parent is missing or out of range is not judged: whether it should be there
        depends on a value the config does not have.
        """
        return _validate.config_errors(self, config)

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

    def sample(self, n: int, *, seed: int | None = 0, backend: str = "optuna") -> list[dict[str, Scalar]]:
        """``n`` configs exactly as ``backend``'s random search (``search: random``) draws them, no training.

        Args:
            n: How many configs (0 gives ``[]``).
            seed: The search's seed (a spec's ``seed:``), in ``[0, 2**32 - 1]``; None draws anew each call.
            backend: ``"optuna"`` or ``"ray"``. Ray draws a flat unconditional space with its own domains
                and every other space as Optuna does.

        Returns:
            The configs of a fresh run's first ``n`` trials, in order: active parameters, fixed values.

        Raises:
            SchemaError: ``n``, ``seed`` or ``backend`` is invalid.
            ConversionError: The backend cannot express the space.
            MissingDependencyError: ``backend="ray"`` without Ray installed.

        Example:
            >>> from tunebridge.schema import Choice, Float, Space
            >>> space = Space(lr=Float(1e-4, 1e-1, log=True), optimizer=Choice(["sgd", "adam"]))
            >>> configs = space.sample(3, seed=0, backend="optuna")
            >>> [sorted(c) for c in configs]
            [['lr', 'optimizer'], ['lr', 'optimizer'], ['lr', 'optimizer']]
            >>> configs == space.sample(3, seed=0) and all(not space.errors(c) for c in configs)
            True
        """
        # The schema stays standard library only: the backend's draw is loaded now (see schema/_sample.py).
        configs: list[dict[str, Scalar]] = backend_sampler(n, seed, backend)(self, n, seed=seed)
        return configs

    # -- grid ----------------------------------------------------------------------------------
    def iter_grid(self) -> Iterator[dict[str, Scalar]]:
        """Every config of the grid, honouring conditions, in a deterministic order, without duplicates.

        Lazy and iterative: a huge grid costs nothing until it is consumed, and deep spaces do not
        recurse. Every parameter's grid values are distinct, so distinct paths give distinct configs.

        Raises:
            SchemaError: A float has neither ``step`` nor ``grid``.
        """
        return _grid.iter_grid(self)

    def grid(self, *, max_size: int = DEFAULT_MAX_GRID) -> list[dict[str, Scalar]]:
        """The whole grid as a list.

        Raises:
            SchemaError: A float has neither ``step`` nor ``grid``, or the grid exceeds ``max_size``.
        """
        return _grid.grid(self, max_size=max_size)

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
