"""Built-in LightningModules: structure from a config, optimisers, schedules, penalties, real training."""

from __future__ import annotations

import importlib
import math
import pickle
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tunebridge.errors import SchemaError
from tunebridge.lightning import models
from tunebridge.lightning.builtin import build_builtin, make_classes
from tunebridge.lightning.models import (
    ConvNetClassifier,
    MLPClassifier,
    TrainingConfig,
    convnet_network,
    l1_norm,
    mlp_network,
)

torch.set_num_threads(1)

NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]


def _trainer(pl: ModuleType, epochs: int) -> Any:
    return pl.Trainer(
        max_epochs=epochs,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )


def _batch(n: int = 16, features: int = 64, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, features, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def _count(module: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


# --- real training, on both Lightning packages -------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(
    ("model", "config", "epochs", "min_acc"),
    [
        ("mlp", {"lr": 1e-2, "optimizer": "adam"}, 3, 0.85),
        ("cnn", {"lr": 1e-2, "optimizer": "adam", "batch_norm": True}, 3, 0.5),
    ],
)
def test_builtin_models_learn_digits(
    namespace: str, model: str, config: dict[str, Any], epochs: int, min_acc: float
) -> None:
    pl = importlib.import_module(namespace)
    module, dm = build_builtin(model, "digits", config, max_epochs=epochs, seed=0, namespace=namespace)
    assert isinstance(module, pl.LightningModule) and isinstance(dm, pl.LightningDataModule)
    trainer = _trainer(pl, epochs)
    trainer.fit(module, dm)
    metrics = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_acc"} <= set(metrics)
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0
    assert float(metrics["val_acc"]) > min_acc


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_schedule_steps_once_per_epoch_under_trainer(namespace: str, tmp_path: Path) -> None:
    pl = importlib.import_module(namespace)
    config = {"lr": 0.01, "lr_schedule": "exponential", "lr_gamma": 0.5, "n_layers": 1, "units/0": 8}
    module, dm = build_builtin("mlp", "wine", config, max_epochs=2, seed=0, namespace=namespace)
    trainer = _trainer(pl, 2)
    trainer.fit(module, dm)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)
    # save_hyperparameters keeps everything needed to rebuild the module from a checkpoint
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    restored = type(module).load_from_checkpoint(tmp_path / "m.ckpt")
    assert restored.config == config and restored.hparams.n_features == 13
    for a, b in zip(module.state_dict().values(), restored.state_dict().values()):
        torch.testing.assert_close(a, b)


# --- classes per Lightning package ---------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_classes_derive_from_their_own_package(namespace: str) -> None:
    pl = importlib.import_module(namespace)
    other = importlib.import_module(next(n for n in NAMESPACES if n != namespace))
    classes = make_classes(namespace)
    assert classes is make_classes(namespace)
    assert classes.namespace == namespace
    for name in ("MLPClassifier", "ConvNetClassifier"):
        assert issubclass(getattr(classes, name), pl.LightningModule)
        assert not issubclass(getattr(classes, name), other.LightningModule)
    for name in ("DigitsDataModule", "BreastCancerDataModule", "WineDataModule"):
        assert issubclass(getattr(classes, name), pl.LightningDataModule)


def test_module_level_classes_are_the_default_package() -> None:
    default = make_classes()
    assert MLPClassifier is default.MLPClassifier and ConvNetClassifier is default.ConvNetClassifier
    assert MLPClassifier.__name__ == "MLPClassifier"


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("kind", ["MLPClassifier", "ConvNetClassifier"])
def test_modules_pickle_by_reference(namespace: str, kind: str) -> None:
    cls = getattr(make_classes(namespace), kind)
    kwargs: dict[str, Any] = {"n_features": 64} if kind == "MLPClassifier" else {"input_shape": (1, 8, 8)}
    module = cls({"n_layers": 1}, n_classes=10, **kwargs)
    restored = pickle.loads(pickle.dumps(module))
    assert type(restored) is cls
    torch.testing.assert_close(restored.state_dict(), module.state_dict())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_classes("lightning"), r"namespace: must be one of 'lightning.pytorch', 'pytorch_lightning'"),
        (lambda: models.NoSuchThing, r"has no attribute 'NoSuchThing'"),
    ],
)
def test_bad_namespace_or_attribute(call: Any, match: str) -> None:
    with pytest.raises((SchemaError, AttributeError), match=match):
        call()


