"""The bundled recipes: where they live, a recipe name on the command line, the list, editable copies.

The recipes live in ``recipes/`` at the top of the clone and ship in the wheel as the package
``tunebridge.recipes`` (pyproject.toml maps that package to the folder), so ``tunebridge run digits_mlp``
works from an installed wheel; the study still writes into the working directory (``tunebridge-runs/``).
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from tunebridge._hints import did_you_mean
from tunebridge.cli._common import console, err_console, esc
from tunebridge.errors import SchemaError

__all__ = [
    "BUNDLED",
    "FOLDER_SPEC",
    "bundled_files",
    "bundled_folders",
    "bundled_specs",
    "copy_recipes",
    "list_recipes",
    "resolve_spec",
]


def _recipes_folder() -> Path:
    """The folder of the package ``tunebridge.recipes``: the installed copy, or ``recipes/`` of an editable clone."""
    package = importlib.import_module("tunebridge.recipes")  # a docstring only: imports nothing else
    if package.__file__ is None:  # a folder without __init__.py took the name: not the recipes
        raise ImportError(
            f"tunebridge.recipes resolves to {', '.join(package.__path__)}, a folder without the recipes "
            "(in a clone, a leftover src/tunebridge/recipes/ of __pycache__: remove it)"
        )
    return Path(package.__file__).resolve().parent


BUNDLED = _recipes_folder()
_SPEC_SUFFIXES = (".yaml", ".yml")
#: A folder recipe (a project: code, configs and its spec) is run by the folder's name; this is its spec.
FOLDER_SPEC = "spec.yaml"


def bundled_files() -> list[Path]:
    """Every bundled recipe (spec files and scripts), sorted by name."""
    return sorted(
        p
        for p in BUNDLED.iterdir()
        if p.is_file() and p.suffix in (*_SPEC_SUFFIXES, ".py") and not p.name.startswith("_")
    )


def bundled_folders() -> list[Path]:
    """Every bundled folder recipe (a folder holding a ``spec.yaml``), sorted by name."""
    return sorted(p for p in BUNDLED.iterdir() if p.is_dir() and (p / FOLDER_SPEC).is_file())


def bundled_specs() -> dict[str, Path]:
    """The bundled spec files by recipe name (the file name without ``.yaml``, or the folder's name)."""
    specs = {p.stem: p for p in bundled_files() if p.suffix in _SPEC_SUFFIXES}
    return {**specs, **{p.name: p / FOLDER_SPEC for p in bundled_folders()}}


def resolve_spec(arg: Path) -> Path:
    """The spec file a command-line argument names: a file, else the bundled recipe of that name.

    A path that exists is used as is; a bare name (``digits_mlp`` or ``digits_mlp.yaml``) is first looked
    for as ``NAME.yaml`` in the working directory (an edited copy wins), then among the bundled recipes.
    A path with a folder in it that does not exist is returned unchanged (``load_spec`` reports it).

    Raises:
        SchemaError: A bare name that is neither a file here nor a bundled recipe; the message lists the
            bundled recipes.
    """
    if arg.is_dir() and (arg / FOLDER_SPEC).is_file():  # a folder recipe (a copy of one, or your own)
        return arg / FOLDER_SPEC
    if arg.exists() or arg.is_absolute() or len(arg.parts) > 1:
        return arg
    if arg.suffix not in _SPEC_SUFFIXES and arg.with_name(arg.name + ".yaml").is_file():
        local = arg.with_name(arg.name + ".yaml")
        err_console.print(f"[dim]spec {esc(arg)}: using {esc(local)} from the working directory[/]", highlight=False)
        return local
    name = arg.stem if arg.suffix in _SPEC_SUFFIXES else arg.name
    specs = bundled_specs()
    if name in specs:
        err_console.print(
            f"[dim]spec {esc(arg)}: the bundled recipe {esc(specs[name])} "
            "(`tunebridge recipes --copy DIR` writes an editable copy)[/]",
            highlight=False,
        )
        return specs[name]
    scripts = {p.stem: p for p in bundled_files() if p.suffix == ".py"}
    if name in scripts:
        fix = f"{name!r} is a Python script, not a spec: run {script_command(scripts[name])}."
    else:
        fix = " ".join(
            s
            for s in (
                did_you_mean(name, specs),
                f"Bundled recipes: {', '.join(specs)} (`tunebridge recipes` describes them);",
                "or pass the path of your own spec file.",
            )
            if s
        )
    raise SchemaError(
        "no spec file of that name here, and no bundled recipe of that name",
        path="spec",
        value=repr(str(arg)),
        fix=fix,
    )


def _describe(path: Path) -> str:
    """The first line of a recipe's leading comment or docstring."""
    for line in path.read_text().splitlines():
        line = line.strip().lstrip("#").strip().strip('"')
        if line and not line.startswith(("!", "from", "import")):
            return line
    return ""


def script_command(path: Path) -> str:
    """How to run a bundled Python recipe, short enough to copy at 80 columns."""
    return f"python -m tunebridge.recipes.{path.stem}"


def list_recipes() -> None:
    """Print the bundled recipes: what each does and the command that runs it, whole on its own line.

    Plain lines, not a table: at 80 columns a table cuts a long command or file name short, and a
    command is only useful when it can be copied as it is.
    """
    console.print(esc(f"tunebridge recipes, bundled in {BUNDLED}:"), highlight=False, soft_wrap=True)
    rows = [
        (
            path.name,
            _describe(path),
            f"tunebridge run {path.stem}" if path.suffix in _SPEC_SUFFIXES else script_command(path),
        )
        for path in bundled_files()
    ]
    rows += [(f"{f.name}/", _describe(f / FOLDER_SPEC), f"tunebridge run {f.name}") for f in bundled_folders()]
    for name, what, how in rows:
        console.print()
        console.print(f"[bold]{esc(name)}[/]  {esc(what)}", highlight=False)
        console.print(f"    {esc(how)}", highlight=False, soft_wrap=True)
    console.print()
    console.print("Editable copies: tunebridge recipes --copy DIR (then tunebridge run DIR/digits_mlp.yaml).")


def copy_recipes(dest: Path, *, force: bool = False) -> list[Path]:
    """Copy every bundled recipe into ``dest`` (created if missing); returns the files written.

    Raises:
        SchemaError: ``dest`` is a file, or a copy would overwrite an existing file and ``force`` is False
            (nothing is written then).
    """
    if dest.exists() and not dest.is_dir():
        raise SchemaError(
            "the destination of `--copy` must be a folder",
            path="recipes --copy",
            value=repr(str(dest)),
            fix="Name a new or existing folder.",
        )
    files = bundled_files()
    folders = bundled_folders()
    existing = [dest / p.name for p in files if (dest / p.name).exists()]
    existing += [dest / f.name / p for f in folders for p in _folder_files(f) if (dest / f.name / p).exists()]
    if existing and not force:
        raise SchemaError(
            "`--copy` never overwrites files",
            path="recipes --copy",
            value=", ".join(str(p) for p in existing),
            fix="Pass --force to overwrite them, or copy into another folder.",
        )
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        target = dest / path.name
        shutil.copyfile(path, target)  # not copy2: a copy of a read-only installed file must be editable
        written.append(target)
    for folder in folders:
        (dest / folder.name).mkdir(exist_ok=True)
        for path in _folder_files(folder):
            (dest / folder.name / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / path, dest / folder.name / path)
        written.append(dest / folder.name)
    return written


def _folder_files(folder: Path) -> list[Path]:
    """A folder recipe's files, relative to it, subfolders included (a Hydra project's configs/ tree)."""
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and p.suffix in (*_SPEC_SUFFIXES, ".py") and "__pycache__" not in p.parts
    )
