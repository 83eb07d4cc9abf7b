"""A storage password never leaves the CLI: summaries, show, report, worker, errors, Ctrl-C and the files it writes.

The run itself talks to the real PostgreSQL (trust auth accepts any password, so the URL carries one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from tunebridge.backends.optuna import make_storage
from tunebridge.cli import app

SECRET = "S3CRET-xyz"

SPEC = textwrap.dedent("""\
    study: {study}
    model: mlp
    data: digits
    space:
      n_layers: {{type: int, low: 1, high: 2}}
      units: {{type: choice, values: [16, 32], per_layer: n_layers}}
      lr: {{type: float, low: 0.001, high: 0.05, log: true}}
    metric: val_acc
    mode: max
    max_epochs: {epochs}
    search: random
    trials: {trials}
    seed: 0
    threads: 1
    """)


def with_password(url: str, password: str = SECRET) -> str:
    """``url`` with ``password`` for its user (replacing any password it had)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


def cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "tunebridge", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    return CliRunner()


@pytest.fixture
def secret_url(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A password-carrying PostgreSQL URL and a fresh study name; the study is deleted afterwards."""
    url, study = with_password(postgres_url), f"secret-{uuid.uuid4().hex[:8]}"
    yield url, study
    try:
        optuna.delete_study(study_name=study, storage=make_storage(url))
    except KeyError:
        pass


# --- no server needed -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://postgres:S3CRET-xyz@127.0.0.1:5432/test", "postgresql://postgres:***@127.0.0.1:5432/test"),
        ("redis://:S3CRET-xyz@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("sqlite:///runs/s.db", "sqlite:///runs/s.db"),
    ],
)
def test_check_shows_the_storage_of_a_spec_masked(runner: CliRunner, tmp_path: Path, url: str, shown: str) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC.format(study="s", epochs=1, trials=1) + f"storage: {url}\n")
    result = runner.invoke(app, ["check", "spec.yaml"])
    assert result.exit_code == 0, result.output
    assert shown in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_an_error_that_quotes_the_storage_url_is_masked(runner: CliRunner) -> None:
    result = runner.invoke(app, ["show", "s", "--storage", f"bogus://postgres:{SECRET}@127.0.0.1/test"])
    assert result.exit_code == 2, result.output
    assert "SchemaError: storage: unknown storage URL, but got 'bogus://postgres:***@127.0.0.1/test'" in result.stderr
    assert SECRET not in result.stdout + result.stderr


# --- a real PostgreSQL ------------------------------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.slow
def test_run_show_report_and_worker_never_print_or_write_the_password(
    runner: CliRunner, tmp_path: Path, secret_url: tuple[str, str]
) -> None:
    url, study = secret_url
    masked = url.replace(SECRET, "***")
    (tmp_path / "spec.yaml").write_text(SPEC.format(study=study, epochs=1, trials=1))
    outputs: dict[str, str] = {}

    ran = cli("run", "spec.yaml", "--storage", url, "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    outputs["run"] = ran.stdout + ran.stderr
    assert masked in ran.stdout  # the summary's storage row
    worker = cli("worker", "spec.yaml", "--storage", url, cwd=tmp_path)  # the budget is spent: it reports and stops
    assert worker.returncode == 0, worker.stdout + worker.stderr
    outputs["worker"] = worker.stdout + worker.stderr
    assert f"worker done: study '{study}' in {masked} has 1 complete" in worker.stdout

    for name, args in {
        "show": ["show", study, "--storage", url],
        "report": ["report", study, "--storage", url],
        "show unknown": ["show", "no-such-study", "--storage", url],
    }.items():
        result = runner.invoke(app, args)
        assert result.exit_code == (2 if name == "show unknown" else 0), result.output
        outputs[name] = result.stdout + result.stderr
    assert masked in outputs["show"]
    assert f"no study 'no-such-study' in {masked}" in outputs["show unknown"]

    for name, text in outputs.items():
        assert SECRET not in text, f"`tunebridge {name}` printed the password:\n{text}"
    written = files_under(tmp_path / "tunebridge-runs")
    assert {f"{study}/best.yaml", f"{study}/record.json", f"{study}/trials.csv", f"{study}/report/report.md"} <= set(
        written
    )
    for name, data in written.items():
        assert SECRET.encode() not in data, f"tunebridge-runs/{name} holds the password"
    assert masked.encode() in written[f"{study}/record.json"]  # the record names the storage, masked


@pytest.mark.services
@pytest.mark.slow
def test_ctrl_c_names_the_storage_masked(tmp_path: Path, secret_url: tuple[str, str]) -> None:
    url, study = secret_url
    (tmp_path / "spec.yaml").write_text(SPEC.format(study=study, epochs=30, trials=3))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunebridge", "run", "spec.yaml", "--storage", url, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                trials = optuna.load_study(study_name=study, storage=make_storage(url)).get_trials(deepcopy=False)
            except KeyError:
                trials = []
            if any(t.state == TrialState.RUNNING and t.params for t in trials):  # sampled; `config` comes at the end
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"no trial started within 120 s: {proc.communicate(timeout=60)}")
        time.sleep(0.5)  # inside the running trial
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert f"interrupted: finished trials are kept in {url.replace(SECRET, '***')} (study '{study}')" in err
    assert SECRET not in out + err


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("postgresql://tb:s3cret@127.0.0.1:1/test", "Check that the server runs"),  # a closed port
        ("postgresql://127.0.0.1:5432/tunebridge_no_such_db", "Create the database first"),
        ("mysql://127.0.0.1/x", "Install the driver the URL needs"),  # MySQLdb is not installed
        ("redis://127.0.0.1:1/0", "Check that the server runs"),
    ],
    ids=["closed-port", "no-database", "missing-driver", "redis-closed-port"],
)
@pytest.mark.parametrize("command", ["run", "worker", "show", "report"])
def test_a_storage_that_cannot_be_used_is_two_lines_not_a_traceback(
    command: str, url: str, fix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "tunebridge_no_such_db" in url:
        request.getfixturevalue("postgres_url")  # the server must be up for "no such database"
    (tmp_path / "spec.yaml").write_text(SPEC.format(study="s", epochs=1, trials=1))
    args = {
        "run": ["run", str(tmp_path / "spec.yaml"), "--storage", url, "--no-progress"],
        "worker": ["worker", str(tmp_path / "spec.yaml"), "--storage", url],
        "show": ["show", "s", "--storage", url],
        "report": ["report", "s", "--storage", url, "--out", str(tmp_path / "report")],
    }[command]
    result = CliRunner().invoke(app, args)
    err = result.stderr
    assert result.exit_code == 2, result.output + err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    assert err.startswith("error: the study storage ") and fix in err
    assert "s3cret" not in err
