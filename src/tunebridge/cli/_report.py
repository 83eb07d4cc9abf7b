"""``tunebridge report``: one self-contained ``report.html`` for any study (Optuna or Ray runs alike), with
PNG versions of the main plots and a short ``report.md`` that links them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunebridge.cli._common import DEFAULT_ROOT, console, default_storage, esc, shown_url
from tunebridge.cli._show import load_study

__all__ = ["report_command", "write_report"]


def write_report(study: Any, out: Path, *, storage: str = "", record_file: str | None = None) -> Path:
    """Write ``report.html``, its PNG plots and ``report.md`` into ``out``; returns the HTML file.

    Args:
        study: The Optuna study (Ray runs are mirrored into one).
        out: The folder to write into (created).
        storage: The storage URL as it may be shown (its password masked), for the run record.
        record_file: The run's ``record.json``, if any: its wall time is shown.
    """
    from tunebridge._compat import require

    require("plotly", "tunebridge report")
    from tunebridge.cli._report_data import collect
    from tunebridge.cli._report_html import render
    from tunebridge.cli._report_plotly import figures
    from tunebridge.cli._report_png import write_pngs

    out.mkdir(parents=True, exist_ok=True)
    data = collect(study, storage=storage, record_file=record_file)
    pngs = {name: path.name for name, path in write_pngs(data, out).items()}
    page = out / "report.html"
    page.write_text(render(data, figures(data), pngs), encoding="utf-8")
    lines = [f"# Study `{data.name}`", "", "The interactive report: [report.html](report.html).", ""]
    lines += [f"- {k}: {v}" for k, v in data.record.items() if v]
    if data.savings is not None and data.savings.trials:
        lines += ["", "## What pruning saved", "", data.savings.text()]
    if data.best is not None:
        lines += ["", f"## Best: trial {data.best.number}", "", "```json", json.dumps(data.best_config, indent=2)]
        lines += ["```", "", f"checkpoint: `{data.best_checkpoint}`"]
    for name, file in pngs.items():
        lines += ["", f"## {name.capitalize()}", "", f"![{name}]({file})"]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return page


def report_command(name: str, *, storage: str | None, out: Path | None) -> None:
    study = load_study(name, storage)
    record = Path(DEFAULT_ROOT) / name / "record.json"
    path = write_report(
        study,
        out or Path(DEFAULT_ROOT) / name / "report",
        storage=shown_url(storage or default_storage()),
        record_file=str(record),
    )
    console.print(esc(f"wrote {path} (open it in a browser; it works offline)"), highlight=False)
