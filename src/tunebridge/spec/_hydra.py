"""The spec's ``hydra:`` section: tune a Hydra project (lightning-hydra-template's layout) from its own configs.

.. code-block:: yaml

    hydra:
      config_dir: configs                 # the folder @hydra.main's config_path names (from the spec's folder)
      config_name: train                  # its config_name
      overrides: [experiment=example]     # as on the command line, applied to every trial
      search: hparams_search/digits_optuna.yaml   # optional: a hydra-optuna-sweeper config gives the search
      # where the parts live in the composed config (lightning-hydra-template's names are the defaults):
      model: model
      datamodule: data
      trainer: trainer
      callbacks: callbacks                # null: none
      loggers: logger                     # null: none
      script: train.py                    # the entry point the printed best command runs
    space:
      model.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}

Only the shape is checked here (``tunebridge check`` never imports Hydra); that every space key exists in the
composed config is checked by :mod:`tunebridge.lightning._hydra_config` when a run starts. With ``search:``,
the sweeper config's ``params``, ``direction``, ``n_trials``, sampler and ``optimized_metric`` stand for the
spec's ``space``, ``mode``, ``trials``, ``search``/``seed`` and ``metric`` (the spec's own keys win, a spec
``space`` is refused: one search space), and its plain values join the overrides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunebridge._hints import did_you_mean
from tunebridge._rules import check_mapping
from tunebridge.errors import SchemaError, show
from tunebridge.schema._codec import check_keys
from tunebridge.spec._hydra_search import SweeperSearch, read_sweeper

__all__ = ["HYDRA_KEYS", "HydraSpec", "parse_hydra"]

#: Where each part lives in the composed config, by default (lightning-hydra-template's groups).
LOCATIONS = {
    "model": "model",
    "datamodule": "data",
    "trainer": "trainer",
    "callbacks": "callbacks",
    "loggers": "logger",
}
HYDRA_KEYS = ("config_dir", "config_name", "overrides", "search", *LOCATIONS, "script")
_SCRIPTS = ("train.py", "src/train.py")


@dataclass(frozen=True)
class HydraSpec:
    """Where a Hydra project's config comes from, and where its parts live in it.

    Attributes:
        config_dir: The config folder (absolute), as ``@hydra.main(config_path=...)`` names it.
        config_name: The primary config's name, without ``.yaml``.
        overrides: Command-line overrides applied to every trial (the spec's, then the sweeper config's).
        model: The key of the LightningModule's node (``_target_``); datamodule, trainer, callbacks and
            loggers likewise (None: the config has none).
        script: The entry point (absolute) of ``python train.py k=v ...``, the printed best command.
        search: The hydra-optuna-sweeper config read for the search (absolute), or None.
    """

    config_dir: str
    config_name: str = "train"
    overrides: tuple[str, ...] = ()
    model: str = "model"
    datamodule: str | None = "data"
    trainer: str | None = "trainer"
    callbacks: str | None = "callbacks"
    loggers: str | None = "logger"
    script: str = "train.py"
    search: str | None = None

    def meaning(self) -> dict[str, Any]:
        """What decides a trial (for the spec hash): the overrides, the parts' keys and every config file."""
        files = {}
        for path in sorted(Path(self.config_dir).rglob("*.yaml")):
            files[str(path.relative_to(self.config_dir))] = path.read_text(encoding="utf-8")
        where = {k: getattr(self, k) for k in LOCATIONS}
        return {"config_name": self.config_name, "overrides": list(self.overrides), **where, "files": files}


def _text(data: Mapping[str, Any], key: str, default: str, *, nullable: bool = False) -> str | None:
    value = data.get(key, default)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(
            f"`hydra.{key}` must be a non-empty string" + (" or null" if nullable else ""),
            path=f"hydra.{key}",
            value=show(value),
            fix=f"Write e.g. {key}: {default}.",
        )
    return value.strip()


def _config_dir(data: Mapping[str, Any], base_dir: str) -> str:
    given = _text(data, "config_dir", "configs") or "configs"
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(given)))
    if not os.path.isdir(path):
        raise SchemaError(
            "the Hydra config folder does not exist",
            path="hydra.config_dir",
            value=repr(given),
            fix=f"Name the folder @hydra.main's config_path names; relative paths are read from the spec's folder "
            f"({base_dir}): looked for {path}.",
        )
    return path


def _config_name(data: Mapping[str, Any], config_dir: str) -> str:
    name = (_text(data, "config_name", "train") or "train").removesuffix(".yaml")
    if not os.path.isfile(os.path.join(config_dir, name + ".yaml")):
        known = sorted(p.stem for p in Path(config_dir).glob("*.yaml"))
        hint = did_you_mean(name, known)
        raise SchemaError(
            "the Hydra config does not exist",
            path="hydra.config_name",
            value=repr(name),
            fix=(hint + " " if hint else "") + f"Primary configs in {config_dir}: {', '.join(known) or 'none'}.",
        )
    return name


def _overrides(data: Mapping[str, Any]) -> tuple[str, ...]:
    value = data.get("overrides") or []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SchemaError(
            "`hydra.overrides` must be a list of overrides",
            path="hydra.overrides",
            value=show(value),
            fix="Write e.g. overrides: [experiment=example, trainer=cpu] (as on the command line).",
        )
    return tuple(v.strip() for v in value)


def _file(base: str, given: str, key: str, *, must_exist: bool = True) -> str:
    path = os.path.normpath(os.path.join(base, os.path.expanduser(given)))
    if must_exist and not os.path.isfile(path):
        raise SchemaError(
            f"the `hydra.{key}` file does not exist",
            path=f"hydra.{key}",
            value=repr(given),
            fix=f"Relative paths are read from {base}; looked for {path}.",
        )
    return path


def parse_hydra(data: Any, *, base_dir: str) -> tuple[HydraSpec, SweeperSearch | None]:
    """Validate the ``hydra:`` section; paths are made absolute, the sweeper config (if named) is read.

    Raises:
        SchemaError: Not a mapping, an unknown key, a config folder or config that does not exist, a
            sweeper config that does not exist or cannot be carried (naming its line).
    """
    check_mapping(data, path="hydra", fix="Write e.g. hydra: {config_dir: configs, config_name: train}.")
    check_keys("hydra", data, HYDRA_KEYS)
    config_dir = _config_dir(data, base_dir)
    where = {key: _text(data, key, default, nullable=key != "model") for key, default in LOCATIONS.items()}
    script = data.get("script")
    if script is None:
        found = [s for s in _SCRIPTS if os.path.isfile(os.path.join(base_dir, s))]
        script = found[0] if found else "train.py"
    elif not isinstance(script, str) or not script.strip():
        raise SchemaError(
            "`hydra.script` must name the entry point",
            path="hydra.script",
            value=show(script),
            fix="Write e.g. script: src/train.py.",
        )
    spec = HydraSpec(
        config_dir=config_dir,
        config_name=_config_name(data, config_dir),
        overrides=_overrides(data),
        script=_file(base_dir, script, "script", must_exist=False),
        **where,  # type: ignore[arg-type]
    )
    if data.get("search") is None:
        return spec, None
    if not isinstance(data["search"], str) or not data["search"].strip():
        raise SchemaError(
            "`hydra.search` must name a sweeper config",
            path="hydra.search",
            value=show(data["search"]),
            fix="Write e.g. search: hparams_search/mnist_optuna.yaml.",
        )
    path = _file(config_dir, data["search"], "search")
    search = read_sweeper(path, shown=os.path.relpath(path, os.path.dirname(config_dir)))
    return replace(spec, search=path, overrides=(*spec.overrides, *search.overrides)), search
