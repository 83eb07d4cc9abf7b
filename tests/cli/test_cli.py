"""The ``tunebridge`` CLI: check, run/resume, show, report, recipes, spec changes, and Ctrl-C.

In-process through ``typer.testing.CliRunner`` (Lightning is imported once), plus two subprocesses: one
that proves ``--help``/``check`` never import torch, and one interrupted with SIGINT mid-trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from tunebridge._record import bookkeeping
from tunebridge.cli import app
from tunebridge.cli._recipes import BUNDLED

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(BUNDLED.glob("*.yaml"))
DB = "tunebridge-runs/tunebridge.db"
STORAGE = f"sqlite:///{DB}"

TINY = textwrap.dedent("""\
    study: tiny
    model: mlp
    data: digits
    space:
      n_layers: {type: int, low: 1, high: 2}
      units: {type: choice, values: [16, 32], ordered: true, per_layer: n_layers}
      lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    metric: val_acc
    mode: max
    max_epochs: 2
    search: random
    trials: 3
    seed: 0
    threads: 1
    """)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "250")  # rich tables would truncate names at 80 columns
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def load(storage: str = STORAGE, study: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=study, storage=storage)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    """One real `tunebridge run` of the tiny spec; tests copy its folder and go on from there."""
    folder = tmp_path_factory.mktemp("first-run")
    (folder / "tiny.yaml").write_text(TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("COLUMNS", "250")
        result = CliRunner().invoke(app, ["run", "tiny.yaml", "--no-progress"])
    yield folder, result.exit_code, result.stdout + result.stderr


@pytest.fixture
def ran(first_run: tuple[Path, int, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the first run's folder, as the working directory."""
    folder, code, output = first_run
    assert code == 0, output
    work = tmp_path / "work"
    shutil.copytree(folder, work)
    monkeypatch.chdir(work)
    return work


# --- fast start -------------------------------------------------------------------------------------------------


