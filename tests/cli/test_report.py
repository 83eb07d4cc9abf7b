"""``tunebridge report``: one self-contained report.html (and PNGs) for a real 30-trial study and a tiny
multi-objective one, rendered in a real headless Chromium: no JavaScript error, every plot drawn."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from tunebridge.cli._report_data import FEW_TRIALS, collect
from tunebridge.cli._report_plotly import figures

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)"
)
pytestmark = pytest.mark.slow
DB = "tunebridge-runs/tunebridge.db"
Cli = Callable[..., subprocess.CompletedProcess[str]]


def load(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / DB}")


@pytest.fixture(scope="module")
def digits_report(digits_run: Path, tb: Cli) -> Path:
    ran = tb("report", "digits-mlp", cwd=digits_run)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "report.html" in ran.stdout
    return digits_run / "tunebridge-runs" / "digits-mlp" / "report"


@pytest.fixture(scope="module")
def multi_report(multi_run: Path, tb: Cli) -> Path:
    ran = tb("report", "tiny-multi", "--out", "rep", cwd=multi_run)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return multi_run / "rep"


def browse(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", *args, page.as_uri()]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def body_attrs(dom: str) -> dict[str, str]:
    """The self-check the page writes onto <body> once loaded."""
    match = re.search(r"<body([^>]*)>", dom)
    assert match, dom[:2000]
    return {k: html.unescape(v) for k, v in re.findall(r'data-([\w-]+)="([^"]*)"', match.group(1))}


def test_the_page_is_self_contained_and_holds_the_run_record(digits_run: Path, digits_report: Path) -> None:
    page = (digits_report / "report.html").read_text()
    study = load(digits_run, "digits-mlp")
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in page and "Plotly.newPlot" in page  # plotly.js is inline
    ours = page.replace(get_plotlyjs(), "")
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", ours), "the page loads something from the network"
    record = json.loads((digits_run / "tunebridge-runs" / "digits-mlp" / "record.json").read_text())
    for text in (
        study.user_attrs["spec_hash"],
        f"optuna {optuna.__version__}",
        "tpe",
        "1 fail",
        f"{record['wall_time_s']:.1f} s (record.json of the last run)",
        study.best_trial.user_attrs["checkpoint"],
        f"Best trial: trial {study.best_trial.number}",
        "FanovaImportanceEvaluator",
        "class='sortable'",
    ):
        assert html.escape(text, quote=False) in page, text
    assert page.count("<tr class='") == len(study.trials)  # every trial, pruned and failed ones too
    for section in ("history", "curves", "parallel", "slice", "contour", "importances"):
        assert f'id="plot-{section}"' in page, section
    for png in ("history.png", "curves.png", "importances.png"):
        assert (digits_report / png).read_bytes().startswith(b"\x89PNG")
    assert "[report.html](report.html)" in (digits_report / "report.md").read_text()


def test_pruned_and_failed_trials_are_marked_and_the_curves_zoom_on_the_good_trials(digits_run: Path) -> None:
    data = collect(load(digits_run, "digits-mlp"))
    figs = figures(data)
    names = [trace.name for trace in figs["history"].data]
    assert any(n.startswith("pruned") for n in names) and "failed: 1" in names and "best so far" in names
    curves = figs["curves"].data
    pruned = [t for t in curves if t.legendgroup == "PRUNED"]
    assert pruned and all(t.line.dash == "dash" for t in pruned)
    assert len(curves) == data.counts["complete"] + data.counts["pruned"]
    # the range shows the best trials' curves, not the worst pruned trial's first epoch
    low, high = data.y_range or (None, None)
    assert low is not None and high is not None
    every = [v for t in data.study.trials for v in t.intermediate_values.values()]
    assert min(every) < low < data.best.value <= high
    assert list(figs["curves"].layout.yaxis.range) == [low, high]


def test_importances_name_the_method_and_warn_when_trials_are_few(digits_run: Path) -> None:
    data = collect(load(digits_run, "digits-mlp"))
    assert data.importances and abs(sum(data.importances.values()) - 1) < 1e-6
    n, p = len(data.complete), len(data.importances)
    assert bool(data.importance_caveat) == (n < FEW_TRIALS or n < 2 * p)
    if data.importance_caveat:
        assert f"Only {n} complete trials for {p} parameters" in data.importance_caveat
    assert data.top_params[: len(data.importances)] == sorted(data.importances, key=lambda k: -data.importances[k])
    # ordered choices are stored and shown as their values, not an index
    assert {t.params["batch_size"] for t in data.study.trials if t.params} <= {32, 64, 128}


def test_a_multi_objective_report_plots_the_pareto_front(multi_report: Path, multi_run: Path) -> None:
    page = (multi_report / "report.html").read_text()
    assert 'id="plot-pareto"' in page and 'id="plot-history"' not in page
    assert "val_loss (min), n_params (min)" in page
    data = collect(load(multi_run, "tiny-multi"))
    assert data.multi and data.best is not None and data.best.number in {t.number for t in data.study.best_trials}


@needs_chromium
@pytest.mark.parametrize("which", ["digits", "multi"])
def test_chromium_renders_every_plot_without_a_javascript_error(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder: Path = request.getfixturevalue(f"{which}_report")
    page = folder / "report.html"
    expected = page.read_text().count("<div class='tb-plot'>")
    ran = browse(page, "--dump-dom")
    assert ran.returncode == 0, ran.stderr[-3000:]
    attrs = body_attrs(ran.stdout)
    assert json.loads(attrs["js-errors"]) == [], attrs
    assert int(attrs["plots"]) == expected >= (6 if which == "digits" else 2)
    assert int(attrs["drawn"]) == expected, attrs  # plotly drew an SVG in every figure
    console_errors = [line for line in ran.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert not console_errors, console_errors
    shot = tmp_path / "report.png"
    ran = browse(page, f"--screenshot={shot}", "--window-size=1280,3000")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000, ran.stderr[-2000:]


@needs_chromium
def test_clicking_a_column_header_sorts_the_trials(digits_report: Path, tmp_path: Path) -> None:
    # The report's own sort script, driven by clicks in the browser: value ascending, then descending.
    probe = """<script>window.addEventListener('load',function(){
      var th=Array.prototype.find.call(document.querySelectorAll('table.sortable th'),
        function(h){return h.textContent==='value';});
      function first(){return document.querySelector('table.sortable tbody tr').cells[0].textContent;}
      th.click();document.body.dataset.up=first();th.click();document.body.dataset.down=first();});</script>"""
    page = tmp_path / "report.html"
    page.write_text((digits_report / "report.html").read_text().replace("</body>", probe + "</body>"))
    attrs = body_attrs(browse(page, "--dump-dom").stdout)
    values = {
        t.number: t.value for t in optuna.load_study(study_name="digits-mlp", storage=_storage(digits_report)).trials
    }
    finite = {k: v for k, v in values.items() if v is not None}
    assert int(attrs["up"]) == min(finite, key=lambda k: finite[k])
    assert int(attrs["down"]) == max(finite, key=lambda k: finite[k])


def _storage(report: Path) -> str:
    return f"sqlite:///{report.parents[1] / 'tunebridge.db'}"


def test_the_report_shows_what_pruning_saved_and_where_each_trial_stopped(
    digits_run: Path, digits_report: Path
) -> None:
    study = load(digits_run, "digits-mlp")
    saved = collect(study).savings
    assert saved.recorded and saved.budget == 20  # the recipe's max_epochs, recorded with the study
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert saved.trials == len(finished)
    assert saved.trained == sum(t.user_attrs["epochs"] for t in finished) < saved.full == 20 * len(finished)
    assert sorted(saved.stopped_at["pruned"]) == sorted(
        t.user_attrs["epochs"] for t in finished if t.state.name == "PRUNED"
    )
    assert saved.stopped_at["pruned"] and all(e < 20 for e in saved.stopped_at["pruned"])
    early = [t.user_attrs["epochs"] for t in finished if t.state.name == "COMPLETE" and t.user_attrs["early_stopped"]]
    assert sorted(saved.stopped_at["early stopped"]) == sorted(early)
    page = (digits_report / "report.html").read_text()
    assert 'id="plot-pruning"' in page and html.escape(saved.text()) in page
    assert f"{saved.saved:.0%} saved" in (digits_report / "report.md").read_text()
    fig = figures(collect(study))["pruning"]
    assert sum(sum(trace.y) for trace in fig.data) == saved.trials  # every finished trial, once, at its epoch
