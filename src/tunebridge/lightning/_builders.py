"""Turn a spec's ``builder: module:function`` or ``model:``/``data:`` into a build function."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from tunebridge._imports import import_ref
from tunebridge.errors import SchemaError
from tunebridge.lightning._runner import Builder
from tunebridge.schema import Scalar

__all__ = ["builtin_builder", "import_builder"]


def import_builder(ref: str, *, base_dir: str | None = None) -> Builder:
    """Import ``module:function``; the spec file's folder is searched first (for recipes next to it).

    Importing the named module is the only code a spec can cause to run.
    """
    module_name, _, func_name = ref.partition(":")
    try:
        module = import_ref(module_name, base_dir=base_dir)
    except ImportError as e:
        raise SchemaError(
            "cannot import the builder's module",
            path="builder",
            value=f"{ref!r} ({e})",
            fix="Check the module name and that it is importable from the spec's folder or sys.path.",
        ) from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise SchemaError(
            "the builder's module has no such function",
            path="builder",
            value=repr(ref),
            fix=f"Define def {func_name}(config): return module, datamodule in {module_name}.",
        )
    return fn  # type: ignore[no-any-return]


def _build(model: str, data: str, max_epochs: int, seed: int, config: dict[str, Scalar]) -> tuple[Any, Any]:
    from tunebridge.lightning.builtin import build_builtin

    return build_builtin(model, data, config, max_epochs=max_epochs, seed=seed)


def builtin_builder(
    model: str, data: str, *, max_epochs: int, seed: int
) -> Callable[[dict[str, Scalar]], tuple[Any, Any]]:
    """A picklable build function for a built-in model on a built-in dataset."""
    return partial(_build, model, data, max_epochs, seed)
