"""A Hydra project's config as a build (issue 19): every trial composed with Hydra's compose API and its values as
overrides, the parts instantiated as train.py does, keys and overrides checked before any trial, one clear error
for each bad input, and the best trial written as the project's own command."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunebridge.errors import SchemaError
from tunebridge.lightning._hydra_config import HydraBuild, hydra_builder
from tunebridge.schema import Choice, Float, Int, Space
from tunebridge.spec import parse_spec

pytest.importorskip("hydra")

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "hydra"
CONFIG = {"model.optimizer.lr": 0.003, "data.batch_size": 32, "model.net.lin1_size": 32, "model.net.lin2_size": 48}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the recipe (configs to edit), run from another empty folder."""
    shutil.copytree(RECIPE, tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("PROJECT_ROOT", "")
    monkeypatch.delenv("PROJECT_ROOT")  # restored after the test, whatever the build set
    yield tmp_path / "project"


def _build(folder: Path, space: Space | None = None, **hydra: Any) -> HydraBuild:
    doc = {
        "hydra": {"config_dir": "configs", **hydra},
        "space": {"data.batch_size": [32]},
        "metric": "m",
        "mode": "max",
    }
    spec = parse_spec(doc, base_dir=str(folder)).hydra
    assert spec is not None
    return hydra_builder(
        spec, space or Space(**{"data.batch_size": Choice([32, 64])}), base_dir=str(folder), max_epochs=3
    )


def test_each_trial_is_the_composed_config_with_its_values(project: Path) -> None:
    build = _build(project, Space(**{k: Float(1e-4, 0.1) if "lr" in k else Int(16, 128) for k in CONFIG}))
    work = Path.cwd()
    assert build.sweep_dir.startswith(str(work / "logs" / "train" / "multiruns"))  # ${paths.log_dir} from the cwd
    base, trial = build.trainer_options({**CONFIG, "trainer.check_val_every_n_epoch": 2})
    # The config's Trainer values, without _target_ and those tunebridge owns (max_epochs, accelerator).
    assert set(base) == {
        "default_root_dir",
        "min_epochs",
        "devices",
        "check_val_every_n_epoch",
        "deterministic",
        "log_every_n_steps",
    }
    assert trial == {"check_val_every_n_epoch": 2} and base["check_val_every_n_epoch"] == 2
    # ${paths.output_dir} = ${hydra:runtime.output_dir}: the trial's own folder in the run's sweep folder.
    assert Path(base["default_root_dir"]).parent == Path(build.sweep_dir)
    model, data = build(CONFIG)
    assert type(model).__name__ == "DigitsLitModule" and type(data).__name__ == "DigitsDataModule"
    assert model.net.model[0].out_features == 32 and model.net.model[3].out_features == 48
    optimizer = model.configure_optimizers()  # the _partial_ optimizer, given the parameters
    assert type(optimizer).__name__ == "Adam" and optimizer.defaults["lr"] == pytest.approx(0.003)
    assert data.batch_size == 32 and data.data_dir == "./data/"  # ${paths.data_dir}: the cwd without PROJECT_ROOT
    callbacks, loggers = build.trial_callbacks(CONFIG)
    assert [type(c).__name__ for c in callbacks] == ["EarlyStopping"] and loggers == []  # no progress bar
    assert build.trial_callbacks(CONFIG)[0][0] is not callbacks[0]  # fresh every trial


def test_the_users_loggers_and_a_config_group_as_a_parameter(project: Path) -> None:
    build = _build(project, Space(experiment=Choice(["small"])), overrides=["logger=csv"])
    _, loggers = build.trial_callbacks({"experiment": "small"})
    assert [type(x).__name__ for x in loggers] == ["CSVLogger"]
    assert Path(loggers[0].save_dir).parent == Path(build.sweep_dir)
    model, _ = build({"experiment": "small"})
    assert model.net.model[0].out_features == 32  # experiment/small.yaml's network


@pytest.mark.parametrize(
    ("space", "match"),
    [
        (
            Space(**{"model.optimizer.lrr": Float(0.1, 1.0)}),
            r"space.model.optimizer.lrr: a space parameter names a key that is not in the Hydra config.*"
            r"Did you mean 'model.optimizer.lr'\?",
        ),
        (Space(**{"data.batchsize": Int(8, 64)}), r"Did you mean 'data.batch_size'\?"),
        (Space(**{"trainer.max_epochs": Int(1, 5)}), r"tunebridge sets this Trainer option itself.*`max_epochs:`"),
        (Space(n=Int(1, 2), **{"model.net.lin1_size": Int(8, 64, per_layer="n")}), "a Hydra config has no per-layer"),
        (Space(model=Choice(["digits", "huge"])), r"Hydra refused the config.*model=huge.*model/huge"),
    ],
)
def test_a_space_key_not_in_the_config_is_refused_before_any_trial(project: Path, space: Space, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        _build(project, space)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["model.nope=1"], r"Hydra refused the config, but got train.yaml with model.nope=1: Could not override"),
        (["experiment=nope"], r"Hydra refused the config.*experiment=nope: .*experiment/nope"),
        (["model.net.lin1_size=choice(1"], r"Hydra refused the config.*model.net.lin1_size=choice\(1"),
        (["model.net._target_=digits_hydra_model.Nope"], r"hydra: model.net._target_: a `_target_` of the Hydra"),
        (["+trainer.nonsense=1"], r"trainer.nonsense: not an argument of Lightning's Trainer"),
        (["trainer.max_epochs=5"], r"hydra.overrides: tunebridge sets this Trainer option itself.*`max_epochs:`"),
    ],
)
def test_an_override_hydra_or_lightning_rejects_is_one_clear_error(
    project: Path, overrides: list[str], match: str
) -> None:
    with pytest.raises(SchemaError, match=match):
        _build(project, overrides=overrides)