# --- structure ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "widths"),
    [
        ({}, [64, 64, 10]),
        ({"n_layers": 0}, [10]),
        ({"n_layers": 3, "units/0": 32, "units/1": 16, "units/2": 8}, [32, 16, 8, 10]),
        ({"n_layers": 2, "units": 20, "units/1": 5}, [20, 5, 10]),  # per-layer key wins over the shared one
        ({"n_layers": 1.0, "units/0": 12.0, "unrelated": "ignored"}, [12, 10]),  # integral floats are fine
        ({"n_layers": np.int64(1), "units/0": np.int32(7), "batch_norm": np.bool_(True)}, [7, 10]),  # Ray's numpy
    ],
)
def test_mlp_layer_widths(config: dict[str, Any], widths: list[int]) -> None:
    net = mlp_network(config, n_features=64, n_classes=10)
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == widths


@pytest.mark.parametrize(
    ("config", "kind", "count"),
    [
        ({"batch_norm": True, "n_layers": 3}, nn.BatchNorm1d, 3),
        ({"batch_norm": False}, nn.BatchNorm1d, 0),
        ({"dropout": 0.3}, nn.Dropout, 2),
        ({"dropout": 0.0}, nn.Dropout, 0),
        ({"activation": "tanh"}, nn.Tanh, 2),
        ({"activation": "gelu", "n_layers": 1}, nn.GELU, 1),
        ({"activation": "leaky_relu"}, nn.LeakyReLU, 2),
    ],
)
def test_mlp_layer_kinds(config: dict[str, Any], kind: type[nn.Module], count: int) -> None:
    assert _count(mlp_network(config, n_features=30, n_classes=2), kind) == count


@pytest.mark.parametrize(
    ("config", "kind", "count"),
    [
        ({"batch_norm": True, "n_blocks": 3}, nn.BatchNorm2d, 3),
        ({}, nn.BatchNorm2d, 0),
        ({"pooling": "avg"}, nn.AvgPool2d, 2),
        ({"n_blocks": 5}, nn.MaxPool2d, 3),  # 8 -> 4 -> 2 -> 1, then no more pooling
        ({"dropout": 0.2}, nn.Dropout, 1),
    ],
)
def test_convnet_layer_kinds(config: dict[str, Any], kind: type[nn.Module], count: int) -> None:
    assert _count(convnet_network(config, input_shape=(1, 8, 8), n_classes=10), kind) == count


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ({}, (1, 8, 8)),
        ({"n_blocks": 5, "kernel_size": 7, "filters/0": 4, "filters/4": 6}, (1, 8, 8)),
        ({"n_blocks": 3, "kernel_size": 5, "filters": 8}, (3, 5, 7)),
        ({"n_blocks": 0}, (2, 4, 4)),
        ({"kernel_size": np.int64(5), "pooling": np.str_("avg"), "batch_norm": np.bool_(False)}, (1, 8, 8)),
    ],
)
def test_convnet_forward_shapes(config: dict[str, Any], shape: tuple[int, int, int]) -> None:
    net = convnet_network(config, input_shape=shape, n_classes=10)
    assert net(torch.rand(3, *shape)).shape == (3, 10)


@pytest.mark.parametrize(
    ("module", "n_params"),
    [
        (lambda: MLPClassifier({"n_layers": 1}, n_features=64, n_classes=10), 64 * 64 + 64 + 64 * 10 + 10),
        (
            lambda: ConvNetClassifier({"n_blocks": 1, "filters/0": 4}, input_shape=(1, 8, 8), n_classes=10),
            4 * 9 + 4 + 4 * 16 * 10 + 10,
        ),
    ],
)
def test_n_params(module: Any, n_params: int) -> None:
    assert module().n_params == n_params


# --- invalid values ----------------------------------------------------------------------------------------


