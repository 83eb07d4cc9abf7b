"""The spec's `hydra:` section and hydra-optuna-sweeper configs read as a search (issue 19): the shape checked
without Hydra, every refusal naming the file's line and what to write instead, `tunebridge import hydra-sweeper`."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._recipes import BUNDLED
from tunebridge.errors import MissingDependencyError, SchemaError
from tunebridge.spec import load_spec, parse_spec, read_sweeper

RECIPE = BUNDLED / "hydra"
SEARCH = RECIPE / "configs" / "hparams_search" / "digits_optuna.yaml"


def _doc(**hydra: Any) -> dict[str, Any]:
    space = {"data.batch_size": [32, 64]}
    return {"hydra": {"config_dir": "configs", **hydra}, "space": space, "metric": "val/acc", "mode": "max"}


def test_the_recipe_spec_takes_its_search_from_the_sweeper_config() -> None:
    spec = load_spec(RECIPE / "spec.yaml")
    assert spec.hydra is not None and spec.builder is None and spec.model is None and spec.lightning_cli is None
    assert spec.hydra.config_dir == str(RECIPE / "configs") and spec.hydra.config_name == "train"
    assert spec.hydra.script == str(RECIPE / "train.py") and spec.hydra.search == str(SEARCH)
    assert (spec.hydra.model, spec.hydra.datamodule, spec.hydra.trainer) == ("model", "data", "trainer")
    assert (spec.hydra.callbacks, spec.hydra.loggers) == ("callbacks", "logger")
    assert spec.space.to_dict() == {
        "model.optimizer.lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True},
        "data.batch_size": {"type": "choice", "values": [32, 64, 128]},
        "model.net.lin1_size": {"type": "choice", "values": [32, 64, 128]},
        "model.net.lin2_size": {"type": "int", "low": 16, "high": 128, "step": 16},
    }
    assert (spec.metrics, spec.modes, spec.trials, spec.seed) == (("val/acc_best",), ("max",), 16, 1234)
    assert (spec.search, dict(spec.search_options), spec.study) == ("tpe", {"n_startup_trials": 6}, "hydra-digits")
    assert spec.pruner.policy == "asha" and spec.early_stopping is not None  # what the sweeper lacks


def test_the_spec_keys_win_over_the_sweeper_config_and_every_config_file_is_in_the_hash(tmp_path: Path) -> None:
    shutil.copytree(RECIPE, tmp_path / "p")
    doc = yaml.safe_load((tmp_path / "p" / "spec.yaml").read_text())
    spec = parse_spec({**doc, "trials": 3, "seed": 7, "mode": "min"}, base_dir=str(tmp_path / "p"))
    assert (spec.trials, spec.seed, spec.modes) == (3, 7, ("min",))
    before = spec.hash()
    model = tmp_path / "p" / "configs" / "model" / "digits.yaml"
    model.write_text(model.read_text().replace("lin1_size: 64", "lin1_size: 65"))
    assert parse_spec({**doc, "trials": 3, "seed": 7, "mode": "min"}, base_dir=str(tmp_path / "p")).hash() != before


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({**_doc(), "builder": "m:f"}, "give one of `hydra`, `lightning_cli`, `builder` or `model`"),
        ({**_doc(), "data": "digits"}, r"hydra: give one of `hydra`.*but got \{'data': 'digits'\}"),
        (_doc(config_nmae="train"), r"hydra: unknown key, but got 'config_nmae'. Did you mean 'config_name'\?"),
        (_doc(config_dir="confs"), r"hydra.config_dir: the Hydra config folder does not exist.*looked for .*confs"),
        (_doc(config_name="trian"), r"hydra.config_name: the Hydra config does not exist.*Did you mean 'train'\?"),
        (_doc(overrides=[1]), "`hydra.overrides` must be a list of overrides"),
        (_doc(model=None), "`hydra.model` must be a non-empty string"),
        (_doc(search="hparams_search/nope.yaml"), "the `hydra.search` file does not exist"),
        (_doc(search="hparams_search/digits_optuna.yaml"), "give the space in the spec or in the sweeper config"),
        ({"hydra": "configs", "space": {"a": [1]}, "metric": "m"}, "`hydra` must be a mapping"),
    ],
)
def test_the_section_is_checked_before_anything_imports(doc: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        parse_spec(doc, base_dir=str(RECIPE))


def test_a_spec_with_hydra_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunebridge.lightning._hydra_config import HydraBuild

    spec = parse_spec(_doc(), base_dir=str(RECIPE)).hydra
    assert spec is not None
    monkeypatch.setitem(sys.modules, "hydra", None)  # hydra-core not installed
    with pytest.raises(MissingDependencyError, match=r"hydra: .*needs the 'hydra-core' package.*tunebridge\[hydra\]"):
        HydraBuild(spec).compose({})


def _sweeper(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hparams_search" / "x.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


_HEAD = """\
# @package _global_
defaults:
  - override /hydra/sweeper: optuna
