"""A tunebridge study as optuna-dashboard shows it, read through the dashboard's own JSON API (its WSGI app,
called in-process: no server): the objectives carry the run's metric names."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from tunebridge import tune
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Choice, Float, Space

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard (the test extra)")

SPACE = Space(lr=Float(1e-3, 1e-1, log=True), optimizer=Choice(["sgd", "adam"]))


def get(app: Any, path: str) -> Any:
    """GET ``path`` from a WSGI app; the decoded JSON body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:500])
    return json.loads(body)


@pytest.mark.parametrize("metrics", [["val_loss"], ["val_loss", "n_params"]])
def test_the_dashboard_names_the_objectives(metrics: list[str], tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    tune(
        partial(build_builtin, "mlp", "wine", max_epochs=1, seed=0),
        SPACE,
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode="min",
        trials=2,
        max_epochs=1,
        search="random",
        seed=0,
        storage=storage,
        study="dash",
        trainer={"accelerator": "cpu"},
        run={"progress": False},
    )
    app = optuna_dashboard.wsgi(storage)
    (summary,) = get(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "dash"
    detail = get(app, f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == metrics
    assert len(detail["trials"]) == 2
    for trial in detail["trials"]:
        assert trial["state"] == "Complete" and len(trial["values"]) == len(metrics)
        shown = {p["name"]: p["param_external_value"] for p in trial["params"]}
        config = next(a["value"] for a in trial["user_attrs"] if a["key"] == "config")
        assert shown["optimizer"] in ("sgd", "adam") and shown["optimizer"] in config


def _objective(config: dict[str, Any], reporter: Any, *, resume: Any = None) -> Any:
    from tunebridge.backends._base import TrialOutcome

    loss = float(config["lr"])
    reporter.report(1, {"val_loss": loss})
    return TrialOutcome(metrics={"val_loss": loss}, best={"val_loss": loss}, epochs=1, best_epoch=1)


@pytest.mark.parametrize("backend", ["optuna", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_the_dashboard_shows_results_not_bookkeeping(backend: str, tmp_path: Path, request: Any) -> None:
    """The user's attributes are the trial's results; tunebridge's bookkeeping (worker, queue marks, Ray ids)
    is kept as system attributes, which the dashboard does not show as the user's."""
    from tunebridge._record import BOOKKEEPING, SYSTEM_PREFIX
    from tunebridge.api import run_study
    from tunebridge.backends.optuna import StudyOptions, WorkerOptions

    if backend == "ray":
        request.getfixturevalue("ray_instance")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    opts = StudyOptions(
        space=SPACE, metrics=["val_loss"], modes=["min"], search="random", seed=0, storage=storage, study="dash"
    )
    options = {"ray": {"storage_path": str(tmp_path / "ray")}} if backend == "ray" else {}
    worker = WorkerOptions(heartbeat=5.0) if backend == "optuna" else None  # heartbeats record the worker
    study = run_study(opts, _objective, backend=backend, n_trials=3, worker=worker, **options)
    kept = {k.removeprefix(SYSTEM_PREFIX) for t in study.trials for k in t.system_attrs if k.startswith(SYSTEM_PREFIX)}
    assert kept >= ({"worker", "slot"} if backend == "optuna" else {"ray_trial_id", "ray_experiment"})

    app = optuna_dashboard.wsgi(storage)
    (summary,) = get(app, "/api/studies")["study_summaries"]
    detail = get(app, f"/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == 3
    for trial in detail["trials"]:
        shown = {a["key"] for a in trial["user_attrs"]}
        assert shown & BOOKKEEPING == set(), f"bookkeeping among the user's attributes: {shown & BOOKKEEPING}"
        assert {"config", "epochs", "best_epoch", "early_stopped", "final_val_loss"} <= shown
