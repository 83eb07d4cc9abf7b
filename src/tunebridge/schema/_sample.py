"""Which backend draws :meth:`Space.sample`'s configs: checked here, loaded on call.

The schema stays standard library only and names no backend module: each backend's draw is registered
with :func:`register_sampler` by the ``tunebridge`` package (a loader that imports it when a sample is
asked for, never when the schema is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunebridge._rules import check_backend, is_int_at_least
from tunebridge._vocab import BACKENDS
from tunebridge.errors import SchemaError, show

__all__ = ["backend_sampler", "register_sampler"]

#: backend name -> a loader returning its ``sample_configs(space, n, *, seed)``.
_SAMPLERS: dict[str, Callable[[], Any]] = {}


def register_sampler(backend: str, loader: Callable[[], Any]) -> None:
    """Make ``loader()`` (which imports a backend's ``sample_configs``) draw ``Space.sample(backend=...)``."""
    _SAMPLERS[backend] = loader


def backend_sampler(n: object, seed: object, backend: object) -> Any:
    """Check :meth:`Space.sample`'s arguments; the backend's ``sample_configs``, imported by name."""
    if not is_int_at_least(n, 0):
        raise SchemaError("`n` must be an int >= 0", path="n", value=show(n), fix="Pass how many configs, e.g. 5.")
    if seed is not None and not (is_int_at_least(seed, 0) and seed < 2**32):
        raise SchemaError(
            "`seed` must be an int in [0, 2**32 - 1] or None",
            path="seed",
            value=show(seed),
            fix="Pass the run's seed (a spec's `seed:`), or None for fresh draws.",
        )
    check_backend(backend, rule="unknown backend", fix=f"Use one of: {', '.join(BACKENDS)}.")
    if backend not in _SAMPLERS:  # pragma: no cover - the tunebridge package registers every backend
        raise SchemaError("no sampler is registered for this backend", path="backend", value=show(backend))
    return _SAMPLERS[str(backend)]()
