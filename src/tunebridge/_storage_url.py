"""Storage URLs in words: the one parser every layer uses (standard library only).

``memory`` (or None), any SQLAlchemy database URL (``sqlite:///…``, ``postgresql://…``, …), a journal
file (``journal:///path.log`` or a bare path ending in ``.log``/``.journal``/``.jsonl``) or Redis
(``redis://host:6379/0``).
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

from tunebridge.errors import SchemaError

__all__ = ["DB_SCHEMES", "is_memory", "journal_path", "local_file", "mask_url", "storage_kind"]

DB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
_MEMORY = (None, "", "memory", ":memory:")


def is_memory(url: str | None) -> bool:
    """True for an in-memory study (nobody else can see it)."""
    return url in _MEMORY


def storage_kind(url: str | None) -> str:
    """``memory``, ``rdb``, ``journal-file`` or ``journal-redis``.

    Raises:
        SchemaError: The URL names none of them.

    Example:
        >>> [storage_kind(u) for u in (None, "sqlite:///a.db", "runs/s.log", "redis://h:6379")]
        ['memory', 'rdb', 'journal-file', 'journal-redis']
    """
    if is_memory(url):
        return "memory"
    assert url is not None
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme in DB_SCHEMES:
        return "rdb"
    if scheme in ("redis", "rediss", "unix"):
        return "journal-redis"
    if scheme in ("journal", "file") or re.search(r"\.(log|journal|jsonl)$", url):
        return "journal-file"
    raise SchemaError(
        "unknown storage URL",
        path="storage",
        value=repr(url),
        fix="Use sqlite:///study.db, postgresql://user@host/db, redis://host:6379, "
        "journal:///path/study.log (or a path ending in .log) or 'memory'.",
    )


def journal_path(url: str) -> str:
    """The file of a journal URL: ``journal:///abs/path.log``, ``journal://rel.log`` or a bare path."""
    for prefix in ("journal://", "file://"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url


def local_file(url: str | None) -> str | None:
    """The local file a SQLite or journal-file study lives in (absolute), else None.

    Example:
        >>> local_file("sqlite:///runs/s.db") == os.path.abspath("runs/s.db")
        True
        >>> local_file("postgresql://u@h/db") is None
        True
    """
    if is_memory(url) or url is None:
        return None
    if url.startswith("sqlite:///"):
        file = url[len("sqlite:///") :]
    else:
        try:
            kind = storage_kind(url)
        except SchemaError:
            return None
        if kind != "journal-file":
            return None
        file = journal_path(url)
    if not file or file == ":memory:":
        return None
    return os.path.abspath(os.path.expanduser(file))


def mask_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (for every place a storage URL is shown or stored).

    Example:
        >>> mask_url("postgresql://user:s3cret@db:5432/optuna")
        'postgresql://user:***@db:5432/optuna'
        >>> mask_url("redis://:s3cret@cache:6379/0")
        'redis://:***@cache:6379/0'
        >>> mask_url("sqlite:///runs/t.db")
        'sqlite:///runs/t.db'
    """
    if not url or "://" not in url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
