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
        progress=False,
        accelerator="cpu",
        storage=storage,
        study="dash",
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
