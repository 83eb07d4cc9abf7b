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
    "storage_error",
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


# The libraries a study's storage speaks through, and the drivers a URL may need: their errors are the
# storage's (a closed port, a wrong database, a missing driver), shown as two lines, never a traceback.
_STORAGE_LIBRARIES = frozenset({"sqlalchemy", "redis", "psycopg", "psycopg2", "pymysql", "MySQLdb", "pg8000"})


def storage_error(error: BaseException) -> BaseException | None:
    """The storage library's error in ``error``'s chain (itself, its cause or context), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.split(".")[0] in _STORAGE_LIBRARIES or (
            isinstance(current, ModuleNotFoundError) and (current.name or "").split(".")[0] in _STORAGE_LIBRARIES
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _storage_fix(error: BaseException) -> str:
    text = str(error).lower()
    if isinstance(error, ModuleNotFoundError):
        return (
            f"Install the driver the URL needs (module {error.name!r}): pip install 'tunebridge[postgres]' for "
            "postgresql://, 'tunebridge[redis]' for redis://, pymysql for mysql+pymysql://."
        )
    if "can't load plugin" in text or "could not parse" in text:
        return "Use a storage URL tunebridge knows: sqlite:///FILE, postgresql://..., mysql+pymysql://..., redis://..., journal://FILE."
    if "does not exist" in text or "unknown database" in text:
        return "Create the database first (e.g. createdb NAME), or name one that exists in the URL."
    return "Check that the server runs and that the URL's host, port, user and database are right."


@contextmanager
def fail_on_tunebridge_errors(storage: str | None = None) -> Iterator[None]:
    """Print tunebridge's own errors as one red message and exit 2 (no traceback for user mistakes).

    A study storage that cannot be opened (wrong database, closed port, unknown driver or scheme, missing
    extra) is shown the same way, in two lines: what failed with the masked URL, then the fix.
    """
    try:
        yield
    except TunebridgeError as e:
        print_error(f"{type(e).__name__}: {e}")
        raise typer.Exit(2) from None
    except Exception as e:
        cause = storage_error(e)
        if cause is None:
            raise
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        where = f" {shown_url(storage)}" if storage else ""
        print_error(f"the study storage{where} cannot be used: {type(cause).__name__}: {first}")
        err_console.print(esc(_storage_fix(cause)), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
