"""``tunebridge show``: a study's record and trials table, readable at 80 columns.

By default the table holds the essential columns (number, state, value, epochs) and then the most
important parameters, as many as fit the terminal; ``--columns`` picks others, ``--format`` writes
CSV, JSON or Markdown instead (every column unless ``--columns`` says otherwise).
"""

from __future__ import annotations

import json
import math
from typing import Any

import typer
from rich.table import Table

from tunebridge.cli._common import console, default_storage, esc, print_error, shown_url

__all__ = ["FORMATS", "load_study", "select_columns", "show_command"]

FORMATS = ("table", "csv", "json", "markdown")
ESSENTIAL = ("number", "state", "value", "epochs")
CELL_EXTRA = 3  # rich's padding and border per column


def load_study(name: str, storage: str | None) -> object:
    import optuna

    from tunebridge.backends.optuna import make_storage

    url = storage or default_storage()
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.load_study(study_name=name, storage=make_storage(url))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(make_storage(url))]
        print_error(f"no study {name!r} in {shown_url(url)}; studies there: {', '.join(names) or 'none'}")
        raise typer.Exit(2) from None


def show_command(
    name: str,
    *,
    storage: str | None,
    top: int,
    columns: str | None = None,
    sort: str | None = None,
    fmt: str = "table",
) -> None:
    from tunebridge.cli._report_data import collect

    if fmt not in FORMATS:
        print_error(f"--format: one of {', '.join(FORMATS)}, but got {fmt!r}")
        raise typer.Exit(2)
    study: Any = load_study(name, storage)
    data = collect(study, storage=shown_url(storage or default_storage()))
    df = data.table
    if df.empty:
        if fmt == "table":
            _print_record(data.record)
        console.print("no trials yet")
        return
    df = _sorted(df, sort, data.modes)
    shown = df.head(top)
    wanted = columns.split(",") if columns else None
    if wanted is None and fmt in ("csv", "json"):
        cols = list(df.columns)
    else:
        width = console.width if fmt == "table" else 10**6
        cols = select_columns(shown, wanted, data.top_params, width=width)
    shown = shown[cols]
    if fmt == "csv":
        print(shown.to_csv(index=False), end="")
    elif fmt == "json":
        print(json.dumps([{k: _plain(v) for k, v in row.items()} for row in shown.to_dict("records")], indent=2))
    elif fmt == "markdown":
        print(_markdown(shown))
    else:
        _print_record(data.record)
        table = Table(title=esc(_title(len(shown), len(df), sort)))
        for col in cols:
            table.add_column(esc(col.removeprefix("param.")), overflow="fold", no_wrap=col in ESSENTIAL)
        for row in shown.to_dict("records"):
            table.add_row(*(esc(_fmt(row[c])) for c in cols))
        console.print(table)
        if "fail_reason" in df and "fail_reason" not in cols:  # why trials failed, below the table (it wraps)
            for row in df.head(top).to_dict("records"):
                if _plain(row["fail_reason"]) is not None:
                    console.print(f"trial {row['number']} failed: {esc(str(row['fail_reason']))}", highlight=False)


def _print_record(record: dict[str, str]) -> None:
    table = Table(title=esc(f"study {record['study']!r}"), show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in record.items():
        if key != "study" and value:
            table.add_row(key, esc(value))
    console.print(table)


def _title(n: int, total: int, sort: str | None) -> str:
    order = f"sorted by {sort}" if sort else "best first"
    return f"trials ({order}, {n} of {total})"


def _sorted(df: Any, sort: str | None, modes: list[str]) -> Any:
    """Best first by default; ``--sort COL`` ascending, ``--sort -COL`` descending (``value``: best first)."""
    if sort is None:
        column, descending = ("value" if "value" in df else "value_0"), modes[0] == "max"
    else:
        descending = sort.startswith("-")
        column = _column(df, sort.removeprefix("-"), "--sort")
        if column in ("value", "value_0") and not descending:
            descending = modes[0] == "max"  # `--sort value` means best first, as the default
    if column not in df:
        return df
    return df.sort_values(column, ascending=not descending, na_position="last", kind="stable")


def _column(df: Any, name: str, option: str) -> str:
    """The table column for a name a user typed (``lr`` or ``param.lr``)."""
    from tunebridge._hints import did_you_mean

    for candidate in (name, f"param.{name}"):
        if candidate in df.columns:
            return str(candidate)
    known = [str(c).removeprefix("param.") for c in df.columns]
    hint = did_you_mean(name, known)
    print_error(
        f"{option}: no column {name!r} in this study's trials table; columns: {', '.join(known)}."
        + (f" {hint}" if hint else "")
    )
    raise typer.Exit(2)


def select_columns(df: Any, wanted: list[str] | None, top_params: list[str], *, width: int) -> list[str]:
    """The columns to show: ``wanted``, or the essential ones and then the most important parameters
    (then the other parameters) as long as the table fits ``width`` characters."""
    if wanted is not None:
        return [_column(df, name.strip(), "--columns") for name in wanted if name.strip()]
    cols = [c for c in df.columns if c in ESSENTIAL or c.startswith("value_")]
    ranked = [f"param.{p}" for p in top_params if f"param.{p}" in df.columns]
    ranked += [c for c in df.columns if c.startswith("param.") and c not in ranked]
    used = 1 + sum(_width(df, c) for c in cols)
    for col in ranked:
        w = _width(df, col)
        if used + w > width:
            break
        cols.append(col)
        used += w
    return cols


def _width(df: Any, column: str) -> int:
    cells = [len(_fmt(v)) for v in df[column]]
    return max([len(column.removeprefix("param.")), *cells]) + CELL_EXTRA


def _fmt(value: object) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value: object) -> object:
    """A table cell as plain JSON-able Python: missing values (NaN, pandas' NA) as None."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _markdown(df: Any) -> str:
    head = [str(c).removeprefix("param.") for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in df.to_dict("records"):
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in df.columns) + " |")
    return "\n".join(lines)
