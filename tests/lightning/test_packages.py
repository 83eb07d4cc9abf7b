"""Per-Lightning-package classes: lazy module attributes, pickling by reference, namespaces, shared names."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tunebridge._vocab import BUILTIN_DATA, BUILTIN_MODELS
from tunebridge.errors import SchemaError
from tunebridge.lightning import builtin, data, models
from tunebridge.lightning._packages import NAMESPACES, PackageClasses, pickle_name, resolve_namespace
from tunebridge.lightning.builtin import build_builtin
from tunebridge.lightning.data import datamodule_classes, make_datamodule
from tunebridge.lightning.models import model_classes

LIGHTNING_ROOTS = ("lightning", "pytorch_lightning", "lightning_fabric")


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported or built yet) and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- lazy import -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_importing_the_modules_does_not_import_lightning() -> None:
    out = _run(
        f"""
        import json, sys
        import tunebridge.lightning.models as models, tunebridge.lightning.data, tunebridge.lightning.builtin
        loaded = lambda: sorted({{m.split(".")[0] for m in sys.modules}} & set({LIGHTNING_ROOTS!r}))
        before = loaded()
        models.MLPClassifier  # the first request builds the classes, and only then imports Lightning
        print(json.dumps([before, loaded()]))
        """
    )
    before, after = json.loads(out)
    assert before == []
    assert after != []  # the check above can see Lightning when it is there


@pytest.mark.slow
def test_instances_unpickle_in_a_fresh_process(tmp_path: Path) -> None:
    objects = [
        *(model_classes(ns).MLPClassifier({"n_layers": 1}, n_features=4, n_classes=2) for ns in NAMESPACES),
        model_classes("pytorch_lightning").ConvNetClassifier({"n_blocks": 1}, input_shape=(1, 8, 8), n_classes=10),
        *(make_datamodule("wine", batch_size=8, seed=3, namespace=ns) for ns in NAMESPACES),
    ]
    (tmp_path / "objects.pkl").write_bytes(pickle.dumps(objects))
    out = _run(
        f"""
        import json, pickle
        objects = pickle.loads(open({str(tmp_path / "objects.pkl")!r}, "rb").read())
        bases = ("LightningModule", "LightningDataModule")
        print(json.dumps([
            [type(o).__qualname__, next(c.__module__ for c in type(o).__mro__ if c.__name__ in bases),
             repr(dict(o.hparams))]
            for o in objects
        ]))
        """
    )
    restored = json.loads(out)
    assert [r[0] for r in restored] == [type(o).__qualname__ for o in objects]
    assert [r[0] for r in restored] == [
        "MLPClassifier__lightning_pytorch",
        "MLPClassifier__pytorch_lightning",
        "ConvNetClassifier__pytorch_lightning",
        "WineDataModule__lightning_pytorch",
        "WineDataModule__pytorch_lightning",
    ]
    packages = ["lightning.pytorch", "pytorch_lightning", "pytorch_lightning", "lightning.pytorch", "pytorch_lightning"]
    assert all(base.startswith(package + ".") for (_, base, _), package in zip(restored, packages))
    assert [r[2] for r in restored] == [repr(dict(o.hparams)) for o in objects]


# --- module attributes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name", "expected"),
    [
        (models, "MLPClassifier", lambda: model_classes().MLPClassifier),
        (models, "ConvNetClassifier__pytorch_lightning", lambda: model_classes("pytorch_lightning").ConvNetClassifier),
        (data, "WineDataModule", lambda: datamodule_classes().WineDataModule),
        (data, "DigitsDataModule__lightning_pytorch", lambda: datamodule_classes("lightning.pytorch").DigitsDataModule),
        (builtin, "MODEL_KINDS", lambda: BUILTIN_MODELS),
        (data, "MODEL_KINDS", lambda: BUILTIN_MODELS),
        (data, "NAMESPACES", lambda: NAMESPACES),
        (models, "NAMESPACES", lambda: NAMESPACES),
    ],
)
def test_module_attributes(module: ModuleType, name: str, expected: Any) -> None:
    assert getattr(module, name) is expected()


def test_datasets_is_a_stable_copy_of_the_default_package_classes() -> None:
    assert data.DATASETS is data.DATASETS
    assert data.DATASETS == datamodule_classes().datasets and data.DATASETS is not datamodule_classes().datasets
    assert tuple(data.DATASETS) == BUILTIN_DATA


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (models, "NoSuchThing"),
        (models, "NoSuchThing__lightning_pytorch"),  # a package tag alone does not make a class
        (models, "MLPClassifier__lightning"),
        (models, "__wrapped__"),
        (data, "namespace__pytorch_lightning"),  # the namespace's attributes that are not classes
        (data, "datasets__lightning_pytorch"),
        (data, "__lightning_pytorch"),
    ],
)
def test_unknown_attributes_raise(module: ModuleType, name: str) -> None:
    with pytest.raises(AttributeError, match=rf"module '{module.__name__}' has no attribute '{name}'"):
        getattr(module, name)


# --- namespaces --------------------------------------------------------------------------------------------


def test_resolve_namespace_defaults_to_lightning_pytorch() -> None:
    assert resolve_namespace(None) == "lightning.pytorch"  # both are installed here: the newer one wins
    assert [resolve_namespace(ns) for ns in NAMESPACES] == list(NAMESPACES)


@pytest.mark.parametrize(
    ("call", "runs"),
    [
        (lambda: resolve_namespace("pl"), "module"),
        (lambda: resolve_namespace("pl", runs="data"), "data"),
        (lambda: model_classes("pl"), "module"),
        (lambda: datamodule_classes("pl"), "data"),
        (lambda: builtin.make_classes("pl"), "module"),
        (lambda: make_datamodule("wine", batch_size=8, seed=0, namespace="pl"), "data"),
    ],
)
def test_unknown_namespace(call: Any, runs: str) -> None:
    match = (
        r"^namespace: must be one of 'lightning.pytorch', 'pytorch_lightning', but got 'pl'\. "
        rf"Name the Lightning package whose Trainer will run the {runs}\.$"
    )
    with pytest.raises(SchemaError, match=match):
        call()


# --- the build-once mechanism ------------------------------------------------------------------------------


def test_package_classes_build_once_and_publish_classes_only() -> None:
    calls: list[str] = []

    def build(pl: ModuleType) -> dict[str, Any]:
        calls.append(pl.__name__)

        class Thing(pl.LightningModule):  # type: ignore[misc, name-defined]
            pass

        return {"Thing": Thing, "things": {"one": Thing}}

    family = PackageClasses("some.module", build, runs="module")
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(family("pytorch_lightning"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["pytorch_lightning"] and all(r is results[0] for r in results)
    classes = results[0]
    assert classes.namespace == "pytorch_lightning" and classes.things == {"one": classes.Thing}
    assert (classes.Thing.__module__, classes.Thing.__qualname__) == ("some.module", "Thing__pytorch_lightning")
    assert family.find(pickle_name("Thing", "pytorch_lightning")) is classes.Thing
    assert family.find("things__pytorch_lightning") is None and family.find("Thing") is None
    assert calls == ["pytorch_lightning"]


# --- shared names and hints --------------------------------------------------------------------------------


def test_dataset_loaders_cover_exactly_the_builtin_data() -> None:
    from tunebridge.lightning import _arrays

    assert tuple(_arrays._LOADERS) == BUILTIN_DATA


@pytest.mark.parametrize(
    ("model", "dataset", "match"),
    [
        ("cnm", "digits", r"but got 'cnm'\. Did you mean 'cnn'\? Known models: mlp, cnn\.$"),
        ("transformer", "digits", r"but got 'transformer'\. Known models: mlp, cnn\.$"),
        (3, "digits", r"but got 3\. Known models: mlp, cnn\.$"),
        ("mlp", "Wine", r"but got 'Wine'\. Did you mean 'wine'\? Known datasets: breast_cancer, digits, wine\.$"),
        ("mlp", "mnist", r"but got 'mnist'\. Known datasets: breast_cancer, digits, wine\.$"),
    ],
)
def test_unknown_builtin_names_suggest_the_nearest(model: Any, dataset: str, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        build_builtin(model, dataset, {}, max_epochs=1, seed=0)