optimized_metric: val/acc
hydra:
  sweeper:
"""


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "    sampler: {_target_: optuna.samplers.GridSampler}\n",
            r"line 7: hydra.sweeper.sampler._target_: GridSampler",
        ),
        ("    sampler:\n      _target_: my.Sampler\n", r"line 8: .*a custom sampler is not carried.*search:"),
        (
            "    sampler:\n      _target_: optuna.samplers.TPESampler\n      prior_weight: 2.0\n",
            r"line 9: .*prior_weight: an option tunebridge's `tpe` search does not take",
        ),
        (
            "    params:\n      x: shuffle(range(1, 4))\n",
            r"line 8: hydra.sweeper.params.x: a sweep tunebridge cannot carry.*Shuffle",
        ),
        ("    params:\n      x: choice(1, 1.0)\n", r"line 8: hydra.sweeper.params.x: choice values must be unique"),
        ("    custom_search_space: my.space\n", r"line 7: hydra.sweeper.custom_search_space: a Python search space"),
        ("    direction: up\n", r"line 7: hydra.sweeper.direction: `direction` must be minimize or maximize"),
        ("    n_trials: 0\n", r"line 7: hydra.sweeper.n_trials: `n_trials` must be an integer >= 1"),
        ("    _target_: my.Sweeper\n", r"not hydra-optuna-sweeper's sweeper"),
        ("    params: {}\nmodel:\n  sizes: [[1], 2]\n", r"line 9: model.sizes: a nested list value in the sweeper"),
    ],
)
def test_a_sweeper_config_it_cannot_carry_is_refused_naming_the_line(tmp_path: Path, body: str, match: str) -> None:
    path = _sweeper(tmp_path, _HEAD + body)
    with pytest.raises(SchemaError, match=match):
        read_sweeper(str(path), shown="x.yaml")


def test_a_file_that_is_not_a_sweeper_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"not a hydra-optuna-sweeper config: it has no `hydra\.sweeper`"):
        read_sweeper(str(_sweeper(tmp_path, "optimized_metric: val/acc\n")))
    basic = "defaults:\n  - override /hydra/sweeper: basic\nhydra: {sweeper: {params: {}}}\n"
    with pytest.raises(SchemaError, match=r"line 2: defaults\[0\]: not a hydra-optuna-sweeper config"):
        read_sweeper(str(_sweeper(tmp_path, basic)), shown="x.yaml")


def test_what_carries_over(tmp_path: Path) -> None:
    body = (
        _HEAD.replace(
            "  - override /hydra/sweeper: optuna\n",
            "  - override /hydra/sweeper: optuna\n  - override /hydra/sweeper/sampler: random\n  - override /model: big\n",
        )
        + textwrap.indent(
            textwrap.dedent("""\
            direction: [minimize, maximize]
            n_trials: 7
            study_name: mine
            storage: sqlite:///x.db
            params:
              model.lr: interval(0.1, 0.2)
              model.act: relu
            search_space:
              model.ignored: {type: int, low: 1, high: 3}
        """),
            "    ",
        )
        + "trainer:\n  max_epochs: 5\nname: 'a b'\ntags: [dev, 'x y']\n"
    )
    search = read_sweeper(str(_sweeper(tmp_path, body)))
    assert search.space == {"model.lr": {"type": "float", "low": 0.1, "high": 0.2}}  # params win over search_space
    assert (search.mode, search.trials, search.search, search.study) == (["min", "max"], 7, "random", "mine")
    assert (search.metric, search.seed) == ("val/acc", None)
    assert search.overrides == (
        "model=big",
        "++trainer.max_epochs=5",
        "++name='a b'",
        "++tags=[dev,'x y']",
        "model.act=relu",
    )
    assert any("storage: not carried" in n for n in search.notes)
    assert any("no seed" in n for n in search.notes)


TEMPLATE = """\
# @package _global_