def test_an_interpolation_that_fails_is_one_clear_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = project / "configs" / "data" / "digits.yaml"
    data.write_text(data.read_text().replace("${paths.data_dir}", "${oc.env:TUNEBRIDGE_TEST_DATA}"))
    with pytest.raises(SchemaError, match=r"hydra: data.data_dir: a Hydra interpolation failed.*TUNEBRIDGE_TEST_DATA"):
        _build(project)
    monkeypatch.setenv("TUNEBRIDGE_TEST_DATA", "/data/digits")  # as in the user's own run: the environment's value
    assert _build(project)(CONFIG)[1].data_dir == "/data/digits"
    # lightning-hydra-template's ${oc.env:PROJECT_ROOT}: set from its .project-root file, as rootutils in train.py does.
    data.write_text(data.read_text().replace("${oc.env:TUNEBRIDGE_TEST_DATA}", "${oc.env:PROJECT_ROOT}/data/"))
    monkeypatch.delenv("PROJECT_ROOT", raising=False)
    with pytest.raises(SchemaError, match=r"data.data_dir: a Hydra interpolation failed.*PROJECT_ROOT"):
        _build(project)
    (project / ".project-root").write_text("")
    assert _build(project)(CONFIG)[1].data_dir == f"{project}/data/"
    missing = project / "configs" / "callbacks" / "default.yaml"
    missing.write_text(missing.read_text().replace("monitor: val/acc", "monitor: ???"))
    with pytest.raises(SchemaError, match=r"hydra: callbacks.early_stopping.monitor: a Hydra interpolation failed"):
        _build(project)


def test_the_best_trial_is_written_as_the_projects_own_command(project: Path, tmp_path: Path) -> None:
    build = _build(project, overrides=["experiment=small"])
    paths = build.best_files({"data.batch_size": 64, "model.optimizer.lr": 0.0012}, str(tmp_path / "out"), seed=0)
    overrides = yaml.safe_load(paths["best_overrides"].read_text())
    assert overrides[:3] == ["experiment=small", "data.batch_size=64", "model.optimizer.lr=0.0012"]
    assert overrides[3] == "trainer.max_epochs=3" and overrides[4].startswith("seed=")  # the budget, the trial's seed
    script = project / "train.py"
    assert paths["best_command"].read_text().splitlines()[-1] == f"python {script} {' '.join(overrides)}"
    assert paths["command"] == f"python {script} {' '.join(overrides)}"  # the script outside the cwd: absolute


PL_MODEL = """
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(pl.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class Data(pl.LightningDataModule):
    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        self.data = TensorDataset(x, (x[:, 0] > 0).long())

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=16)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=64)
"""

PL_CONFIG = """\
model: {_target_: pl_model.Net, hidden: 8, lr: 0.01}
data: {_target_: pl_model.Data}
trainer: {_target_: pytorch_lightning.Trainer, max_epochs: 5, accelerator: cpu, log_every_n_steps: 1}
callbacks:
  early_stopping: {_target_: pytorch_lightning.callbacks.EarlyStopping, monitor: val_loss, patience: 5}
  bar: {_target_: pytorch_lightning.callbacks.TQDMProgressBar}
logger:
  csv: {_target_: pytorch_lightning.loggers.CSVLogger, save_dir: "${hydra:runtime.output_dir}", name: csv}
"""


@pytest.mark.slow
def test_a_pytorch_lightning_project_trains_with_its_callbacks_and_loggers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytorch_lightning")
    monkeypatch.chdir(tmp_path)  # Hydra's default sweep folder, multirun/DATE/TIME, is in the working directory
    from tunebridge.lightning import LightningObjective, TrialSettings

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "train.yaml").write_text(PL_CONFIG)
    (tmp_path / "pl_model.py").write_text(PL_MODEL)
    build = _build(tmp_path, Space(**{"model.hidden": Int(4, 16), "model.lr": Float(0.001, 0.1, log=True)}))
    config = {"model.hidden": 12, "model.lr": 0.05}
    callbacks, loggers = build.trial_callbacks(config)
    assert [type(c).__module__.split(".")[0] for c in [*callbacks, *loggers]] == ["pytorch_lightning"] * 2
    outcome = LightningObjective(build, TrialSettings(metric="val_loss", mode="min", max_epochs=2, seed=0))(
        config, None
    )
    assert outcome.epochs == 2 and "val_loss" in outcome.best  # the spec's budget, not the config's max_epochs
    assert Path(build.sweep_dir).parent.parent == tmp_path / "multirun"
    (metrics,) = Path(build.sweep_dir).glob("trial-*/csv/*/metrics.csv")  # the user's logger, in the trial's folder
    assert "val_loss" in metrics.read_text()


def test_a_callers_own_hydra_state_is_put_back(project: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(project / "configs"), version_base="1.3"):  # tune() inside an app
        build = _build(project)
        build(CONFIG)
        assert GlobalHydra.instance().is_initialized()
        assert compose("train").model.net.lin1_size == 64  # the caller's Hydra still composes
