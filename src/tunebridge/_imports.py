"""What a spec or a user names as ``module:attr``, imported; the one place that puts a spec's folder on ``sys.path``.

A spec's ``builder:``, ``callbacks:`` and ``lightning_cli:`` modules are imported from the spec's folder
first, as ``python script.py`` imports from the script's folder. Standard library only.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from tunebridge.errors import SchemaError

__all__ = ["can_find", "import_ref", "import_or_refuse", "search_first"]


def search_first(folder: str | None) -> None:
    """Put ``folder`` (a spec's) at the front of ``sys.path``, once; None or ``""`` changes nothing."""
    if folder and folder not in sys.path:
        sys.path.insert(0, folder)


def import_ref(ref: str, *, base_dir: str | None = None) -> Any:
    """The object ``ref`` names: ``module:attr`` (``attr`` may be dotted, ``Outer.Inner``), or a module.

    Args:
        ref: ``package.module:attr``, or ``package.module`` for the module itself.
        base_dir: A folder searched first (:func:`search_first`).

    Raises:
        ImportError: The module cannot be imported (or raised it while importing).
        AttributeError: The module has no such attribute.
        ValueError: An empty or relative module name.
    """
    search_first(base_dir)
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def import_or_refuse(ref: str, *, path: str, rule: str, fix: str, base_dir: str | None = None) -> Any:
    """:func:`import_ref`, its failure a :class:`SchemaError` at ``path`` that shows ``ref`` and the reason.

    Example: ``import_or_refuse("my_callbacks:Logit", path="callbacks[0]", rule="cannot import the
    callback class", fix="Write module:Class ...")``.
    """
    try:
        return import_ref(ref, base_dir=base_dir)
    except (ImportError, AttributeError, ValueError) as e:
        raise SchemaError(rule, path=path, value=f"{ref!r} ({e})", fix=fix) from None


def can_find(module: str, *, base_dir: str) -> bool:
    """Whether ``module`` can be imported from ``base_dir`` or ``sys.path``, without importing it and
    without leaving ``base_dir`` on ``sys.path`` (``tunebridge check``)."""
    added = base_dir not in sys.path
    if added:
        sys.path.insert(0, base_dir)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
    finally:
        if added:
            sys.path.remove(base_dir)