BOTH, MLP, CNN = ("mlp", "cnn"), ("mlp",), ("cnn",)
INVALID = [  # key, value, message, the models that read the key
    ("activation", "foo", r"activation: must be one of 'relu', 'tanh', 'gelu', 'leaky_relu', but got 'foo'", BOTH),
    (
        "optimizer",
        "nadam",
        r"optimizer: must be one of 'sgd', 'momentum', 'rmsprop', 'adam', 'adamw', but got "
        r"'nadam'",
        BOTH,
    ),
    ("lr_schedule", "step", r"lr_schedule: must be one of 'none', 'exponential', 'cosine', but got 'step'", BOTH),
    ("kernel_size", 4, r"kernel_size: must be one of 3, 5, 7, but got 4", CNN),
    ("pooling", "min", r"pooling: must be one of 'max', 'avg', but got 'min'", CNN),
    ("n_layers", -1, r"n_layers: must be an integer >= 0, but got -1", MLP),
    ("n_blocks", 2.5, r"n_blocks: must be an integer >= 0, but got 2.5", CNN),
    ("units/1", 0, r"units/1: must be an integer >= 1, but got 0", MLP),
    ("filters", "16", r"filters: must be an integer >= 1, but got '16'", CNN),
    ("lr", 0.0, r"lr: must be a number in \(0.0, inf\], but got 0.0", BOTH),
    ("dropout", 1.0, r"dropout: must be a number in \[0.0, 1.0\), but got 1.0", BOTH),
    ("momentum", 1.5, r"momentum: must be a number in \[0.0, 1.0\), but got 1.5", BOTH),
    ("lr_gamma", math.nan, r"lr_gamma: must be a number in \(0.0, 1.0\], but got nan", BOTH),
    ("weight_decay", -1e-4, r"weight_decay: must be a number in \[0.0, inf\], but got -0.0001", BOTH),
    ("batch_norm", "yes", r"batch_norm: must be a boolean, but got 'yes'", BOTH),
    ("l1_on", None, r"l1_on: must be a boolean, but got None", BOTH),
]


def _build(kind: str, config: dict[str, Any]) -> Any:
    if kind == "mlp":
        return MLPClassifier(config, n_features=64, n_classes=10)
    return ConvNetClassifier(config, input_shape=(1, 8, 8), n_classes=10)


@pytest.mark.parametrize(
    ("key", "value", "match", "kind"), [(k, v, m, kind) for k, v, m, kinds in INVALID for kind in kinds]
)
def test_invalid_config_values_raise(key: str, value: Any, match: str, kind: str) -> None:
    with pytest.raises(ValueError, match=match):
        _build(kind, {key: value})


@pytest.mark.parametrize(
    ("key", "value", "kind"), [(k, v, kind) for k, v, _, kinds in INVALID for kind in BOTH if kind not in kinds]
)
def test_keys_of_the_other_model_are_ignored(key: str, value: Any, kind: str) -> None:
    _build(kind, {key: value, "some_other_key": object()})


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MLPClassifier({}, n_features=0, n_classes=10), r"MLPClassifier.n_features: must be a positive"),
        (lambda: MLPClassifier({}, n_features=64, n_classes=10, max_epochs=0), r"max_epochs: must be an integer >= 1"),
        (
            lambda: ConvNetClassifier({}, input_shape=(8, 8), n_classes=10),
            r"input_shape: must be \(channels, height, width\), but got \(8, 8\)",
        ),
    ],
)
def test_invalid_constructor_arguments_raise(call: Any, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        call()


# --- optimisers, schedules, regularisation -----------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["none", "exponential", "cosine"])
def test_every_optimizer_and_schedule_builds_and_steps(optimizer: str, schedule: str) -> None:
    torch.manual_seed(0)
    model = MLPClassifier(
        {"optimizer": optimizer, "lr_schedule": schedule, "lr": 0.1, "n_layers": 1},
        n_features=64,
        n_classes=10,
        max_epochs=4,
    )
    built = model.configure_optimizers()
    if schedule == "none":
        opt, sched = built, None
    else:
        assert built["lr_scheduler"]["interval"] == "epoch"
        opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    model.compute_loss(_batch()).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if sched is not None:
        sched.step()
        expected = {"exponential": 0.1 * 0.95, "cosine": 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi / 4)) / 2}
        assert opt.param_groups[0]["lr"] == pytest.approx(expected[schedule])


