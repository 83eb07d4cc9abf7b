"""Classes built once per Lightning package, picklable by reference, and offered lazily at module level.

``lightning.pytorch`` and ``pytorch_lightning`` are separate class trees, and a module or datamodule must
run under a Trainer of its own package, so :mod:`tunebridge.lightning.models` and
:mod:`tunebridge.lightning.data` build their classes per package, on first use. Building on first use
also keeps Lightning (a few seconds to import) out of ``import tunebridge.lightning.models``.

Example:
    >>> resolve_namespace("pytorch_lightning")
    'pytorch_lightning'
    >>> pickle_name("MLPClassifier", "lightning.pytorch")
    'MLPClassifier__lightning_pytorch'
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from types import ModuleType, SimpleNamespace
from typing import Any

from tunebridge._compat import lightning_namespace
from tunebridge.errors import SchemaError

__all__ = ["NAMESPACES", "PackageClasses", "lazy_attribute", "pickle_name", "resolve_namespace"]

#: The Lightning packages a class can be built on.
NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def resolve_namespace(namespace: str | None, *, runs: str = "module") -> str:
    """The Lightning package ``namespace`` names; None stands for the default one.

    Args:
        namespace: ``"lightning.pytorch"``, ``"pytorch_lightning"`` or None (``lightning.pytorch`` if it is
            installed, else ``pytorch_lightning``; this imports it).
        runs: What the package's Trainer will run (``"module"``, ``"data"``), for the error's fix.

    Raises:
        SchemaError: ``namespace`` names neither package.
    """
    if namespace is None:
        return lightning_namespace().__name__
    if namespace not in NAMESPACES:
        raise SchemaError(
            f"must be one of {', '.join(map(repr, NAMESPACES))}",
            path="namespace",
            value=repr(namespace),
            fix=f"Name the Lightning package whose Trainer will run the {runs}.",
        )
    return namespace


def pickle_name(name: str, namespace: str) -> str:
    """The module-level name under which the class ``name`` built on ``namespace`` pickles."""
    return f"{name}__{namespace.replace('.', '_')}"


class PackageClasses:
    """A family of classes built on demand for each Lightning package, once, and picklable by reference.

    Pickle finds a class again by module + qualified name, and a class built inside a function has no
    such address. So each class built here is renamed :func:`pickle_name` in ``module``, whose
    ``__getattr__`` (through :func:`lazy_attribute`) builds it again in a fresh process.

    Args:
        module: ``__name__`` of the module that publishes the classes.
        build: Given a Lightning package (the ``lightning.pytorch`` or ``pytorch_lightning`` module),
            returns the attributes of that package's namespace; every class among them is published.
        runs: What the package's Trainer will run (``"module"``, ``"data"``), for the error's fix.
    """

    def __init__(self, module: str, build: Callable[[ModuleType], Mapping[str, Any]], *, runs: str) -> None:
        self.module = module
        self._build = build
        self._runs = runs
        self._built: dict[str, SimpleNamespace] = {}
        # Two threads building at once must end with the same classes: pickle checks the class it finds
        # by name is the very class of the instance. Reentrant, so a build that reaches back cannot deadlock.
        self._lock = threading.RLock()

    def __call__(self, namespace: str | None = None) -> SimpleNamespace:
        """The namespace of classes built on ``namespace`` (None for the default package), plus ``namespace``.

        Raises:
            SchemaError: ``namespace`` names neither package.
        """
        namespace = resolve_namespace(namespace, runs=self._runs)
        with self._lock:
            if namespace not in self._built:
                attributes = dict(self._build(lightning_namespace(namespace)))
                for value in attributes.values():
                    if isinstance(value, type):
                        value.__module__ = self.module
                        value.__qualname__ = pickle_name(value.__name__, namespace)
                self._built[namespace] = SimpleNamespace(namespace=namespace, **attributes)
            return self._built[namespace]

    def find(self, name: str) -> type | None:
        """The published class whose :func:`pickle_name` is ``name`` (building its package), else None."""
        base = name.partition("__")[0]
        for namespace in NAMESPACES:
            # Only a name ending in a package tag builds: probes such as `__path__` must not import Lightning.
            if base and name == pickle_name(base, namespace):
                found = getattr(self(namespace), base, None)
                return found if isinstance(found, type) else None
        return None


def lazy_attribute(classes: PackageClasses, name: str, defaults: Mapping[str, Callable[[SimpleNamespace], Any]]) -> Any:
    """What a module's ``__getattr__`` returns: a default-package attribute or a pickled class.

    Args:
        classes: The family the module publishes.
        name: The attribute asked for.
        defaults: Module attributes taken from the default package's namespace, each made from it by
            its function on first use and then stored on the module (later reads see the same object).

    Raises:
        AttributeError: ``name`` is neither a default attribute nor a published class.
    """
    if name in defaults:
        value = defaults[name](classes())
        setattr(sys.modules[classes.module], name, value)
        return value
    found = classes.find(name)
    if found is None:
        raise AttributeError(f"module {classes.module!r} has no attribute {name!r}")
    return found
