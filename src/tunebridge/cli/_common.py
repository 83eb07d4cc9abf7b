"""Shared CLI bits: consoles, default locations, error handling, the recipe list."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tunebridge.errors import TunebridgeError

__all__ = ["DEFAULT_ROOT", "console", "default_storage", "err_console", "fail_on_tunebridge_errors", "list_recipes"]

DEFAULT_ROOT = "tunebridge-runs"
console = Console()
err_console = Console(stderr=True)


def default_storage() -> str:
    """The CLI's default storage: one SQLite file under ./tunebridge-runs, studies told apart by name."""
    return f"sqlite:///{DEFAULT_ROOT}/tunebridge.db"


@contextmanager
def fail_on_tunebridge_errors() -> Iterator[None]:
    """Print tunebridge's own errors as one red message and exit 2 (no traceback for user mistakes)."""
    try:
        yield
    except TunebridgeError as e:
        err_console.print(f"[bold red]error:[/] {type(e).__name__}: {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def recipe_dirs() -> list[Path]:
    """Where recipes are looked for: ./recipes, then the repository the package was installed from."""
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / "recipes", here.parents[3] / "recipes"]
    return [c for c in dict.fromkeys(candidates) if c.is_dir()]


def list_recipes() -> None:
    dirs = recipe_dirs()
    if not dirs:
        err_console.print("no recipes/ folder found (run from a clone of the repository).")
        sys.exit(1)
    table = Table(title="tunebridge recipes")
    table.add_column("recipe")
    table.add_column("what it does")
    table.add_column("run it with")
    for folder in dirs[:1]:
        for path in sorted(folder.iterdir()):
            if path.suffix not in (".yaml", ".py") or path.name.startswith("_"):
                continue
            first = ""
            for line in path.read_text().splitlines():
                line = line.strip().lstrip("#").strip().strip('"')
                if line and not line.startswith(("!", "from", "import")):
                    first = line
                    break
            how = f"tunebridge run {path}" if path.suffix == ".yaml" else f"python {path}"
            table.add_row(path.name, first, how)
    console.print(table)