@pytest.mark.parametrize(
    ("config", "kind", "group"),
    [
        ({"optimizer": "sgd", "momentum": 0.9}, torch.optim.SGD, {"momentum": 0.0, "weight_decay": 0.0}),
        ({"optimizer": "momentum"}, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ({"optimizer": "momentum", "momentum": 0.6}, torch.optim.SGD, {"momentum": 0.6}),
        ({"optimizer": "rmsprop"}, torch.optim.RMSprop, {"momentum": 0.0}),
        ({"optimizer": "rmsprop", "momentum": 0.5}, torch.optim.RMSprop, {"momentum": 0.5}),
        ({}, torch.optim.Adam, {"lr": 1e-3, "weight_decay": 0.0}),
        ({"optimizer": "adamw"}, torch.optim.AdamW, {"weight_decay": 0.0}),
        ({"optimizer": "adamw", "weight_decay": 0.01}, torch.optim.AdamW, {"weight_decay": 0.01}),
        ({"weight_decay_on": True, "weight_decay": 1e-4}, torch.optim.Adam, {"weight_decay": 1e-4}),
        ({"weight_decay_on": False, "weight_decay": 1e-4}, torch.optim.Adam, {"weight_decay": 0.0}),
        ({"weight_decay_on": True}, torch.optim.Adam, {"weight_decay": 0.0}),
    ],
)
def test_optimizer_settings(config: dict[str, Any], kind: type, group: dict[str, Any]) -> None:
    opt = MLPClassifier(config, n_features=4, n_classes=2).configure_optimizers()
    assert type(opt) is kind
    assert {k: opt.param_groups[0][k] for k in group} == pytest.approx(group)


@pytest.mark.parametrize(
    ("config", "attrs"),
    [
        ({"lr_schedule": "exponential"}, {"gamma": 0.95}),
        ({"lr_schedule": "exponential", "lr_gamma": 0.8}, {"gamma": 0.8}),
        ({"lr": 0.1, "lr_schedule": "cosine"}, {"T_max": 7, "eta_min": 0.001}),
        ({"lr": 0.1, "lr_schedule": "cosine", "lr_min_factor": 0.5}, {"T_max": 7, "eta_min": 0.05}),
    ],
)
def test_schedule_settings(config: dict[str, Any], attrs: dict[str, float]) -> None:
    built = MLPClassifier(config, n_features=4, n_classes=2, max_epochs=7).configure_optimizers()
    scheduler = built["lr_scheduler"]["scheduler"]
    assert {k: getattr(scheduler, k) for k in attrs} == pytest.approx(attrs)


@pytest.mark.parametrize(
    ("config", "coefficient"),
    [
        ({"l1_on": True, "l1": 0.01}, 0.01),
        ({"l1": 0.02}, 0.02),
        ({"l1_on": False, "l1": 0.01}, 0.0),  # a stale conditional value is switched off
        ({"l1_on": True}, 0.0),
        ({}, 0.0),
    ],
)
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_l1_adds_to_the_training_loss(config: dict[str, Any], coefficient: float, kind: str) -> None:
    if kind == "mlp":
        model, batch = MLPClassifier(config, n_features=64, n_classes=10), _batch()
    else:
        model = ConvNetClassifier({**config, "batch_norm": True}, input_shape=(1, 8, 8), n_classes=10)
        x, y = _batch()
        batch = (x.view(-1, 1, 8, 8), y)
    model.eval()  # batch norm in eval mode: both losses see the same forward pass
    ce = F.cross_entropy(model(batch[0]), batch[1])
    weights = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    torch.testing.assert_close(model.compute_loss(batch), ce + coefficient * weights)
    assert model.training_config.l1 == coefficient


def test_l1_norm_counts_weights_only() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    for p in net.parameters():
        nn.init.constant_(p, -1.0)
    assert float(l1_norm(net).detach()) == 2 * 3 + 3 * 1
    assert float(l1_norm(nn.Sequential(nn.ReLU()))) == 0.0


def test_training_config_defaults() -> None:
    assert TrainingConfig.from_config({"unknown": 1}) == TrainingConfig()


# --- build_builtin -----------------------------------------------------------------------------------------


def test_build_builtin_seeds_the_weights_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, dm = build_builtin("mlp", "breast_cancer", {"batch_size": 16.0}, max_epochs=2, seed=5)
    b, _ = build_builtin("mlp", "breast_cancer", {}, max_epochs=2, seed=5)
    c, _ = build_builtin("mlp", "breast_cancer", {}, max_epochs=2, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert dm.batch_size == 16 and dm.seed == 5 and a.hparams.n_features == 30
    assert torch.equal(a.net[0].weight, b.net[0].weight)
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


@pytest.mark.parametrize(
    ("model", "data", "config", "match"),
    [
        (
            "mpl",
            "digits",
            {},
            r"model: unknown built-in model, but got 'mpl'. Did you mean 'mlp'\? Known models: mlp, cnn",
        ),
        ("cnn", "wine", {}, r"the 'cnn' model needs image data, but got 'wine' \(tabular\)"),
        ("mlp", "digitz", {}, r"Did you mean 'digits'\?"),
        ("mlp", "digits", {"batch_size": 0}, r"batch_size: must be an integer >= 1, but got 0"),
    ],
)
def test_build_builtin_errors(model: str, data: str, config: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        build_builtin(model, data, config, max_epochs=1, seed=0)
