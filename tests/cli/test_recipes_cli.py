"""Bundled recipes on the command line: a recipe name for run/check/worker, the list, ``recipes --copy``.

The wheel itself is built, installed and run in ``tests/test_recipes.py``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._recipes import BUNDLED, bundled_files, resolve_spec
from tunebridge.errors import SchemaError
from tunebridge.spec import load_spec

NAMES = ["custom_module.py", "digits_cnn.yaml", "digits_mlp.yaml", "fused_custom.py", "grid_vs_random_vs_tpe.py"]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # an empty working directory, outside the clone
    monkeypatch.setenv("COLUMNS", "250")
    return CliRunner()


def test_the_recipes_are_the_package_tunebridge_recipes() -> None:
    # The wheel installs them as site-packages/tunebridge/recipes (tests/test_recipes.py builds and runs one);
    # this clone keeps them in recipes/ at its top, which the editable install maps to the same package.
    import tunebridge.recipes

    assert BUNDLED == Path(tunebridge.recipes.__file__).resolve().parent
    assert BUNDLED == Path(__file__).resolve().parents[2] / "recipes"
    assert [p.name for p in bundled_files()] == NAMES


@pytest.mark.parametrize(
    ("local", "arg", "expected"),
    [
        ([], "digits_mlp", BUNDLED / "digits_mlp.yaml"),
        ([], "digits_mlp.yaml", BUNDLED / "digits_mlp.yaml"),
        ([], "digits_cnn", BUNDLED / "digits_cnn.yaml"),
        (["digits_mlp.yaml"], "digits_mlp", Path("digits_mlp.yaml")),  # an edited copy here wins
        (["digits_mlp.yaml"], "digits_mlp.yaml", Path("digits_mlp.yaml")),
        (["digits_mlp"], "digits_mlp", Path("digits_mlp")),  # a file of exactly that name
        ([], "specs/digits_mlp.yaml", Path("specs/digits_mlp.yaml")),  # a path: load_spec says it is missing
    ],
)
def test_resolve_spec(
    local: list[str], arg: str, expected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in local:
        (tmp_path / name).write_text("study: mine\n")
    assert resolve_spec(Path(arg)) == expected


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("digits_mpl", "Did you mean 'digits_mlp'? Bundled recipes: digits_cnn, digits_mlp"),
        ("nope.yaml", "no bundled recipe of that name, but got 'nope.yaml'. Bundled recipes: digits_cnn, digits_mlp"),
        ("custom_module", "'custom_module' is a Python script, not a spec: run python "),
    ],
)
def test_resolve_spec_refuses_an_unknown_name(
    arg: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SchemaError, match=re.escape(message)):
        resolve_spec(Path(arg))


def test_a_bundled_spec_keeps_the_package_folder_as_its_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_spec(resolve_spec(Path("digits_mlp")))
    assert spec.base_dir == str(BUNDLED)  # a `builder: module:function` next to a recipe is found there
    assert spec.study == "digits-mlp"  # the recipe's own study name, not the file's stem


@pytest.mark.parametrize("command", ["check", "run", "worker"])
def test_every_spec_command_takes_a_recipe_name(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "digits_mpl"])
    assert result.exit_code == 2, result.output
    assert "SchemaError: spec: no spec file of that name here, and no bundled recipe of that name" in result.stderr
    assert "Did you mean 'digits_mlp'?" in result.stderr


def test_check_runs_a_bundled_recipe_by_name_from_an_empty_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "digits_mlp"])
    assert result.exit_code == 0, result.output
    assert "space of digits_mlp.yaml" in result.stdout and "digits-mlp" in result.stdout
    assert f"the bundled recipe {BUNDLED / 'digits_mlp.yaml'}" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_recipes_lists_the_package_recipes_not_the_working_directory(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "decoy.yaml").write_text("# a decoy\n")
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.stdout
    assert "decoy" not in result.stdout
    assert f"bundled in {BUNDLED}" in result.stdout
    assert "tunebridge run digits_mlp" in result.stdout and "tunebridge recipes --copy DIR" in result.stdout


def test_recipes_copy_writes_editable_copies_and_never_overwrites_without_force(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["recipes", "--copy", "mine"])
    assert result.exit_code == 0, result.output
    assert "wrote 7 recipes into mine" in result.stdout and "tunebridge run mine/digits_mlp.yaml" in result.stdout
    mine = tmp_path / "mine"
    assert sorted(p.name for p in mine.iterdir()) == sorted([*NAMES, "hydra", "lightning_cli"])
    # A folder recipe is copied whole, and a copy runs by its folder's name (its spec.yaml).
    folder = sorted(p.name for p in (mine / "lightning_cli").iterdir())
    assert folder == ["base.yaml", "digits_cli_model.py", "main.py", "spec.yaml"]
    assert resolve_spec(Path("mine/lightning_cli")) == Path("mine/lightning_cli/spec.yaml")
    # A Hydra project is copied with its configs/ tree (config groups are subfolders).
    copied = {str(p.relative_to(mine / "hydra")) for p in (mine / "hydra").rglob("*.yaml")}
    assert {"spec.yaml", "configs/train.yaml", "configs/hparams_search/digits_optuna.yaml"} <= copied
    for name in NAMES:
        copy = mine / name
        assert copy.read_bytes() == (BUNDLED / name).read_bytes()
        assert copy.stat().st_mode & stat.S_IWUSR and os.access(copy, os.W_OK)

    (mine / "digits_mlp.yaml").write_text("study: edited\n")
    result = runner.invoke(app, ["recipes", "--copy", "mine"])
    assert result.exit_code == 2
    assert (
        "SchemaError: recipes --copy: `--copy` never overwrites files, but got mine/custom_module.py" in result.stderr
    )
    assert "Pass --force to overwrite them" in result.stderr
    assert (mine / "digits_mlp.yaml").read_text() == "study: edited\n"  # nothing was written

    result = runner.invoke(app, ["recipes", "--copy", "mine", "--force"])
    assert result.exit_code == 0, result.output
    assert (mine / "digits_mlp.yaml").read_bytes() == (BUNDLED / "digits_mlp.yaml").read_bytes()


def test_recipes_copy_into_a_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = runner.invoke(app, ["recipes", "--copy", "taken"])
    assert result.exit_code == 2
    assert "the destination of `--copy` must be a folder, but got 'taken'" in result.stderr


def test_a_copied_recipe_is_used_by_name(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["recipes", "--copy", "."]).exit_code == 0
    (tmp_path / "digits_mlp.yaml").write_text(
        (tmp_path / "digits_mlp.yaml").read_text().replace("study: digits-mlp", "study: my-mlp")
    )
    result = runner.invoke(app, ["check", "digits_mlp"])
    assert result.exit_code == 0, result.output
    assert "my-mlp" in result.stdout
    assert "using digits_mlp.yaml from the working directory" in result.stderr


@pytest.mark.slow
def test_recipes_shows_each_command_whole_on_its_own_line_at_80_columns(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = CliRunner().invoke(app, ["recipes"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    for path in bundled_files():
        command = (
            f"tunebridge run {path.stem}" if path.suffix == ".yaml" else f"python -m tunebridge.recipes.{path.stem}"
        )
        assert command in lines, f"{command!r} is not whole on a line of its own:\n{result.stdout}"
    # and the command a Python recipe shows runs it (its --help, from an empty folder)
    help_text = subprocess.run(
        [sys.executable, "-m", "tunebridge.recipes.custom_module", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "--trials" in help_text
