"""Hydra's command-line override syntax, the part tunebridge reads and writes (standard library only).

:func:`primitive` types an unquoted word as Hydra's grammar does; :func:`override_value` writes a value so
that Hydra reads it back as the same value (``key=VALUE`` on a command line, in a spec's ``hydra.overrides``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["override_value", "primitive"]

_INT = re.compile(r"[+-]?(?:0|[1-9](?:_?\d)*)")
_FLOAT = re.compile(
    r"[+-]?(?:(?:\d(?:_?\d)*)?\.\d(?:_?\d)*|\d(?:_?\d)*\.?)(?:[eE][+-]?\d(?:_?\d)*)?|[+-]?(?:inf|nan)", re.I
)
# An unquoted string Hydra reads back unchanged: no spaces, quotes, commas, brackets or escapes.
_PLAIN = re.compile(r"[A-Za-z_/.$][\w\-/.:${}]*")


def primitive(word: str) -> Any:
    """An unquoted word as Hydra's grammar types it: int, float, bool, null, else a string.

    Example:
        >>> [primitive(w) for w in ("64", "1e-3", "True", "null", "adam", "0x10")]
        [64, 0.001, True, None, 'adam', '0x10']
    """
    if _INT.fullmatch(word):
        return int(word.replace("_", ""))
    if _FLOAT.fullmatch(word):
        return float(word.replace("_", ""))
    if word.lower() in ("true", "false"):
        return word.lower() == "true"
    if word.lower() == "null":
        return None
    return word


def override_value(value: Any) -> str:
    """``value`` as an override's value, which Hydra reads back as the same value.

    Example:
        >>> [override_value(v) for v in (0.0012, 64, True, None, "adam", "a b", "64")]
        ['0.0012', '64', 'true', 'null', 'adam', "'a b'", "'64'"]
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and primitive(text) == text:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
