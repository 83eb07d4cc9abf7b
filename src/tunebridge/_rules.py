"""Small rules that several layers check, written once: a count, a finite number, a name among known ones
(a backend's, a mode), fuse (standard library only).

Each ``check_*`` returns the value it accepts and otherwise raises a :class:`SchemaError` that names
where the value is, the rule, the value and the fix. A caller whose words a user already knows (a
spec file's, ``tune()``'s) passes its own ``rule`` or ``fix``; the rule itself never changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from tunebridge._hints import did_you_mean
from tunebridge._vocab import BACKENDS, MODES
from tunebridge.errors import SchemaError, show

__all__ = [
    "check_backend",
    "check_choice",
    "check_finite",
    "check_fuse",
    "check_mapping",
    "check_int",
    "check_mode",
    "check_study_name",
    "is_int_at_least",
]

_STUDY = re.compile(r"[\w.\-]{1,128}")


def is_int_at_least(value: object, minimum: int, *, kind: type = int) -> TypeGuard[int]:
    """Whether ``value`` is an integer ``>= minimum``; a bool never is (``True`` is not a count).

    Args:
        value: What to check.
        minimum: The smallest allowed value (inclusive).
        kind: ``int`` (the default), or ``numbers.Integral`` to accept numpy's integers too.

    Example:
        >>> is_int_at_least(3, 1), is_int_at_least(True, 0), is_int_at_least(2.0, 1)
        (True, False, False)
    """
    return isinstance(value, kind) and not isinstance(value, bool) and value >= minimum  # type: ignore[operator]


def check_int(value: object, minimum: int, *, path: str, name: str | None = None, fix: str | None = None) -> int:
    """``value`` if it is an integer ``>= minimum`` (:func:`is_int_at_least`).

    Args:
        value: What to check.
        minimum: The smallest allowed value (inclusive).
        path: Where the value is (``early_stopping.patience``).
        name: The name in the rule (default: ``path``).
        fix: What to do instead (default: ``Write e.g. NAME: max(minimum, 1).``).

    Raises:
        SchemaError: ``value`` is a bool, not an int, or below ``minimum``.
    """
    if not is_int_at_least(value, minimum):
        name = path if name is None else name
        raise SchemaError(
            f"`{name}` must be an integer >= {minimum}",
            path=path,
            value=show(value),
            fix=f"Write e.g. {name}: {max(minimum, 1)}." if fix is None else fix,
        )
    return value


def check_finite(value: object, *, path: str) -> float:
    """``value`` as a float if it is a finite number (never a bool).

    Raises:
        SchemaError: ``value`` is a bool, not an int or float, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"`{path}` must be a finite number", path=path, value=show(value))
    return float(value)


def check_mapping(value: object, *, path: str, fix: str, rule: str | None = None) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a section such as ``ray:``); the rule defaults to ``` `PATH` must be a mapping ```.

    Raises:
        SchemaError: Anything else (a list, a string, ``None``).
    """
    if not isinstance(value, Mapping):
        raise SchemaError(
            f"`{path}` must be a mapping" if rule is None else rule, path=path, value=show(value), fix=fix
        )
    return value


def check_fuse(value: object) -> int | str:
    """``value`` if it is a ``fuse:`` setting: ``"auto"`` or an integer >= 1 (members trained at once).

    Raises:
        SchemaError: Anything else (``0``, ``True``, ``"4"``).
    """
    if value == "auto" or is_int_at_least(value, 1):
        return value
    raise SchemaError(
        "`fuse` must be auto or an integer >= 1", path="fuse", value=show(value), fix="Write e.g. fuse: auto."
    )


def check_choice(
    value: object,
    choices: Sequence[str],
    *,
    path: str,
    rule: str | None = None,
    fix: str | None = None,
) -> str:
    """``value`` if it is one of the names ``choices``; otherwise an error that suggests the nearest name.

    The rule defaults to ``` `PATH` must be one of A, B ```, the fix (after the "did you mean") to
    ``Use e.g. PATH: A.``.

    Raises:
        SchemaError: Any other value; the fix starts with the nearest name when there is one.

    Example:
        >>> check_choice("csv", ("csv", "mlflow"), path="logger")
        'csv'
    """
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, choices)
        raise SchemaError(
            f"`{path}` must be one of {', '.join(choices)}" if rule is None else rule,
            path=path,
            value=show(value),
            fix=(hint + " " if hint else "") + (f"Use e.g. {path}: {choices[0]}." if fix is None else fix),
        )
    return value


def check_backend(
    value: object,
    *,
    path: str = "backend",
    rule: str = f"`backend` must be one of {', '.join(BACKENDS)}",
    fix: str = "Use e.g. backend: optuna.",
) -> str:
    """``value`` if it names a backend (:data:`tunebridge._vocab.BACKENDS`).

    Raises:
        SchemaError: Any other value; the fix starts with the nearest name when there is one.
    """
    return check_choice(value, BACKENDS, path=path, rule=rule, fix=fix)


def check_mode(value: object, *, path: str = "mode", fix: str = "Pass mode='min' or mode='max'.") -> str:
    """``value`` if it is an optimisation direction (:data:`tunebridge._vocab.MODES`: ``min`` or ``max``).

    Raises:
        SchemaError: Any other value (``minimize``, ``None``, ...).
    """
    if not isinstance(value, str) or value not in MODES:
        raise SchemaError("`mode` must be 'min' or 'max'", path=path, value=show(value), fix=fix)
    return value


def check_study_name(value: object, *, path: str = "study") -> str:
    """A study name: it names files and folders (``tunebridge-runs/STUDY/``), so it never leaves them.

    Letters, digits, ``_``, ``.`` and ``-``, at most 128 characters, and not only dots (``..`` would
    write next to the output folder, not inside it).

    Example:
        >>> check_study_name("digits-mlp")
        'digits-mlp'
        >>> check_study_name("../../x")
        Traceback (most recent call last):
        ...
        tunebridge.errors.SchemaError: study: `study` must be a name of letters, digits, '_', '.', '-', but got '../../x'. Write e.g. study: digits-mlp (at most 128 characters).
    """
    if not isinstance(value, str) or not _STUDY.fullmatch(value) or not value.strip("."):
        raise SchemaError(
            "`study` must be a name of letters, digits, '_', '.', '-'",
            path=path,
            value=show(value),
            fix="Write e.g. study: digits-mlp (at most 128 characters).",
        )
    return value
