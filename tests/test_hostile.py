"""Hostile input: a table of named malformed specs, each pinned to its exact message, and a fuzz
test in which nothing but SchemaError escapes. Loading a spec never runs code nor imports torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunebridge.cli._recipes import BUNDLED
from tunebridge.errors import SchemaError
from tunebridge.schema import Space, load_yaml
from tunebridge.spec import RunSpec, load_spec, parse_spec, space_from_spec

RECIPES = BUNDLED  # the recipes ship inside the package

SPEC = "model: mlp\nmetric: val_acc\nmode: max\n"
LAUGHS = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
MALFORMED = [
    # -- files
    (
        "empty-file",
        "file",
        b"",
        "spec.yaml: the spec is empty, but got nothing. See `tunebridge recipes --copy .` for complete examples.",
    ),
    (
        "comments-only-file",
        "file",
        b"# nothing here\n\n",
        "spec.yaml: the spec is empty, but got nothing. See `tunebridge recipes --copy .` for complete examples.",
    ),
    (
        "binary-garbage",
        "file",
        bytes(range(256)),
        "{dir}/spec.yaml: the file must be UTF-8 text, but got undecodable byte 0x80 at offset 128. Save it as UTF-8 YAML.",
    ),
    (
        "png-header",
        "file",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "{dir}/spec.yaml: the file must be UTF-8 text, but got undecodable byte 0x89 at offset 0. Save it as UTF-8 YAML.",
    ),
    (
        "utf16-file",
        "file",
        (SPEC + "space: mlp\n").encode("utf-16"),
        "{dir}/spec.yaml: the file must be UTF-8 text, but got undecodable byte 0xff at offset 0. Save it as UTF-8 YAML.",
    ),
    (
        "nul-in-text",
        "file",
        (SPEC + "space: mlp\x00\n").encode(),
        "{dir}/spec.yaml: the file must be text, but got a NUL byte at offset 47. Pass a YAML text file.",
    ),
    (
        "control-character",
        "file",
        (SPEC + "space: ml\x1bp\n").encode(),
        "{dir}/spec.yaml: the file holds a character YAML does not allow, but got U+001B at offset 46. Remove it; a spec is printable UTF-8 text.",
    ),
    # -- YAML that tries something
    (
        "python-object-apply",
        "spec",
        SPEC + "space: !!python/object/apply:os.system ['echo pwned']\n",
        "spec: YAML tags that build objects are not allowed at line 4, column 8, but got 'tag:yaml.org,2002:python/object/apply:os.system'. Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
    ),
    (
        "python-object-new",
        "spec",
        SPEC + "space: !!python/object/new:builtins.dict {}\n",
        "spec: YAML tags that build objects are not allowed at line 4, column 8, but got 'tag:yaml.org,2002:python/object/new:builtins.dict'. Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
    ),
    (
        "python-name",
        "spec",
        "!!python/name:builtins.exec\n",
        "spec: YAML tags that build objects are not allowed at line 1, column 1, but got 'tag:yaml.org,2002:python/name:builtins.exec'. Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
    ),
    (
        "billion-laughs",
        "spec",
        SPEC + LAUGHS + "space: mlp\n",
        "spec: the document expands to too many values through YAML aliases, but got more than 1000000 values. Write the values out instead of repeating aliases of aliases.",
    ),
    (
        "recursive-alias",
        "spec",
        SPEC + "space: &s {presets: [mlp], params: {x: *s}}\n",
        "spec: the document contains itself through a YAML alias, but got a recursive alias. Remove the alias that points back into its own parent.",
    ),
    (
        "deeply-nested-flow",
        "spec",
        "[" * 10_000,
        "spec: the document is nested too deeply at line 1, column 65, but got more than 64 levels. Flatten it; a spec needs only a few levels.",
    ),
    (
        "deeply-nested-block",
        "spec",
        "- " * 10_000 + "x\n",
        "spec: the document is nested too deeply at line 1, column 129, but got more than 64 levels. Flatten it; a spec needs only a few levels.",
    ),
    (
        "duplicate-key",
        "spec",
        SPEC + "space: mlp\nspace: cnn\n",
        "spec: a key appears twice in one mapping at line 5, column 1, but got 'space'. Remove one of them (YAML would silently keep the last).",
    ),
    (
        "two-documents",
        "spec",
        SPEC + "space: mlp\n---\nspace: cnn\n",
        "spec: a spec holds one YAML document at line 5, column 1, but got a second one after ---. Remove the --- line.",
    ),
    (
        "unclosed-bracket",
        "spec",
        SPEC + "space: {presets: [mlp}\n",
        "spec: the YAML is malformed at line 4, column 22, but got expected ',' or ']', but got '}'. Fix the YAML syntax.",
    ),
    (
        "int-with-5000-digits",
        "spec",
        SPEC + "space: mlp\nseed: " + "7" * 5000 + "\n",
        "spec: cannot read a YAML value as int at line 5, column 7, but got '7777777777777777777777777777777777777...77777777777777777777777777777777777777'. Quote it to make it a string, or write a valid int.",
    ),
    # -- the spec's shape
    (
        "a-list-not-a-mapping",
        "spec",
        "- model: mlp\n",
        "spec: a spec must be a mapping, but got list. See `tunebridge recipes --copy .` for complete examples.",
    ),
    (
        "a-string-not-a-mapping",
        "spec",
        "tunebridge run me\n",
        "spec: a spec must be a mapping, but got str. See `tunebridge recipes --copy .` for complete examples.",
    ),
    (
        "non-string-key",
        "spec",
        SPEC + "space: mlp\n1: one\n",
        "spec: spec keys must be strings, but got 1. Quote the key, or remove it.",
    ),
    (
        "unknown-key-typo",
        "spec",
        SPEC + "space: mlp\nmax_epoch: 3\n",
        "spec: unknown key, but got 'max_epoch'. Did you mean 'max_epochs'? Known keys: study, model, data, builder, lightning_cli, hydra, space, metric, mode, max_epochs, early_stopping, pruner, search, trials, seed, storage, backend, accelerator, threads, ray, description, trainer, callbacks, logger, objective, keep_checkpoints, timeout, stop, enqueue, warm_start, fuse, resume.",
    ),
    (
        "no-space",
        "spec",
        SPEC,
        "space: a spec needs a `space`, but got nothing. Add `space: {presets: [mlp_full]}` or list parameters.",
    ),
    (
        "no-model-no-builder",
        "spec",
        "space: mlp\nmetric: val_acc\nmode: max\n",
        "model: a spec needs `model` (built-in) or `builder` (module:function), but got nothing. Write e.g. model: mlp and data: digits.",
    ),
    (
        "builder-not-module-function",
        "spec",
        "builder: my_models.build\nspace: mlp\nmetric: val_acc\nmode: max\n",
        "builder: `builder` must be 'module:function', but got 'my_models.build'. Did you mean 'my_models:build'? Write e.g. builder: my_models:build (a function config -> (module, datamodule)).",
    ),
    (
        "builder-not-a-string",
        "spec",
        "builder: [my_models, build]\nspace: mlp\nmetric: val_acc\nmode: max\n",
        "builder: `builder` must be 'module:function', but got ['my_models', 'build']. Write e.g. builder: my_models:build (a function config -> (module, datamodule)).",
    ),
    (
        "builder-and-model",
        "spec",
        SPEC + "builder: my_models:build\nspace: mlp\n",
        "model: give either `builder` or `model` + `data`, but got 'mlp'. Remove one of them.",
    ),
    (
        "unknown-model",
        "spec",
        "model: resnet\nspace: mlp\nmetric: val_acc\nmode: max\n",
        "model: `model` must be one of mlp, cnn, but got 'resnet'. Use e.g. model: mlp.",
    ),
    (
        "cnn-on-tabular-data",
        "spec",
        "model: cnn\ndata: wine\nspace: cnn\nmetric: val_acc\nmode: max\n",
        "data: the built-in CNN needs image data, but got 'wine'. Use data: digits, or model: mlp for tabular data.",
    ),
    # -- wrong types
    (
        "max-epochs-a-string",
        "spec",
        SPEC + "space: mlp\nmax_epochs: ten\n",
        "max_epochs: `max_epochs` must be an integer >= 1, but got 'ten'. Write e.g. max_epochs: 1.",
    ),
    (
        "trials-a-float",
        "spec",
        SPEC + "space: mlp\ntrials: 2.5\n",
        "trials: `trials` must be an integer >= 1, but got 2.5. Write e.g. trials: 1.",
    ),
    (
        "trials-a-bool",
        "spec",
        SPEC + "space: mlp\ntrials: yes\n",
        "trials: `trials` must be an integer >= 1, but got True. Write e.g. trials: 1.",
    ),
    (
        "seed-negative",
        "spec",
        SPEC + "space: mlp\nseed: -1\n",
        "seed: `seed` must be an integer >= 0, but got -1. Write e.g. seed: 1.",
    ),
    (
        "metric-a-number",
        "spec",
        "model: mlp\nspace: mlp\nmetric: 3\nmode: max\n",
        "metric: `metric` must name the validation metric to optimise (or list several), but got 3. Write e.g. metric: val_acc.",
    ),
    (
        "mode-up",
        "spec",
        "model: mlp\nspace: mlp\nmetric: val_acc\nmode: up\n",
        "mode: `mode` must be min or max, one per metric, but got 'up'. Write e.g. mode: max, or [min, min] for two metrics.",
    ),
    (
        "modes-do-not-match-metrics",
        "spec",
        "model: mlp\nspace: mlp\nmetric: [val_loss, n_params]\nmode: [min]\n",
        "mode: `mode` must be min or max, one per metric, but got ['min']. Write e.g. mode: max, or [min, min] for two metrics.",
    ),
    (
        "storage-a-number",
        "spec",
        SPEC + "space: mlp\nstorage: 5432\n",
        "storage: `storage` must be a URL string, but got 5432. Write e.g. storage: sqlite:///runs/study.db.",
    ),
    (
        "study-with-a-space",
        "spec",
        SPEC + "space: mlp\nstudy: my study\n",
        "study: `study` must be a name of letters, digits, '_', '.', '-', but got 'my study'. Write e.g. study: digits-mlp (at most 128 characters).",
    ),
    (
        "accelerator-a-list",
        "spec",
        SPEC + "space: mlp\naccelerator: [gpu]\n",
        "accelerator: `accelerator` must be a string, but got ['gpu']. Use auto, cpu or gpu.",
    ),
    (
        "ray-not-a-mapping",
        "spec",
        SPEC + "space: mlp\nray: local\n",
        "ray: `ray` must be a mapping, but got 'local'. Write e.g. ray: {cpus_per_trial: 1, max_concurrent: 2}.",
    ),
    (
        "ray-unknown-key",
        "spec",
        SPEC + "space: mlp\nray: {cpus: 2}\n",
        "ray: unknown key, but got 'cpus'. Known keys: address, cpus_per_trial, gpus_per_trial, max_concurrent, checkpoint_frequency, checkpoint_keep, reuse_actors, scheduler, pbt_interval, pbt_mutate, pbt_synch, storage_path, name, max_failures, restore.",
    ),
    (
        "ray-value-a-mapping",
        "spec",
        SPEC + "space: mlp\nray: {address: {host: x}}\n",
        "ray.address: `ray.address` must be a string, number, true/false, null or a list of names, but got {'host': 'x'}. Write a plain value.",
    ),
    # -- policies
    (
        "search-typo",
        "spec",
        SPEC + "space: mlp\nsearch: tpee\n",
        "search: unknown search algorithm, but got 'tpee'. Did you mean 'tpe'? Known: grid, random, tpe, gp, cmaes, qmc, nsga2.",
    ),
    (
        "backend-unknown",
        "spec",
        SPEC + "space: mlp\nbackend: hyperopt\n",
        "backend: `backend` must be one of optuna, ray, but got 'hyperopt'. Use e.g. backend: optuna.",
    ),
    (
        "pruner-typo",
        "spec",
        SPEC + "space: mlp\npruner: asah\n",
        "pruner.policy: `policy` must be one of none, median, asha, hyperband, patience, but got 'asah'. Did you mean 'asha'?",
    ),
    (
        "pruner-unknown-key",
        "spec",
        SPEC + "space: mlp\npruner: {policy: asha, grace: 2}\n",
        "pruner: unknown key, but got 'grace'. Known keys: policy, grace_period, reduction_factor, max_budget, patience, min_delta, tie_break.",
    ),
    (
        "pruner-grace-beyond-budget",
        "spec",
        SPEC + "space: mlp\npruner: {policy: asha, grace_period: 5, max_budget: 2}\n",
        "pruner: `grace_period <= max_budget` must hold, but got grace_period=5, max_budget=2. Lower grace_period or raise max_budget.",
    ),
    (
        "pruner-min-delta-nan",
        "spec",
        SPEC + "space: mlp\npruner: {policy: patience, min_delta: .nan}\n",
        "pruner.min_delta: `min_delta` must be a number >= 0, but got nan. Use e.g. min_delta: 0.001, or 0 to count any improvement.",
    ),
    (
        "early-stopping-typo",
        "spec",
        SPEC + "space: mlp\nearly_stopping: {patiense: 3}\n",
        "early_stopping: unknown key, but got 'patiense'. Did you mean 'patience'? Known keys: monitor, mode, patience, min_delta.",
    ),
    (
        "early-stopping-monitor-without-mode",
        "spec",
        SPEC + "space: mlp\nearly_stopping: {monitor: val_loss}\n",
        "early_stopping.mode: `mode` must be given when `monitor` (val_loss) is not the run's metric (val_acc, max), "
        "but got no mode. Write early_stopping: {monitor: val_loss, mode: min} for a loss, or "
        "mode: max for a score (Lightning's EarlyStopping reads min when no mode is given).",
    ),
    (
        "early-stopping-patience-zero",
        "spec",
        SPEC + "space: mlp\nearly_stopping: {patience: 0}\n",
        "early_stopping.patience: `patience` must be an integer >= 1, but got 0. Use e.g. patience: 1.",
    ),
    (
        "early-stopping-a-string",
        "spec",
        SPEC + "space: mlp\nearly_stopping: please\n",
        "early_stopping: `early_stopping` must be a mapping, true or false, but got 'please'. Write e.g. early_stopping: {patience: 3}.",
    ),
    # -- presets
    (
        "unknown-preset",
        "spec",
        SPEC + "space: {presets: [mlp, resnet]}\n",
        "space.presets: unknown preset, but got 'resnet'. Known presets: mlp, cnn, training, regularization, mlp_full, cnn_full.",
    ),
    (
        "preset-typo",
        "spec",
        SPEC + "space: mlpp\n",
        "space: unknown preset, but got 'mlpp'. Did you mean 'mlp'? Known presets: mlp, cnn, training, regularization, mlp_full, cnn_full.",
    ),
    (
        "presets-not-a-list",
        "spec",
        SPEC + "space: {presets: 3}\n",
        "space.presets: `presets` must be a list of preset names, but got 3. Use some of: mlp, cnn, training, regularization, mlp_full, cnn_full.",
    ),
    (
        "space-form-typo",
        "spec",
        SPEC + "space: {presets: [mlp], overide: {}}\n",
        "space: unknown key, but got 'overide'. Did you mean 'override'? Known keys: presets, preset, override, remove, params.",
    ),
    (
        "override-unknown-parameter",
        "spec",
        SPEC + "space: {presets: [mlp], override: {lr: {type: float, low: 0.1, high: 1}}}\n",
        "space.override: `override` names a parameter the presets do not have, but got 'lr'. Put new parameters under `params:`.",
    ),
    (
        "override-inverted-bounds",
        "spec",
        SPEC + "space: {presets: [mlp], override: {n_layers: {type: int, low: 3, high: 1}}}\n",
        "space.override.n_layers: `low <= high` must hold, but got low=3, high=1. Swap the bounds.",
    ),
    (
        "override-breaks-per-layer",
        "spec",
        SPEC + "space: {presets: [mlp], override: {n_layers: {type: choice, values: [a, b]}}}\n",
        "space.units.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'n_layers' (Choice(['a', 'b'])). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "remove-a-parent-alone",
        "spec",
        SPEC + "space: {presets: [mlp], remove: [n_layers]}\n",
        "space.remove.units: cannot remove 'n_layers' alone: 'units' depends on it, but got 'n_layers'. Remove 'units' too, or replace it with a version that does not refer to 'n_layers'.",
    ),
    (
        "remove-unknown",
        "spec",
        SPEC + "space: {presets: [mlp], remove: [unit]}\n",
        "space.remove.unit: cannot remove a parameter that does not exist, but got 'unit'. Did you mean 'units'?",
    ),
    # -- grids
    (
        "grid-float-without-step",
        "spec",
        SPEC + "search: grid\nspace: {presets: [training]}\n",
        "space.lr: a grid search needs the values of every float parameter, but got no `grid` and no `step`. Add an explicit `grid: [...]` list or a `step` to this parameter.",
    ),
    (
        "huge-grid",
        "spec",
        SPEC + "search: grid\nspace: {a: {type: int, low: 0, high: 999}, b: {type: int, low: 0, high: 999}}\n",
        "space: the grid is too large, but got more than 100000 configs. Give floats a coarser `grid:` list, narrow ranges, or use random/tpe search.",
    ),
    # -- spaces
    (
        "space-inverted-int-bounds",
        "space",
        "n_layers: {type: int, low: 4, high: 1}\n",
        "space.n_layers: `low <= high` must hold, but got low=4, high=1. Swap the bounds.",
    ),
    (
        "space-inverted-float-bounds",
        "space",
        "lr: {type: float, low: 0.1, high: 1e-4}\n",
        "space.lr: `low <= high` must hold, but got low=0.1, high=0.0001. Swap the bounds.",
    ),
    (
        "space-log-low-zero",
        "space",
        "lr: {type: float, low: 0, high: 0.1, log: true}\n",
        "space.lr.low: a log-scaled parameter needs `low > 0`, but got low=0.0. Use a small positive low such as 1e-6, or add an on/off Bool parameter for zero.",
    ),
    (
        "space-log-int-negative",
        "space",
        "units: {type: int, low: -8, high: 64, log: true}\n",
        "space.units.low: a log-scaled parameter needs `low > 0`, but got low=-8. Raise low to 1 or more, or add a separate on/off Bool parameter for zero.",
    ),
    (
        "space-int-step-not-dividing",
        "space",
        "units: {type: int, low: 16, high: 100, step: 16}\n",
        "space.units.step: `step` must divide `high - low` so that both bounds are reachable, but got low=16, high=100, step=16. Use high=96 or another step.",
    ),
    (
        "space-float-step-not-dividing",
        "space",
        "dropout: {type: float, low: 0.0, high: 0.5, step: 0.2}\n",
        "space.dropout.step: `step` must divide `high - low` so that both bounds are reachable, but got low=0.0, high=0.5, step=0.2. Use high=0.4 or another step.",
    ),
    (
        "space-int-low-a-float",
        "space",
        "units: {type: int, low: 1.5, high: 4}\n",
        "space.units.low: `low` of an int parameter must be an integer, but got 1.5. Use a whole number, or a float parameter for fractional values.",
    ),
    (
        "space-float-low-a-string",
        "space",
        "lr: {type: float, low: small, high: 0.1}\n",
        "space.lr.low: `low` of a float parameter must be a finite number, but got 'small'. Write a number such as 0.001 or 1.0e-3.",
    ),
    (
        "space-unknown-key",
        "space",
        "units: {type: int, low: 1, hihg: 4}\n",
        "space.units: unknown key, but got 'hihg'. Did you mean 'high'? Known keys: type, when, per_layer, low, high, step, log, grid.",
    ),
    (
        "space-unknown-type",
        "space",
        "units: {type: integr, low: 1, high: 4}\n",
        "space.units.type: `type` must be one of int, float, choice, bool, fixed, but got 'integr'. Did you mean 'int'?",
    ),
    (
        "space-type-undocumented-spelling",
        "space",
        "units: {type: integer, low: 1, high: 4}\n",
        "space.units.type: `type` must be one of int, float, choice, bool, fixed, but got 'integer'. Did you mean 'int'?",
    ),
    (
        "space-type-upper-case",
        "space",
        "units: {type: INT, low: 1, high: 4}\n",
        "space.units.type: `type` must be one of int, float, choice, bool, fixed, but got 'INT'. Did you mean 'int'?",
    ),
    (
        "space-missing-high",
        "space",
        "units: {type: int, low: 1}\n",
        "space.units: an int parameter needs `high`, but got nothing. Add `high:`.",
    ),
    (
        "space-empty-choice",
        "space",
        "act: {type: choice, values: []}\n",
        "space.act.values: a choice needs at least one value, but got []. List the values, or use a fixed parameter.",
    ),
    (
        "space-duplicate-choice-1-true",
        "space",
        "flag: {type: choice, values: [1, true]}\n",
        "space.flag.values: choice values must be unique (they compare equal in Python and in Optuna), but got 1 and True. Remove the duplicate.",
    ),
    (
        "space-nan-choice",
        "space",
        "x: {type: choice, values: [0.5, .nan]}\n",
        "space.x.values: choice values must be JSON-safe scalars (str, int, float, bool, null), but got nan at index 1. Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
    ),
    (
        "space-list-in-choice",
        "space",
        "x: {type: choice, values: [[1, 2]]}\n",
        "space.x.values: choice values must be JSON-safe scalars (str, int, float, bool, null), but got [1, 2] at index 0. Store a name and build the object late, e.g. 'relu' instead of nn.ReLU.",
    ),
    (
        "space-inf-fixed",
        "space",
        "x: .inf\n",
        "space.x: a parameter must be a mapping with a `type` (or a list of choices, or a fixed value), but got inf. Write e.g. {type: int, low: 1, high: 4}.",
    ),
    (
        "space-mapping-fixed",
        "space",
        "x: {type: fixed, value: {a: 1}}\n",
        "space.x.value: a fixed value must be a JSON-safe scalar (str, int, float, bool, null), but got {'a': 1}. Store a name and build the object late.",
    ),
    (
        "space-when-missing-parent",
        "space",
        "optimizer: [sgd, adam]\nmomentum: {type: float, low: 0.5, high: 0.9, when: {optimzer: sgd}}\n",
        "space.momentum.when: `when` names a parameter that does not exist, but got 'optimzer'. Did you mean 'optimizer'?",
    ),
    (
        "space-when-impossible-value",
        "space",
        "optimizer: [sgd, adam]\nmomentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: [sgd, rmsprop]}}\n",
        "space.momentum.when: `when['optimizer']` lists a value 'optimizer' can never take, but got 'rmsprop'. Use one of ['sgd', 'adam'].",
    ),
    (
        "space-when-not-a-mapping",
        "space",
        "optimizer: [sgd, adam]\nmomentum: {type: float, low: 0.5, high: 0.9, when: optimizer}\n",
        'space.momentum.when: `when` must map a parent parameter to the value(s) that activate this one, but got \'optimizer\'. Write e.g. when={"optimizer": ["sgd", "rmsprop"]}.',
    ),
    (
        "space-cycle",
        "space",
        "a: {type: bool, when: {b: true}}\nb: {type: bool, when: {a: true}}\n",
        "space.a.when: conditions must not form a cycle, but got a -> b -> a. Remove one of the conditions in the loop.",
    ),
    (
        "space-per-layer-on-a-float",
        "space",
        "n: {type: float, low: 1, high: 3}\nunits: {type: int, low: 8, high: 64, per_layer: n}\n",
        "space.units.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'n' (Float(low=1.0, high=3.0)). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "space-per-layer-count-huge",
        "space",
        "n: {type: int, low: 1, high: 1000000}\nunits: {type: int, low: 8, high: 64, per_layer: n}\n",
        "space.units.per_layer: a layer count must stay <= 1024, but got 'n' up to 1000000. Lower the largest value of 'n'.",
    ),
    (
        "space-bad-name",
        "space",
        "learning rate: {type: float, low: 0.1, high: 1}\n",
        "space: parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-', but got 'learning rate'. Rename it ('/' is reserved for per-layer copies).",
    ),
    (
        "space-non-string-name",
        "space",
        "true: {type: bool}\n",
        "space: parameter names must be strings, but got True. Quote the name.",
    ),
    (
        "space-a-list",
        "space",
        "[lr, units]\n",
        "space: a space must be a mapping of parameter names to definitions, but got list. Write e.g. `lr: {type: float, low: 1e-4, high: 0.1, log: true}`.",
    ),
    ("space-empty", "space", "", "space: the document is empty, but got nothing. Add parameters."),
    (
        "space-set-of-values",
        "space",
        "act: {type: choice, values: !!set {relu, tanh}}\n",
        "space.act.values: `values` must be a list, but got {'relu', 'tanh'}. Write e.g. values: [relu, tanh] (a list keeps its order; a set does not).",
    ),
]


def _load(kind: str, doc: str | bytes, tmp_path: Path) -> object:
    if kind == "file":  # through the file: the message starts with the file's name
        path = tmp_path / "spec.yaml"
        path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
        return load_spec(path)
    if kind == "spec":
        return parse_spec(load_yaml(doc))
    return Space.from_yaml(doc)


def test_the_table_is_large_and_its_names_are_unique() -> None:
    names = [name for name, *_ in MALFORMED]
    assert len(names) >= 30 and len(set(names)) == len(names)


@pytest.mark.parametrize(("kind", "doc", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_spec_is_refused_with_its_exact_message(
    kind: str, doc: str | bytes, message: str, tmp_path: Path
) -> None:
    expected = message.replace("{dir}", str(tmp_path))
    with pytest.raises(SchemaError, match=re.escape(expected)) as info:
        _load(kind, doc, tmp_path)
    assert str(info.value) == expected
    assert info.value.rule and info.value.fix  # every message states the rule and a fix


# -- loading never runs code -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]",
        "!!python/object/new:builtins.exec [\"open('{marker}', 'w')\"]",
        "!!python/object/apply:subprocess.call [[touch, '{marker}']]",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_a_spec_never_executes_code(tagged: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"model: mlp\nmetric: val_acc\nmode: max\nspace: {tagged.format(marker=marker)}\n"
    with pytest.raises(SchemaError, match=r"YAML tags that build objects are not allowed at line 4, column 8"):
        parse_spec(load_yaml(text))
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SchemaError, match=re.escape(f"{path}: YAML tags that build objects are not allowed")):
        load_spec(path)
    with pytest.raises(SchemaError, match=r"^space: YAML tags that build objects are not allowed"):
        Space.from_yaml(f"lr: {tagged.format(marker=marker)}\n")
    assert not marker.exists()


def test_parsing_a_spec_does_not_import_its_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "tb_hostile_builder.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build(config): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = parse_spec(load_yaml("builder: tb_hostile_builder:build\nspace: mlp\nmetric: val_acc\nmode: max\n"))
    assert run.builder == "tb_hostile_builder:build"
    assert "tb_hostile_builder" not in sys.modules and not marker.exists()


def test_loading_a_spec_imports_no_heavy_dependency() -> None:
    code = (
        "import sys, tunebridge.spec\n"
        "from tunebridge.schema import Space\n"
        f"run = tunebridge.spec.load_spec({str(RECIPES / 'digits_mlp.yaml')!r})\n"
        "Space.from_yaml(run.space.to_yaml()).grid if False else None\n"
        "run.space.walk(lambda k, p: p.enumerate()[0] if p.enumerate() else p.low)\n"
        "try:\n"
        "    tunebridge.spec.parse_spec({'model': 'mlp', 'space': 'cnn_full', 'metric': 'm', 'mode': 'min', 'search': 'grid'})\n"
        "except ValueError:\n"
        "    pass\n"
        "heavy = ('torch', 'optuna', 'ray', 'lightning', 'pytorch_lightning', 'sklearn', 'pandas', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stderr


# -- fuzzing: nothing but SchemaError escapes --------------------------------------------------------

WORDS = [
    "int",
    "float",
    "choice",
    "bool",
    "fixed",
    "categorical",
    "mlp",
    "cnn",
    "mlp_full",
    "training",
    "grid",
    "tpe",
    "asha",
    "median",
    "min",
    "max",
    "val_acc",
    "digits",
    "wine",
    "n_layers",
    "units",
    "optimizer",
    "sgd",
    "momentum",
    "lr",
    "a:b",
    "x.y:z",
    "",
    " ",
    "1e-4",
    "nan",
    "-",
    "/",
    "units/0",
]
KEYS = [
    "study",
    "model",
    "data",
    "builder",
    "space",
    "metric",
    "mode",
    "max_epochs",
    "early_stopping",
    "pruner",
    "search",
    "trials",
    "seed",
    "storage",
    "backend",
    "accelerator",
    "threads",
    "ray",
    "presets",
    "preset",
    "override",
    "remove",
    "params",
    "type",
    "low",
    "high",
    "step",
    "log",
    "grid",
    "values",
    "ordered",
    "value",
    "when",
    "per_layer",
    "policy",
    "grace_period",
    "reduction_factor",
    "max_budget",
    "patience",
    "min_delta",
    "monitor",
    "address",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, 2, 3, -1, 1024, 10**400])
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(WORDS)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6) | SCALARS, inner, max_size=4)
    ),
    max_leaves=12,
)
YAML_BITS = [
    "-",
    " ",
    "  ",
    "\n",
    ":",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "<<: ",
    "? ",
    "|",
    ">",
    "'",
    '"',
    "#",
    "---",
    "...",
    "!!set ",
    "!!binary ",
    "!!python/name:os.system ",
    "!!int ",
    "!!str ",
    "!!float ",
    "!!timestamp ",
    "!!map ",
    "!!seq ",
    "!local ",
    "%YAML 1.1\n",
    "1e400",
    ".nan",
    "-.inf",
    "0x1F",
    "0o17",
    "2024-13-45",
    "12:30:00",
    "~",
    "yes",
    "\t",
    "\u2028",
    "\x85",
    "\x07",
    "\ud800",
    "\\",
    "é",
    *KEYS,
    *WORDS,
]
YAML_TEXT = st.lists(st.sampled_from(YAML_BITS), max_size=30).map("".join)


def _spec_docs() -> list[Any]:
    docs: list[Any] = [load_yaml((RECIPES / name).read_bytes()) for name in ("digits_mlp.yaml", "digits_cnn.yaml")]
    docs.append(
        {
            "builder": "m:f",
            "metric": ["val_loss", "n"],
            "mode": ["min", "min"],
            "search": "grid",
            "ray": {"address": "auto"},
            "space": {
                "n": {"type": "int", "low": 0, "high": 2},
                "units": {"type": "choice", "values": [8, 16], "per_layer": "n"},
                "opt": ["sgd", "adam"],
                "m": {"type": "float", "low": 0.5, "high": 0.9, "step": 0.2, "when": {"opt": ["sgd"]}},
                "seed": 3,
            },
        }
    )
    return docs


VALID = _spec_docs()


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*path, i))
    return out


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """A valid spec with one node replaced, removed or given a new key."""
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    path = draw(st.sampled_from(_paths(doc)))
    if not path:
        return draw(JSON)
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "replace":
        node[last] = draw(JSON)
    elif action == "delete":
        del node[last]
    elif isinstance(node[last], dict):
        node[last][draw(st.sampled_from(KEYS) | SCALARS)] = draw(JSON)
    else:
        node[last] = [node[last], draw(JSON)]
    return doc


def _check_spec(doc: Any) -> None:
    try:
        run = parse_spec(doc)
    except SchemaError:
        return
    assert isinstance(run, RunSpec)
    json.dumps(run.meaning(), allow_nan=False)  # what is stored is plain, finite JSON
    assert Space.from_dict(run.space.to_dict()) == run.space
    assert Space.from_yaml(run.space.to_yaml()) == run.space


def _check_space(doc: Any) -> None:
    for build in (Space.from_dict, space_from_spec):
        try:
            space = build(doc)
        except SchemaError:
            continue
        assert Space.from_yaml(space.to_yaml()) == space


def _check_text(text: str | bytes) -> None:
    try:
        data = load_yaml(text)
    except SchemaError:
        data = None
    else:
        _check_spec(data)
        _check_space(data)
    try:
        Space.from_yaml(text)
    except SchemaError:
        pass


def _as_yaml(doc: Any) -> str:
    try:
        return str(yaml.safe_dump(doc, default_flow_style=None))
    except (yaml.YAMLError, ValueError, TypeError, RecursionError):
        return json.dumps(doc, default=str)


FUZZ: list[tuple[str, st.SearchStrategy[Any], Callable[[Any], None]]] = [
    ("json-as-spec", JSON, _check_spec),
    ("json-as-space", JSON, _check_space),
    ("mutated-spec", mutated_specs(), _check_spec),
    ("mutated-spec-as-yaml", mutated_specs().map(_as_yaml), _check_text),
    ("yaml-fragments", YAML_TEXT, _check_text),
    ("text", st.text(max_size=60), _check_text),
    ("bytes", st.binary(max_size=60), _check_text),
]


@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=st.sampled_from(FUZZ).flatmap(lambda c: st.tuples(st.just(c[2]), c[1])))
@pytest.mark.slow
def test_nothing_but_schema_error_escapes(case: tuple[Callable[[Any], None], Any]) -> None:
    check, doc = case
    check(doc)
