"""``tunebridge show``: a study's record and trials table."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from tunebridge.cli._common import console, default_storage, esc, print_error, shown_url

__all__ = ["load_study", "show_command"]


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


def show_command(name: str, *, storage: str | None, limit: int) -> None:
    from tunebridge.results import counts, trials_table
    from tunebridge.schema import Space

    study = load_study(name, storage)
    attrs = study.user_attrs  # type: ignore[attr-defined]
    space = Space.from_dict(attrs["space"]) if "space" in attrs else None
    record = Table(title=esc(f"study {name!r}"), show_header=False)
    record.add_column(style="bold")
    record.add_column()
    c = counts(study)  # type: ignore[arg-type]
    rows = {
        "metrics": ", ".join(f"{m} ({d})" for m, d in zip(attrs.get("metrics", []), attrs.get("modes", []))),
        "search / seed": f"{attrs.get('search')} / {attrs.get('seed')}",
        "backend": str(attrs.get("backend")),
        "spec hash": str(attrs.get("spec_hash")),
        "versions": json.dumps(attrs.get("versions", {})),
        "trials": ", ".join(f"{v} {k}" for k, v in c.items() if v),
        "storage": shown_url(storage or default_storage()),
    }
    for key, value in rows.items():
        record.add_row(key, esc(value))
    console.print(record)
    df = trials_table(study, space)  # type: ignore[arg-type]
    if df.empty:
        console.print("no trials yet")
        return
    if "value" in df:
        ascending = attrs.get("modes", ["min"])[0] == "min"
        df = df.sort_values("value", ascending=ascending, na_position="last")
    df = df.head(limit)
    table = Table(title=f"trials (best first, at most {limit})")
    cols = [c for c in df.columns if c != "fail_reason" or df[c].notna().any()]
    for col in cols:
        table.add_column(esc(col.removeprefix("param.")), overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*(esc(_fmt(row[c])) for c in cols))
    console.print(table)


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
