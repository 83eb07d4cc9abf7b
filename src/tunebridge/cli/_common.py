"""Shared CLI bits: consoles, default locations, error handling, and how user text is shown.

Everything the CLI prints goes through rich, which reads ``[...]`` as markup: text that is not our own
markup (error messages, spec values, file names, trial reasons) is shown through :func:`esc`, and every
storage URL through :func:`shown_url` (its password masked).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from tunebridge._storage_url import mask_url
from tunebridge.errors import TunebridgeError

__all__ = [
    "DEFAULT_ROOT",
    "console",
    "default_storage",
    "err_console",
    "esc",
    "fail_on_tunebridge_errors",
    "mask_secrets",
    "print_error",
    "shown_url",
]

DEFAULT_ROOT = "tunebridge-runs"
console = Console()
err_console = Console(stderr=True)

# A URL inside free text (an error message): scheme://… up to the next blank or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"]+")


def default_storage() -> str:
    """The CLI's default storage: one SQLite file under ./tunebridge-runs, studies told apart by name."""
    return f"sqlite:///{DEFAULT_ROOT}/tunebridge.db"


def esc(value: object) -> str:
    """``value`` as literal text for rich: ``[min, min]`` would otherwise be read as a markup tag and vanish."""
    return escape(str(value))


def shown_url(url: str | None) -> str:
    """A storage URL as the CLI shows or writes it: the password, if any, replaced by ``***``.

    Example:
        >>> shown_url("postgresql://u:s3cret@db/optuna")
        'postgresql://u:***@db/optuna'
    """
    return mask_url(url) or ""


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it masked (library messages may quote a storage URL).

    Example:
        >>> mask_secrets("no study 'x' in 'redis://:pw@cache:6379/0'")
        "no study 'x' in 'redis://:***@cache:6379/0'"
    """
    return _URL_IN_TEXT.sub(lambda m: shown_url(m.group(0)), text)


def print_error(message: str) -> None:
    """One red ``error:`` line on stderr; ``message`` is shown literally, its URLs' passwords masked."""
    err_console.print(f"[bold red]error:[/] {esc(mask_secrets(message))}", highlight=False, soft_wrap=True)


@contextmanager
def fail_on_tunebridge_errors() -> Iterator[None]:
    """Print tunebridge's own errors as one red message and exit 2 (no traceback for user mistakes)."""
    try:
        yield
    except TunebridgeError as e:
        print_error(f"{type(e).__name__}: {e}")
        raise typer.Exit(2) from None
