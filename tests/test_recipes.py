"""Every recipe runs as a user would run it, with smaller trial counts (issue: "executed by the tests").

The recipes live in ``recipes/`` at the top of the clone and ship in the wheel as the package
``tunebridge.recipes``; the last test builds the wheel, installs it into an empty folder and runs a bundled
recipe by name from another empty folder, as a pip user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._recipes import BUNDLED

REPO = Path(__file__).resolve().parents[1]
RECIPES = BUNDLED  # the package tunebridge.recipes: in this editable clone, recipes/ at the top


def test_the_recipes_exist() -> None:
    assert RECIPES == REPO / "recipes"
    assert sorted(p.name for p in RECIPES.iterdir() if p.suffix in (".yaml", ".py")) == [
        "__init__.py",
        "custom_module.py",
        "digits_cnn.yaml",
        "digits_mlp.yaml",
        "fused_custom.py",
        "grid_vs_random_vs_tpe.py",
    ]


def test_the_recipes_have_one_home() -> None:
    # recipes/ at the top of the clone is the one place to edit: the package tunebridge.recipes is that folder
    # (pyproject.toml's package-dir), and no second copy under src/ can drift from it.
    import tunebridge.recipes

    assert Path(tunebridge.recipes.__file__).resolve().parent == BUNDLED == REPO / "recipes"
    assert not (REPO / "src" / "tunebridge" / "recipes").exists()
    names = {p.name for p in RECIPES.rglob("*") if p.suffix in (".py", ".yaml") and p.name != "__init__.py"}
    assert not [p for p in (REPO / "src").rglob("*") if p.name in names]  # nor a recipe moved elsewhere in src/


def _packages(folder: Path, name: str) -> list[str]:
    """``name`` and a dotted name for every folder under ``folder`` that holds Python files."""
    return [name] + [
        ".".join((name, *p.relative_to(folder).parts))
        for p in sorted(folder.rglob("*"))
        if p.is_dir() and "__pycache__" not in p.parts and any(p.glob("*.py"))
    ]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from Python 3.11")
def test_pyproject_lists_every_package() -> None:
    # A package outside src/ rules out packages.find, so pyproject.toml lists the packages: a new folder under
    # src/tunebridge must be added there, or the wheel would ship without it.
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"": "src", "tunebridge.recipes": "recipes"}
    expected = _packages(REPO / "src" / "tunebridge", "tunebridge") + _packages(RECIPES, "tunebridge.recipes")
    assert sorted(setuptools["packages"]) == sorted(expected)


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "trials"), [("digits_mlp", 3), ("digits_cnn.yaml", 2)])
def test_spec_recipe_runs_through_the_cli(
    recipe: str, trials: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # an empty folder: the recipe is found by name among the bundled ones
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["run", recipe, "--trials", str(trials), "--no-progress"])
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    study_name = yaml.safe_load((RECIPES / recipe).with_suffix(".yaml").read_text())["study"]
    out = tmp_path / "tunebridge-runs" / study_name
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["study"] == study_name and best["config"]
    study = optuna.load_study(study_name=study_name, storage="sqlite:///tunebridge-runs/tunebridge.db")
    states = [t.state for t in study.trials]
    assert len(states) == trials and TrialState.FAIL not in states
    assert TrialState.COMPLETE in states
    assert 0 < best["value"] <= 1  # val_acc


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("custom_module.py", ["--trials", "3"], ["best val_loss:", "best config:"]),
        ("fused_custom.py", ["--trials", "4", "--epochs", "2"], ["best val_acc"]),
        (
            "grid_vs_random_vs_tpe.py",
            ["--trials", "3", "--epochs", "2"],
            ["grid size: 36 configs", "  grid: best val_acc", "random: best val_acc", "   tpe: best val_acc"],
        ),
    ],
)
def test_script_recipe_runs(script: str, args: list[str], expected: list[str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, str(RECIPES / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stdout, proc.stdout
    assert "GPU available" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []  # the Python API keeps studies in memory by default


def _pip(*args: str | Path, cwd: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _recipe_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in (".py", ".yaml")}


@pytest.mark.slow
def test_the_installed_wheel_runs_a_bundled_recipe_by_name_from_an_empty_folder(tmp_path: Path) -> None:
    # Build from a clean copy of the sources: an in-tree build would reuse a stale build/ folder.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=skip)
    shutil.copytree(REPO / "recipes", source / "recipes", ignore=skip)  # the one source of tunebridge.recipes
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("tunebridge-*.whl")
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", site, wheel, cwd=tmp_path)
    installed = site / "tunebridge" / "recipes"
    assert _recipe_files(installed) == _recipe_files(REPO / "recipes")  # every recipe, from the top-level folder
    assert {"digits_mlp.yaml", "digits_cnn.yaml", "custom_module.py"} <= {p.name for p in installed.iterdir()}
    before = _files(site)

    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(site),  # ahead of the venv's editable install, whose packages give the dependencies
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "250",
    }

    def tunebridge(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "tunebridge", *args], capture_output=True, text=True, timeout=300, cwd=work, env=env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    probe = (
        "import tunebridge; from tunebridge.cli._recipes import BUNDLED; "
        "from tunebridge.lightning import import_builder; "
        "build = import_builder('custom_module:build', base_dir=str(BUNDLED)); "  # a builder next to a recipe
        "print(tunebridge.__file__); print(BUNDLED); print(type(build(dict(n_layers=1, lr=0.01, activation='ReLU', "
        "batch_size=16, **{'units/0': 8}))[0]).__name__)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(site / "tunebridge" / "__init__.py"), str(installed), "TinyNet"]

    listing = tunebridge("recipes")
    assert f"bundled in {installed}" in listing and "tunebridge run digits_mlp" in listing
    checked = tunebridge("check", "digits_mlp")
    assert "space of digits_mlp.yaml" in checked and "digits-mlp" in checked and "ok: the spec is valid" in checked
    ran = tunebridge("run", "digits_mlp", "--trials", "2", "--no-progress")
    assert f"the bundled recipe {installed / 'digits_mlp.yaml'}" in ran

    out = work / "tunebridge-runs" / "digits-mlp"
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["study"] == "digits-mlp" and 0 < best["value"] <= 1
    record = json.loads((out / "record.json").read_text())
    assert record["spec"] == str(installed / "digits_mlp.yaml") and record["counts"]["complete"] >= 1
    assert (work / "tunebridge-runs" / "tunebridge.db").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["tunebridge-runs"]  # everything under the working directory
    assert _files(site) == before  # nothing written into the installed package