def test_help_and_check_do_not_import_torch() -> None:
    code = textwrap.dedent("""
        import sys
        from typer.testing import CliRunner
        from tunebridge.cli import app
        r = CliRunner().invoke(app, ["--help"])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["check", "digits_mlp"])  # a bundled recipe, by name
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["recipes"])
        assert r.exit_code == 0, r.output
        heavy = sorted(m for m in ("torch", "lightning", "pytorch_lightning") if m in sys.modules)
        assert not heavy, f"imported: {heavy}"
        print("light")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("light")


def test_help_lists_the_commands(runner: CliRunner) -> None:
    code, out, _ = invoke(runner, "--help")
    assert code == 0
    for command in ("run", "worker", "check", "show", "report", "recipes"):
        assert command in out


# --- check ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", RECIPES, ids=[p.name for p in RECIPES])
def test_check_recipes(runner: CliRunner, spec: Path) -> None:
    assert len(RECIPES) == 2
    code, out, err = invoke(runner, "check", str(spec))
    assert code == 0, out + err
    data = yaml.safe_load(spec.read_text())
    assert f"space of {spec.name}" in out
    for name in ("lr", "batch_size", "optimizer", "momentum", "activation"):
        assert name in out
    for row in ("grid size", "spec hash", "conditional", "metric", data["metric"]):
        assert row in out
    assert "samplers model its order" in out  # ordered choices: values stored, order seen by model-based samplers
    assert "ok: the spec is valid" in out


def test_check_shows_reachable_values_conditions_and_grid_size(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "g.yaml"
    spec.write_text(
        textwrap.dedent("""\
        model: mlp
        data: digits
        space:
          n_layers: {type: int, low: 1, high: 3}
          units: {type: choice, values: [16, 32], ordered: true, per_layer: n_layers}
          optimizer: {type: choice, values: [sgd, momentum]}
          momentum: {type: float, low: 0.5, high: 0.9, grid: [0.5, 0.9], when: {optimizer: momentum}}
        metric: val_loss
        mode: min
        """)
    )
    code, out, err = invoke(runner, "check", str(spec))
    assert code == 0, out + err
    assert "[1, 3] = 1, 2, 3" in out
    assert "units/0..units/2 by n_layers" in out
    assert "optimizer in ['momentum']" in out
    # (2 + 4 + 8) unit combinations x (1 + 2) optimizer/momentum combinations
    assert "grid size      │ 42" in out


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        (TINY.replace("metric:", "metrc:"), ["SchemaError", "metrc", "metric"]),
        (TINY.replace("high: 2}", "high: 0}"), ["SchemaError", "`low <= high` must hold"]),
        (TINY.replace("search: random", "search: tpee"), ["SchemaError", "unknown search algorithm", "tpe"]),
        ("model: mlp\ndata: digits\nmetric: val_loss\n", ["SchemaError", "a spec needs a `space`"]),
        ("space: [1, 2\n", ["SchemaError"]),
        (
            TINY.replace(
                "type: choice, values: [16, 32], ordered: true", "type: int, low: 16, high: 256, step: 16, log: true"
            ),
            ["optuna cannot express 'units' with log=True and step=16"],
        ),
        (
            TINY.replace("model: mlp\ndata: digits", "builder: tb_no_such_module:build"),
            ["builder module 'tb_no_such_module' cannot be found"],
        ),
        (TINY.replace("search: random", "search: grid"), ["lr", "a grid search needs the values of every float"]),
    ],
    ids=["typo", "low>high", "unknown-search", "no-space", "yaml-syntax", "conversion", "no-builder", "grid-float"],
)
def test_check_exits_2_on_a_bad_spec(runner: CliRunner, tmp_path: Path, text: str, messages: list[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    code, out, err = invoke(runner, "check", str(spec))
    assert code == 2, out + err
    assert "error:" in err
    for message in messages:
        assert message in err, err
    assert "ok: the spec is valid" not in out


def test_check_missing_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    code, _, err = invoke(runner, "check", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "the spec file does not exist" in err


# --- run, resume, show, report ----------------------------------------------------------------------------------


def test_run_writes_best_and_record_and_prints_a_summary(first_run: tuple[Path, int, str]) -> None:
    folder, code, output = first_run
    assert code == 0, output
    for text in (
        "study 'tiny' (optuna, random)",
        "best value",
        "[val_acc (max)]",  # square brackets are text, not rich markup
        "best config",
        "3 complete, 0 pruned, 0 failed",
        "wall time",
        "tunebridge-runs/tiny/best.yaml",
    ):
        assert text in output
    out = folder / "tunebridge-runs" / "tiny"
    best = yaml.safe_load((out / "best.yaml").read_text())
    record = json.loads((out / "record.json").read_text())
    assert best["study"] == "tiny" and 0 < best["value"] <= 1
    assert set(best["config"]) >= {"n_layers", "units/0", "lr"}
    assert len(record["spec_hash"]) == 64 and record["seed"] == 0
    assert record["versions"]["optuna"] == optuna.__version__ and record["versions"]["torch"]
    assert record["counts"]["complete"] == 3 and record["spec"] == "tiny.yaml"
    assert (out / "trials.csv").is_file()
    assert (folder / DB).is_file()  # the default storage, relative to the working directory


def test_run_again_resumes(ran: Path, runner: CliRunner) -> None:
    before = [(t.number, t.params, t.value) for t in load().trials]
    assert len(before) == 3
    code, out, err = invoke(runner, "run", "tiny.yaml", "--no-progress")
    assert code == 0, out + err
    assert [(t.number, t.params, t.value) for t in load().trials] == before  # budget reached: nothing new
    code, out, err = invoke(runner, "run", "tiny.yaml", "--trials", "5")  # with the progress bar
    assert code == 0, out + err
    study = load()
    assert [(t.number, t.params, t.value) for t in study.trials][:3] == before
    assert len(finished(study)) == 5
    assert "5 complete, 0 pruned, 0 failed" in out
    # no terminal: one line per finished trial, counting the whole study (as the summary does), best so far, ETA
    assert "tuning 4/5 ✓4 ✂0 ✗0 best 0." in err and "| trial 3 complete (val_acc 0." in err
    assert "tuning 5/5 ✓5 ✂0 ✗0 best 0." in err and "eta" in err and err.count("tuning ") == 2


def test_show_lists_the_record_and_trials(ran: Path, runner: CliRunner) -> None:
    record = json.loads((ran / "tunebridge-runs" / "tiny" / "record.json").read_text())
    code, out, err = invoke(runner, "show", "tiny")
    assert code == 0, out + err
    assert record["spec_hash"] in out
    assert "versions" in out and f"optuna {optuna.__version__}" in out
    assert "random" in out and "val_acc (max)" in out and "3 complete" in out
    assert out.count("COMPLETE") == 3
    for column in ("number", "state", "value", "epochs", "n_layers", "units/0", "lr"):
        assert column in out
    code, out, err = invoke(runner, "show", "tiny", "--columns", "number,val_loss,val_acc,n_params")
    assert code == 0, out + err
    for column in ("val_loss", "val_acc", "n_params"):
        assert column in out
    code, out, err = invoke(runner, "show", "tiny", "--storage", STORAGE, "--limit", "1")
    assert code == 0 and out.count("COMPLETE") == 1


def test_show_unknown_study_exits_2(ran: Path, runner: CliRunner) -> None:
    code, _, err = invoke(runner, "show", "nope")
    assert code == 2
    assert "no study 'nope'" in err and "studies there: tiny" in err


@pytest.mark.slow
def test_report_writes_markdown_and_plots(ran: Path, runner: CliRunner) -> None:
    code, out, err = invoke(runner, "report", "tiny")
    assert code == 0, out + err
    folder = ran / "tunebridge-runs" / "tiny" / "report"
    text = (folder / "report.md").read_text()
    assert text.startswith("# Study `tiny`")
    assert "![history](history.png)" in text and "![curves](curves.png)" in text
    for png in ("history.png", "curves.png"):
        assert (folder / png).read_bytes().startswith(b"\x89PNG")
    code, out, err = invoke(runner, "report", "tiny", "--out", "elsewhere")
    assert code == 0, out + err
    assert (ran / "elsewhere" / "report.md").is_file()


def test_recipes_lists_the_four_recipes(runner: CliRunner) -> None:
    code, out, err = invoke(runner, "recipes")
    assert code == 0, out + err
    for name in (
        "digits_mlp.yaml",
        "digits_cnn.yaml",
        "custom_module.py",
        "fused_custom.py",
        "grid_vs_random_vs_tpe.py",
    ):
        assert name in out
    assert "tunebridge run" in out and "python" in out


def test_a_changed_spec_is_refused_unless_forced(ran: Path, runner: CliRunner) -> None:
    (ran / "tiny.yaml").write_text(TINY.replace("max_epochs: 2", "max_epochs: 3"))
    code, out, err = invoke(runner, "run", "tiny.yaml", "--trials", "4", "--no-progress")
    assert code == 2, out + err
    assert "SpecMismatchError: study 'tiny' in this storage was started from a different spec" in err
    assert "--force" in err
    assert len(load().trials) == 3  # nothing ran
    code, out, err = invoke(runner, "run", "tiny.yaml", "--trials", "4", "--force", "--no-progress")
    assert code == 0, out + err
    assert len(finished(load())) == 4


def test_run_with_a_builder_module_next_to_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "tb_cli_user_builder.py").write_text(
        textwrap.dedent("""\
        from tunebridge.lightning.builtin import build_builtin

        def build(config):
            return build_builtin("mlp", "wine", config, max_epochs=1, seed=0)
        """)
    )
    spec = TINY.replace("model: mlp\ndata: digits", "builder: tb_cli_user_builder:build").replace(
        "trials: 3", "trials: 1"
    )
    (specs / "custom.yaml").write_text(spec.replace("study: tiny", "study: custom"))
    monkeypatch.chdir(tmp_path)  # not the spec's folder: the builder is found next to the spec
    code, out, err = invoke(runner, "check", "specs/custom.yaml")
    assert code == 0, out + err
    assert "tb_cli_user_builder:build" in out
    code, out, err = invoke(runner, "run", "specs/custom.yaml", "--no-progress")
    assert code == 0, out + err
    assert "1 complete, 0 pruned, 0 failed" in out


def test_a_new_study_name_starts_fresh(ran: Path, runner: CliRunner) -> None:
    code, out, err = invoke(
        runner, "run", "tiny.yaml", "--study", "other", "--trials", "1", "--no-progress", "--out", "out-other"
    )
    assert code == 0, out + err
    assert len(load(study="other").trials) == 1 and len(load().trials) == 3
    assert (ran / "out-other" / "best.yaml").is_file()


def trial_states(db: Path) -> dict[int, str]:
    """Trial number -> state, read straight from the SQLite file, read-only.

    Opening it through Optuna here would race the CLI process creating the schema in the same file.
    """
    if not db.is_file():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return dict(conn.execute("SELECT number, state FROM trials"))
    except sqlite3.OperationalError:  # the tables are not created yet, or the file is locked
        return {}


# --- Ctrl-C -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_then_resume_loses_no_finished_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    # long enough trials (~2 s) that the signal lands inside one
    (tmp_path / "intr.yaml").write_text(
        TINY.replace("study: tiny", "study: intr").replace("max_epochs: 2", "max_epochs: 30")
    )
    monkeypatch.chdir(tmp_path)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunebridge", "run", "intr.yaml", "--no-progress"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        # Ctrl-C as a terminal sends it, also when the suite itself was started with SIGINT ignored (`cmd &`)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        running = None
        deadline = time.monotonic() + 60
        while running is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            states = trial_states(tmp_path / DB)
            if "COMPLETE" in states.values() and "RUNNING" in states.values():
                running = max(n for n, state in states.items() if state == "RUNNING")
        if running is None:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"no finished trial within 60 s (exit code {proc.returncode}):\n{err.decode()}")
        time.sleep(0.5)  # well inside the running trial
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out.decode() + err.decode()
    assert "interrupted" in err.decode() and "Run the same command again to resume" in err.decode()

    study = load(study="intr")
    kept = {t.number: (t.state, t.params, t.value) for t in finished(study)}
    assert kept and running not in kept
    interrupted = study.trials[running]
    assert interrupted.state == TrialState.FAIL
    assert bookkeeping(interrupted, "requeued") is True
    assert interrupted.user_attrs["fail_reason"].startswith("KeyboardInterrupt: interrupted")

    code, out2, err2 = invoke(runner, "run", "intr.yaml", "--no-progress")
    assert code == 0, out2 + err2
    study = load(study="intr")
    assert len(finished(study)) == 3  # the budget is complete
    for number, before in kept.items():  # no finished trial lost or changed
        t = study.trials[number]
        assert (t.state, t.params, t.value) == before
    retries = [t for t in study.trials if bookkeeping(t, "retry_of") == running]
    assert len(retries) == 1
    assert retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["config"] == interrupted.user_attrs["config"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--address", "auto"],
            "error: SchemaError: --address: these options are the Ray backend's, but got "
            "--address with backend 'optuna'. Add --backend ray",
        ),
        (["--resume"], "error: SchemaError: --resume: these options are the Ray backend's"),
        (
            ["--backend", "ray", "--trial-timeout", "5"],
            "error: SchemaError: run.workers: Ray runs and retries trials in its own actors",
        ),
    ],
    ids=["address-on-optuna", "resume-on-optuna", "trial-timeout-on-ray"],
)
def test_an_option_the_backend_would_ignore_is_refused(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY)
    code, _, err = invoke(runner, "run", "tiny.yaml", "--no-progress", *flags)
    assert code == 2 and err.startswith(message), err
    assert not (tmp_path / "tunebridge-runs").exists()  # refused before any trial
