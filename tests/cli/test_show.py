"""``tunebridge show`` at 80 and 160 columns, its options and formats, and ``trials.csv`` (typed, in the
space's order), on the real 30-trial digits study."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._report_data import collect
from tunebridge.results import trials_table
from tunebridge.schema import Space

pytestmark = pytest.mark.slow
DB = "tunebridge-runs/tunebridge.db"
Cli = Callable[..., subprocess.CompletedProcess[str]]


def show(folder: Path, *args: str, columns: int = 80) -> tuple[int, str, str]:
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("COLUMNS", str(columns))
        result = runner.invoke(app, ["show", "digits-mlp", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def study(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="digits-mlp", storage=f"sqlite:///{folder / DB}")


@pytest.mark.parametrize("width", [80, 160])
def test_the_table_fits_the_terminal_with_the_essential_columns_first(digits_run: Path, width: int) -> None:
    code, out, err = show(digits_run, "--top", "5", columns=width)
    assert code == 0, out + err
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    header = next(line for line in lines if "number" in line and "state" in line)
    cells = [c.strip() for c in header.strip("┃").split("┃")]
    assert cells[:4] == ["number", "state", "value", "epochs"] and len(cells) >= (6 if width == 80 else 10)
    top = collect(study(digits_run)).top_params[0]  # the study's most important parameter
    assert top in cells or f"{top[:8]}…" in cells or any(c.startswith(top[:6]) for c in cells), (top, cells)
    rows = [line for line in lines if "COMPLETE" in line or "PRUNED" in line]
    assert len(rows) == 5 and all("│" in r and r.count("│") == len(cells) + 1 for r in rows)  # no folded cells
    best = study(digits_run).best_trial
    assert rows[0].split("│")[1].strip() == str(best.number)


def test_columns_sort_and_top(digits_run: Path) -> None:
    code, out, err = show(digits_run, "--columns", "number,lr,val_loss", "--sort", "-lr", "--top", "3")
    assert code == 0, out + err
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│ ")]
    rows = [r for r in rows if len(r) == 3]
    lrs = sorted((t.params["lr"], t.number) for t in study(digits_run).trials if "lr" in t.params)[::-1]
    assert [int(r[0]) for r in rows] == [n for _, n in lrs[:3]]
    code, out, err = show(digits_run, "--columns", "number,learning_rate")
    assert code == 2
    assert "--columns: no column 'learning_rate'" in err and "columns: number, state" in err


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown"])
def test_formats(digits_run: Path, fmt: str) -> None:
    code, out, err = show(digits_run, "--format", fmt, "--top", "100")
    assert code == 0, out + err
    s = study(digits_run)
    n = len(s.trials)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == n and {"number", "param.lr", "val_loss", "fail_reason"} <= set(rows[0])
    elif fmt == "json":
        rows = json.loads(out)
        assert len(rows) == n and all(isinstance(r["number"], int) for r in rows)
        assert {r["state"] for r in rows} >= {"COMPLETE", "PRUNED", "FAIL"}
    else:
        lines = out.splitlines()
        assert lines[0].startswith("| number | state | value | epochs |") and len(lines) == n + 2
    code, out, err = show(digits_run, "--format", "xml")
    assert code == 2 and "--format: one of table, csv, json, markdown, but got 'xml'" in err


def test_trials_csv_keeps_integers_and_the_space_order(digits_run: Path) -> None:
    s = study(digits_run)
    space = Space.from_dict(s.user_attrs["space"])
    text = (digits_run / "tunebridge-runs" / "digits-mlp" / "trials.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    params = [c.removeprefix("param.") for c in rows[0] if c.startswith("param.")]
    bases = [p.split("/")[0] for p in params]
    assert sorted(set(bases), key=bases.index) == [n for n in space.order if n in set(bases)]
    assert [p for p in params if p.startswith("units/")] == [f"units/{i}" for i in range(space.max_layers("units"))]
    for row in rows:
        for key in ("number", "epochs", "param.n_layers", "param.units/0", "param.batch_size"):
            assert "." not in row[key], (key, row[key])  # 2, never 2.0
        layers = int(row["param.n_layers"])
        assert row["param.units/2"] == "" if layers < 3 else row["param.units/2"].isdigit()  # inactive: empty
    df = trials_table(s, space)  # the table the CLI writes, with the failed trial appended after the run
    assert str(df["param.units/1"].dtype) == "Int64" and str(df["epochs"].dtype) == "Int64"
