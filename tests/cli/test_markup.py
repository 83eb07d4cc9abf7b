"""The CLI shows user text literally: rich must not read ``[min, min]`` or ``[/]`` in a message or a value as markup."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunebridge.cli import app

TINY = textwrap.dedent("""\
    study: brackets
    model: mlp
    data: digits
    space:
      n_layers: {type: int, low: 1, high: 2}
      act: {type: choice, values: ["[bold]relu", "[/]", "[min, min]"]}
    metric: val_acc
    mode: max
    max_epochs: 1
    search: random
    trials: 1
    seed: 0
    """)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    return CliRunner()


@pytest.mark.parametrize("command", ["check", "run", "worker"])
def test_an_error_message_keeps_its_square_brackets(runner: CliRunner, tmp_path: Path, command: str) -> None:
    (tmp_path / "spec.yaml").write_text(TINY.replace("mode: max", "mode: minimise"))
    result = runner.invoke(app, [command, "spec.yaml"])
    assert result.exit_code == 2, result.output
    assert "`mode` must be min or max, one per metric, but got 'minimise'." in result.stderr
    assert "Write e.g. mode: max, or [min, min] for two metrics." in result.stderr


def test_check_tables_keep_values_that_look_like_markup(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(TINY)
    result = runner.invoke(app, ["check", "spec.yaml", "--sample", "6"])
    assert result.exit_code == 0, result.output  # an unescaped "[/]" would even raise rich's MarkupError
    assert "'[bold]relu', '[/]', '[min, min]'" in result.stdout  # the space table
    assert "[bold]relu" in result.stdout.split("configs as search: random draws them")[1]  # the sample table
    assert "ok: the spec is valid" in result.stdout


def test_show_keeps_a_failure_reason_with_square_brackets(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "tb_markup_builder.py").write_text(
        "def build(config):\n    raise ValueError('no [gpu] for ' + config['act'])\n"
    )
    (tmp_path / "spec.yaml").write_text(TINY.replace("model: mlp\ndata: digits", "builder: tb_markup_builder:build"))
    result = runner.invoke(app, ["run", "spec.yaml", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "0 complete, 0 pruned, 1 failed" in result.stdout
    result = runner.invoke(app, ["show", "brackets"])
    assert result.exit_code == 0, result.output
    assert "ValueError: no [gpu] for [" in result.stdout
