"""The run spec file: what a valid spec means; the malformed ones live in test_hostile.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tunebridge import presets
from tunebridge.cli._recipes import BUNDLED
from tunebridge.errors import SchemaError
from tunebridge.schema import Choice, EarlyStoppingSpec, Float, Int, PruningSpec, Space, load_yaml
from tunebridge.spec import RunSpec, load_spec, parse_spec, space_from_spec

RECIPES = BUNDLED  # the recipes ship inside the package
BASE = {"model": "mlp", "data": "digits", "metric": "val_acc", "mode": "max"}


def spec(text: str, **kw: Any) -> RunSpec:
    return parse_spec(load_yaml(text), **kw)


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_loads(name: str) -> None:
    run = load_spec(RECIPES / name)
    assert run.study and run.metrics and len(run.space) > 5
    assert run.base_dir == str(RECIPES)
    run.space.walk(lambda key, p: p.enumerate()[0] if p.enumerate() else p.low)  # type: ignore[attr-defined,index]


def test_digits_cnn_override_narrows_momentum_to_the_optimizers_left() -> None:
    run = load_spec(RECIPES / "digits_cnn.yaml")
    assert run.space["optimizer"] == Choice(["adam", "adamw", "momentum"])
    assert run.space["momentum"] == Float(0.5, 0.99, when={"optimizer": ["momentum"]})  # rmsprop is gone


def test_a_minimal_spec_takes_the_defaults() -> None:
    run = spec("model: mlp\nspace: mlp\nmetric: val_loss\nmode: min\n")
    assert (run.model, run.data, run.builder) == ("mlp", "digits", None)  # data defaults to digits
    assert (run.max_epochs, run.trials, run.seed, run.search, run.backend) == (20, 20, 0, "tpe", "optuna")
    assert run.pruner == PruningSpec() and run.early_stopping is None and run.ray == {} and run.study is None
    assert run.metric == "val_loss" and run.mode == "min" and run.space == presets.mlp()


def test_a_full_spec() -> None:
    run = spec(
        """
        study: s-1.a
        builder: my_models.zoo:build
        space:
          presets: [training]
          override: {lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
          remove: [lr_gamma, lr_min_factor, lr_schedule]
          params: {units: {type: int, low: 8, high: 64, when: {optimizer: [adam, adamw]}}}
        metric: [val_loss, n_params]
        mode: [min, min]
        max_epochs: 5
        early_stopping: {patience: 2, min_delta: 0.01}
        pruner: none
        search: nsga2
        trials: 7
        seed: 3
        storage: sqlite:///x.db
        backend: ray
        accelerator: cpu
        threads: 1
        ray: {cpus_per_trial: 0.5, pbt_mutate: [lr], address: null, reuse_actors: false}
        description: anything at all
        """,
        base_dir="/tmp",
    )
    assert run.builder == "my_models.zoo:build" and run.model is None and run.data is None
    assert run.metric == ["val_loss", "n_params"] and run.mode == ["min", "min"]
    assert run.space.names == ("lr", "batch_size", "optimizer", "momentum", "units")
    assert run.space["units"].when == (("optimizer", ("adam", "adamw")),)
    assert run.early_stopping == EarlyStoppingSpec(patience=2, min_delta=0.01)
    assert run.ray == {"cpus_per_trial": 0.5, "pbt_mutate": ["lr"], "address": None, "reuse_actors": False}
    assert (run.study, run.storage, run.backend, run.threads, run.base_dir) == (
        "s-1.a",
        "sqlite:///x.db",
        "ray",
        1,
        "/tmp",
    )


def test_override_and_params_may_refer_to_preset_parameters() -> None:
    space = space_from_spec(
        {
            "presets": ["training"],
            "override": {"momentum": {"type": "float", "low": 0.8, "high": 0.9, "when": {"optimizer": ["sgd"]}}},
            "params": {"nesterov": {"type": "bool", "when": {"optimizer": "sgd"}}},
        }
    )
    assert space["momentum"] == Float(0.8, 0.9, when={"optimizer": "sgd"})
    assert space.names[-1] == "nesterov"


def test_presets_compose_and_a_single_name_is_a_preset() -> None:
    assert space_from_spec({"preset": "mlp"}) == presets.mlp()
    assert space_from_spec({"presets": ["mlp", "training"]}) == presets.mlp() + presets.training()
    assert space_from_spec("cnn_full") == presets.cnn_full()
    assert space_from_spec({"presets": ["mlp"], "override": None, "params": {}, "remove": []}) == presets.mlp()


def test_a_grid_spec_is_checked_at_load_time() -> None:
    grid = spec(
        "model: mlp\nspace: {n: {type: int, low: 1, high: 3}, lr: {type: float, low: 0.1, high: 0.3, step: 0.1}}\n"
        "metric: m\nmode: min\nsearch: grid\n"
    )
    assert len(grid.space.grid()) == 9
    with pytest.raises(
        SchemaError,
        match=re.escape(
            "space.lr: a grid search needs the values of every float parameter, but got no `grid` and no `step`."
        ),
    ):
        spec("model: mlp\nspace: {lr: {type: float, low: 0.1, high: 0.3}}\nmetric: m\nmode: min\nsearch: grid\n")


def test_hash_covers_the_meaning_and_nothing_else() -> None:
    text = "model: mlp\nspace: mlp\nmetric: val_acc\nmode: max\n"
    a = spec(text)
    assert a.hash() == spec(text + "trials: 99\nstorage: sqlite:///y.db\nstudy: other\nthreads: 2\n").hash()
    assert a.hash() != spec(text + "seed: 1\n").hash()
    assert (
        a.hash()
        != spec(
            text.replace("space: mlp", "space: {presets: [mlp], override: {n_layers: {type: int, low: 1, high: 2}}}")
        ).hash()
    )
    assert re.fullmatch(r"[0-9a-f]{64}", a.hash())


def test_with_overrides_ignores_none() -> None:
    run = spec("model: mlp\nspace: mlp\nmetric: val_acc\nmode: max\n")
    changed = run.with_overrides(trials=3, seed=None, storage="sqlite:///z.db")
    assert (changed.trials, changed.seed, changed.storage) == (3, 0, "sqlite:///z.db")


def test_load_spec_names_the_file_and_defaults_the_study_to_its_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-study.yaml"
    path.write_text("model: mlp\nspace: mlp\nmetric: val_acc\nmode: max\n")
    run = load_spec(path)
    assert run.study == "my-study" and run.base_dir == str(tmp_path)
    path.write_text("model: mlp\nspace: {lr: {type: float, low: 0.1, high: 0.01}}\nmetric: val_acc\nmode: max\n")
    with pytest.raises(
        SchemaError,
        match=re.escape(
            "my-study.yaml: space.lr: `low <= high` must hold, but got low=0.1, high=0.01. Swap the bounds."
        ),
    ):
        load_spec(path)
    with pytest.raises(
        SchemaError,
        match=re.escape(
            f"{tmp_path / 'nope.yaml'}: the spec file does not exist, but got '{tmp_path / 'nope.yaml'}'. Check the path; `tunebridge recipes` lists the bundled recipes."
        ),
    ):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(
        SchemaError, match=re.escape(f"{tmp_path}: cannot read the spec file, but got Is a directory. Check the path;")
    ):
        load_spec(tmp_path)


def test_the_default_study_name_must_also_be_valid(tmp_path: Path) -> None:
    path = tmp_path / "my study.yaml"
    path.write_text("model: mlp\nspace: mlp\nmetric: val_acc\nmode: max\n")
    with pytest.raises(
        SchemaError,
        match=re.escape(
            "my study.yaml: study: `study` must be a name of letters, digits, '_', '.', '-', but got 'my study'."
        ),
    ):
        load_spec(path)
    path.write_text("study: ok\nmodel: mlp\nspace: mlp\nmetric: val_acc\nmode: max\n")
    assert load_spec(path).study == "ok"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("builder", "pkg.mod:build\n", "builder: `builder` must be 'module:function', but got 'pkg.mod:build\\n'."),
        ("study", "name\n", "study: `study` must be a name of letters, digits, '_', '.', '-', but got 'name\\n'."),
        ("study", "x" * 129, "study: `study` must be a name of letters, digits, '_', '.', '-', but got 'xxxxxxxxxxxx"),
    ],
)
def test_names_are_matched_whole(key: str, value: str, message: str) -> None:
    doc = {**BASE, "space": "mlp", key: value}
    if key == "builder":
        del doc["model"], doc["data"]
    with pytest.raises(SchemaError, match=re.escape(message)):
        parse_spec(doc)


def test_parse_spec_accepts_python_dicts_too() -> None:
    run = parse_spec({**BASE, "space": {"n": Int(1, 2).to_dict(), "act": ["relu", "tanh"]}})
    assert run.space == Space(n=Int(1, 2), act=Choice(["relu", "tanh"]))


@pytest.mark.parametrize("name", ["..", "../../x", ".", "a/b", "/abs"])
def test_a_study_name_that_would_leave_the_output_folder_is_refused_everywhere(name: str, tmp_path: Path) -> None:
    from tunebridge._rules import check_study_name
    from tunebridge.api import study_options
    from tunebridge.spec import parse_spec

    rule = r"`study` must be a name of letters, digits, '_', '.', '-'"
    with pytest.raises(SchemaError, match=rule):
        check_study_name(name)
    with pytest.raises(SchemaError, match=rule):  # the spec's study:
        parse_spec(
            {
                "study": name,
                "model": "mlp",
                "data": "digits",
                "space": {"presets": ["mlp"]},
                "metric": "val_acc",
                "mode": "max",
            }
        )
    with pytest.raises(SchemaError, match=rule):  # tune(study=...)
        study_options(Space(x=Int(1, 2)), metric="val_acc", study=name)
    spec = parse_spec(
        {
            "study": "ok",
            "model": "mlp",
            "data": "digits",
            "space": {"presets": ["mlp"]},
            "metric": "val_acc",
            "mode": "max",
        }
    )
    with pytest.raises(SchemaError, match=rule):  # tunebridge run/worker --study
        spec.with_overrides(study=name)