# example hyperparameter optimization of some experiment with Optuna:
# python train.py -m hparams_search=mnist_optuna experiment=example

defaults:
  - override /hydra/sweeper: optuna

# choose metric which will be optimized by Optuna
optimized_metric: "val/acc_best"

hydra:
  mode: "MULTIRUN" # set hydra to multirun by default if this config is attached

  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
    storage: null
    study_name: null
    n_jobs: 1
    direction: maximize
    n_trials: 20
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10 # number of random sampling runs before optimization starts
    params:
      model.optimizer.lr: interval(0.0001, 0.1)
      data.batch_size: choice(32, 64, 128, 256)
      model.net.lin1_size: choice(64, 128, 256)
      model.net.lin2_size: choice(64, 128, 256)
      model.net.lin3_size: choice(32, 64, 128, 256)
"""


def test_lightning_hydra_templates_own_search_config_carries_over(tmp_path: Path) -> None:
    search = read_sweeper(str(_sweeper(tmp_path, TEMPLATE)))  # configs/hparams_search/mnist_optuna.yaml, verbatim
    assert search.space == {
        "model.optimizer.lr": {"type": "float", "low": 0.0001, "high": 0.1},
        "data.batch_size": {"type": "choice", "values": [32, 64, 128, 256]},
        "model.net.lin1_size": {"type": "choice", "values": [64, 128, 256]},
        "model.net.lin2_size": {"type": "choice", "values": [64, 128, 256]},
        "model.net.lin3_size": {"type": "choice", "values": [32, 64, 128, 256]},
    }
    assert search.document() == {
        "space": search.space,
        "mode": "max",
        "trials": 20,
        "search": {"name": "tpe", "n_startup_trials": 10},
        "metric": "val/acc_best",
        "seed": 1234,
    }
    assert search.overrides == ()


def test_the_older_search_space_form_reads_as_the_sweeper_reads_it(tmp_path: Path) -> None:
    body = _HEAD + textwrap.indent(
        textwrap.dedent("""\
            sampler: {_target_: optuna.samplers.TPESampler, seed: 3, multivariate: true, consider_prior: true}
            search_space:
              lr: {type: float, low: 0.001, high: 0.1, log: true}
              units: {type: int, low: 8, high: 64, step: 8}
              act: {type: categorical, choices: [relu, tanh]}
        """),
        "    ",
    )
    search = read_sweeper(str(_sweeper(tmp_path, body)))
    assert search.space == {
        "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "units": {"type": "int", "low": 8, "high": 64, "step": 8},
        "act": {"type": "choice", "values": ["relu", "tanh"]},
    }
    assert (search.search, search.seed) == ({"name": "tpe", "multivariate": True}, 3)


@pytest.mark.slow
def test_import_writes_a_spec_with_the_same_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.hydra_projects.test_sweep_syntax import _hydra_values, _values

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["import", "hydra-sweeper", str(SEARCH)])
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    assert "run it with: tunebridge run tunebridge_digits_optuna.yaml" in result.stdout
    assert "Hydra's own basic sweeper stops before 128" in result.stderr  # where the readings differ
    written = tmp_path / "tunebridge_digits_optuna.yaml"
    doc = yaml.safe_load(written.read_text())
    assert doc["hydra"]["config_name"] == "train" and doc["max_epochs"] == 10  # the config's trainer.max_epochs
    assert (doc["metric"], doc["mode"], doc["trials"], doc["seed"]) == ("val/acc_best", "max", 16, 1234)
    assert doc["pruner"]["policy"] == "asha" and doc["early_stopping"]
    params = yaml.safe_load(SEARCH.read_text())["hydra"]["sweeper"]["params"]
    assert set(doc["space"]) == set(params)
    for name, text in params.items():  # the same value set as Hydra's parser and the sweeper's rules give
        assert _values(doc["space"][name]) == _hydra_values(text), name
    spec = load_spec(written)
    assert spec.hydra is not None and spec.hydra.script == str(RECIPE / "train.py")
    again = CliRunner().invoke(app, ["import", "hydra-sweeper", str(SEARCH)])
    assert again.exit_code == 2 and "the spec file exists" in again.stderr
