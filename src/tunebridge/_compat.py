"""Every optional import and version flag in one place.

Using a feature without its extra raises :class:`~tunebridge.errors.MissingDependencyError` with the
exact ``pip install`` line.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from types import ModuleType
from typing import Any

from tunebridge.errors import MissingDependencyError

__all__ = [
    "has_module",
    "lightning_namespace",
    "lightning_namespace_of",
    "require",
    "versions",
]

_EXTRAS = {
    "ray": ("ray", "ray"),
    "psycopg": ("postgres", "psycopg"),
    "psycopg2": ("postgres", "psycopg2"),
    "redis": ("redis", "redis"),
    "matplotlib": ("plot", "matplotlib"),
    "plotly": ("plot", "plotly"),
    "pytorch_lightning": ("pl", "pytorch-lightning"),
    "cmaes": ("cmaes", "cmaes"),
    "jsonargparse": ("cli", "jsonargparse"),
    "hydra": ("hydra", "hydra-core"),
    "omegaconf": ("hydra", "omegaconf"),
}


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra, dist = _EXTRAS.get(top, (top, top))
        raise MissingDependencyError(feature, extra, dist) from None


def lightning_namespace(prefer: str | None = None) -> ModuleType:
    """The Lightning trainer package to use: ``lightning.pytorch`` if installed, else ``pytorch_lightning``.

    Args:
        prefer: ``"lightning.pytorch"`` or ``"pytorch_lightning"`` to force one.
    """
    candidates = [prefer] if prefer else ["lightning.pytorch", "pytorch_lightning"]
    for name in candidates:
        if name and has_module(name.split(".")[0]):
            return importlib.import_module(name)
    raise MissingDependencyError("Lightning training", "pl", "lightning")


def lightning_namespace_of(module: Any) -> ModuleType:
    """The package (``lightning.pytorch`` or ``pytorch_lightning``) that ``module``'s class tree belongs to.

    The two packages are separate class trees: a LightningModule must run under a Trainer (and
    callbacks) of its own package, so tunebridge detects which one the user's module derives from.
    """
    for cls in type(module).__mro__:
        root = cls.__module__.split(".")[0]
        if cls.__name__ == "LightningModule" and root in ("lightning", "pytorch_lightning"):
            return importlib.import_module("lightning.pytorch" if root == "lightning" else "pytorch_lightning")
    raise TypeError(
        f"{type(module).__name__} is not a LightningModule: derive it from lightning.pytorch.LightningModule "
        "or pytorch_lightning.LightningModule."
    )


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out: list[tuple[str, str | None]] = [("python", platform.python_version())]
    for dist in ("tunebridge", "torch", "lightning", "pytorch-lightning", "optuna", "optuna-integration", "ray"):
        try:
            out.append((dist, version(dist)))
        except PackageNotFoundError:
            out.append((dist, None))
    return tuple(out)


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide what a run means (recorded on every study)."""
    return dict(_versions())
