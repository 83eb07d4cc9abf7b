"""The spec's ``lightning_cli:`` section: tune a LightningCLI project from its own config (standard library only).

.. code-block:: yaml

    lightning_cli:
      model: digits_cli_model:DigitsClassifier   # the classes given to LightningCLI (optional: subclass mode)
      datamodule: digits_cli_model:DigitsData
      cli: lightning.pytorch.cli:LightningCLI    # or your LightningCLI subclass, or main.py's `cli_main` function
      config: [base.yaml]                        # the files `main.py fit --config ...` reads, in order
    space:
      model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}

Only the shape is checked here (``tunebridge check`` never imports Lightning); that every space key
exists in the parsed config is checked by :mod:`tunebridge.lightning._cli_config` when a run starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunebridge._rules import check_mapping
from tunebridge.errors import SchemaError, show
from tunebridge.schema._codec import check_keys

__all__ = ["CLI_KEYS", "DEFAULT_CLI", "LightningCliSpec", "parse_lightning_cli"]

CLI_KEYS = ("cli", "model", "datamodule", "config")
DEFAULT_CLI = "lightning.pytorch.cli:LightningCLI"
_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True)
class LightningCliSpec:
    """Where a LightningCLI project's config comes from.

    Attributes:
        cli: ``module:Class`` of the LightningCLI (sub)class ``main.py`` instantiates, or ``module:function``
            of the function that instantiates it (``main:cli_main``; its classes and options are then used,
            read by calling it with construction intercepted: it parses, builds and trains nothing).
        model: ``module:Class`` given to it as ``model_class`` (None: any LightningModule, by ``class_path``).
        datamodule: ``module:Class`` given as ``datamodule_class`` (None: any, by ``class_path``, or none).
        config: The base config files, absolute paths, applied in order (later ones win).
    """

    cli: str = DEFAULT_CLI
    model: str | None = None
    datamodule: str | None = None
    config: tuple[str, ...] = ()

    def meaning(self) -> dict[str, Any]:
        """What decides a trial (for the spec hash): the classes and the base configs' contents."""
        contents = []
        for path in self.config:
            with open(path, encoding="utf-8") as f:
                contents.append(f.read())
        return {"cli": self.cli, "model": self.model, "datamodule": self.datamodule, "config": contents}


def _ref(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _REF.fullmatch(value):
        raise SchemaError(
            f"`lightning_cli.{key}` must be 'module:Class'",
            path=f"lightning_cli.{key}",
            value=show(value),
            fix="Write e.g. model: my_project.models:Classifier (importable from the spec's folder).",
        )
    return value


def parse_lightning_cli(data: Any, *, base_dir: str) -> LightningCliSpec:
    """Validate the ``lightning_cli:`` section; config paths are made absolute against the spec's folder.

    Raises:
        SchemaError: Not a mapping, an unknown key, a reference that is not ``module:Class``, no config
            file or one that does not exist.
    """
    fix = "Write e.g. lightning_cli: {model: pkg.models:Net, datamodule: pkg.data:Data, config: [base.yaml]}."
    check_mapping(data, path="lightning_cli", fix=fix)
    check_keys("lightning_cli", data, CLI_KEYS)
    files = data.get("config")
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise SchemaError(
            "`lightning_cli.config` must name the base config file(s)",
            path="lightning_cli.config",
            value="nothing" if files is None else show(files),
            fix="Write e.g. config: [base.yaml] (the files you pass to `main.py fit --config`).",
        )
    paths = tuple(os.path.normpath(os.path.join(base_dir, os.path.expanduser(f))) for f in files)
    for given, path in zip(files, paths):
        if not os.path.isfile(path):
            raise SchemaError(
                "a `lightning_cli.config` file does not exist",
                path="lightning_cli.config",
                value=repr(given),
                fix=f"Relative paths are read from the spec's folder ({base_dir}); looked for {path}.",
            )
    return LightningCliSpec(
        cli=_ref(data, "cli") or DEFAULT_CLI,
        model=_ref(data, "model"),
        datamodule=_ref(data, "datamodule"),
        config=paths,
    )
