"""LightningCLI configs as a build: dotted keys checked against the parsed config, values parsed by the
project's own LightningCLI parser, Trainer values into the runner's options, the best trial as a config
that ``main.py fit --config`` runs unchanged (issue #11, part 1; Lightning#16836)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._recipes import BUNDLED
from tunebridge.errors import SchemaError
from tunebridge.lightning._cli_config import CliConfigBuild, cli_builder
from tunebridge.schema import Float, Int, Space
from tunebridge.spec import load_spec, parse_spec

pytest.importorskip("jsonargparse")

RECIPE = BUNDLED / "lightning_cli"


def _spec(space: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "lightning_cli": {"model": "digits_cli_model:DigitsClassifier", "config": ["base.yaml"], **extra},
        "space": space,
        "metric": "val_acc",
        "mode": "max",
    }


def test_the_recipe_spec_names_its_config_and_dotted_keys() -> None:
    spec = load_spec(RECIPE / "spec.yaml")
    assert spec.lightning_cli is not None and spec.builder is None and spec.model is None
    assert spec.lightning_cli.config == (str(RECIPE / "base.yaml"),)
    assert "model.init_args.lr" in spec.space and "trainer.gradient_clip_val" in spec.space
    # The base config's contents are part of the spec's meaning: editing base.yaml changes the hash.
    assert "lightning_cli" in spec.meaning()


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({**_spec({"a": [1, 2]}), "builder": "m:f"}, "give one of `lightning_cli`, `builder` or `model`"),
        (_spec({"a": [1, 2]}, conifg=["x"]), r"lightning_cli: unknown key, but got 'conifg'. Did you mean 'config'\?"),
        ({**_spec({"a": [1, 2]}), "lightning_cli": {"model": "a:B"}}, "`lightning_cli.config` must name the base"),
        (_spec({"a": [1, 2]}, model="no colon"), r"`lightning_cli.model` must be 'module:Class'"),
        (
            {**_spec({"a": [1, 2]}), "lightning_cli": {"config": "missing.yaml"}},
            "a `lightning_cli.config` file does not",
        ),
    ],
)
def test_the_section_is_checked_before_anything_imports(doc: dict[str, object], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        parse_spec(doc, base_dir=str(RECIPE))


def test_dots_are_allowed_in_parameter_names_and_slashes_are_not() -> None:
    assert Space(**{"model.init_args.lr": Float(0.1, 1.0)}).names == ("model.init_args.lr",)
    with pytest.raises(SchemaError, match="reserved for per-layer copies"):
        Space.from_dict({"model/lr": {"type": "float", "low": 0.1, "high": 1.0}})


@pytest.mark.parametrize(
    ("name", "param", "match"),
    [
        (
            "model.init_args.lrr",
            Float(0.1, 1.0),
            r"space.model.init_args.lrr: .* not in the LightningCLI config.* "
            r"Did you mean 'model.init_args.lr'\?",
        ),
        ("data.init_args.batchsize", Int(8, 64), r"Did you mean 'data.init_args.batch_size'\?"),
        ("trainer.max_epochs", Int(1, 5), r"tunebridge sets this Trainer option itself.*set `max_epochs:` in the spec"),
        ("model.init_args.hidden", Int(8, 64, per_layer="n"), "a LightningCLI config has no per-layer keys"),
    ],
)
def test_a_key_not_in_the_config_is_refused_before_any_trial(name: str, param: object, match: str) -> None:
    spec = parse_spec(_spec({"n": {"type": "int", "low": 1, "high": 2}}), base_dir=str(RECIPE)).lightning_cli
    assert spec is not None
    space = Space(n=Int(1, 2), **{name: param}) if getattr(param, "per_layer", None) else Space(**{name: param})
    with pytest.raises(SchemaError, match=match):
        cli_builder(spec, space, base_dir=str(RECIPE), max_epochs=2)


def _build() -> CliConfigBuild:
    spec = load_spec(RECIPE / "spec.yaml")
    assert spec.lightning_cli is not None
    return cli_builder(spec.lightning_cli, spec.space, base_dir=spec.base_dir, max_epochs=3)


def test_values_are_parsed_by_the_projects_own_parser_and_trainer_values_become_trainer_options() -> None:
    build = _build()
    config = {"model.init_args.hidden": 24, "model.init_args.lr": 0.003, "trainer.gradient_clip_val": 1.0}
    base, trial = build.trainer_options(config)
    # The base config's Trainer values, without those tunebridge owns (max_epochs, logger, checkpointing, ...).
    assert base == {"devices": 1, "enable_model_summary": False, "gradient_clip_val": 1.0}
    assert trial == {"gradient_clip_val": 1.0}
    model, data = build(config)
    assert type(model).__name__ == "DigitsClassifier" and type(data).__name__ == "DigitsData"
    assert model.hparams.hidden == 24 and model.lr == pytest.approx(0.003) and data.batch_size == 64
    with pytest.raises(SchemaError, match=r"the LightningCLI parser refused the config.*--model.init_args.hidden=wide"):
        build({"model.init_args.hidden": "wide"})


def test_cli_may_name_main_pys_function_and_its_lightningcli_is_used_as_main_py_makes_it(tmp_path: Path) -> None:
    spec = parse_spec(_spec({"model.init_args.hidden": [20]}), base_dir=str(RECIPE)).lightning_cli
    assert spec is not None
    spec = replace(spec, cli="main:cli_main", model=None)  # main.py: LightningCLI(DigitsClassifier, DigitsData, ...)
    build = cli_builder(spec, Space(**{"model.init_args.hidden": Int(20, 21)}), base_dir=str(RECIPE), max_epochs=2)
    model, data = build({"model.init_args.hidden": 21})
    assert (type(model).__name__, type(data).__name__, model.hparams.hidden) == ("DigitsClassifier", "DigitsData", 21)
    (tmp_path / "not_a_cli.py").write_text(
        "from lightning.pytorch.cli import LightningCLI\n\ndef main():\n    return 1\n"
    )
    other = replace(spec, cli="not_a_cli:main")
    with pytest.raises(SchemaError, match=r"`lightning_cli.cli` returned without constructing a LightningCLI"):
        cli_builder(other, Space(**{"model.init_args.hidden": Int(20, 21)}), base_dir=str(tmp_path), max_epochs=2)


@pytest.mark.slow
def test_the_recipe_runs_and_its_best_config_runs_with_main_py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["run", "lightning_cli", "--trials", "3", "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    out = tmp_path / "tunebridge-runs" / "lightning-cli"
    best = yaml.safe_load((out / "best.yaml").read_text())
    full = yaml.safe_load((out / "best_config.yaml").read_text())
    assert full["model"]["init_args"]["hidden"] == best["config"]["model.init_args.hidden"]
    assert full["data"]["init_args"]["batch_size"] == best["config"]["data.init_args.batch_size"]
    assert full["trainer"]["gradient_clip_val"] == best["config"]["trainer.gradient_clip_val"]
    assert full["trainer"]["max_epochs"] == 6  # the budget the trial trained under
    study = optuna.load_study(study_name="lightning-cli", storage="sqlite:///tunebridge-runs/tunebridge.db")
    assert len(study.trials) == 3 and TrialState.FAIL not in [t.state for t in study.trials]
    # The user's own entry point runs it unchanged (one epoch, from another folder).
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(
        [
            sys.executable,
            str(RECIPE / "main.py"),
            "fit",
            "--config",
            str(out / "best_config.yaml"),
            "--trainer.max_epochs=1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_the_recipe_runs_on_ray(ray_instance: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(
        app, ["run", "lightning_cli", "--backend", "ray", "--trials", "2", "--no-progress", "--max-concurrent", "1"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    out = tmp_path / "tunebridge-runs" / "lightning-cli"
    best = yaml.safe_load((out / "best.yaml").read_text())
    full = yaml.safe_load((out / "best_config.yaml").read_text())
    assert set(best["config"]) <= {
        "model.init_args.lr",
        "model.init_args.hidden",
        "model.init_args.dropout",
        "data.init_args.batch_size",
        "trainer.gradient_clip_val",
    }
    assert full["model"]["init_args"]["lr"] == pytest.approx(best["config"]["model.init_args.lr"])
