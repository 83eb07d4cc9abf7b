""" "Did you mean …?": the one place that finds the nearest known name for a misspelt one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(word: object, known: Iterable[object]) -> str:
    """A "did you mean" sentence for ``word`` among ``known`` names, or an empty string.

    Example:
        >>> did_you_mean("tpr", ["grid", "random", "tpe"])
        "Did you mean 'tpe'?"
        >>> did_you_mean(3, ["a"])
        ''
    """
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return f"Did you mean {match[0]!r}?" if match else ""
