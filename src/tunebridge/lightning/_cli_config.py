"""A LightningCLI project's config as a ``build(config)``: each trial is the base config with its values applied.

The sampled values are given to the project's own LightningCLI parser as command-line overrides
(``--model.init_args.lr=0.01``), exactly as ``main.py fit --config base.yaml --model.init_args.lr=0.01``
would parse them, so jsonargparse checks their types. The model and datamodule become the trial's
module and data; the config's ``trainer:`` values become Trainer options of the usual runner (those
tunebridge owns, :data:`tunebridge._vocab.OWNED_TRAINER_KEYS`, stay tunebridge's). Nothing here trains.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebridge._compat import require
from tunebridge._imports import import_or_refuse, search_first
from tunebridge.errors import SchemaError
from tunebridge.lightning._config_keys import check_names, flatten, refuse_per_layer, split_trainer
from tunebridge.lightning._runner import trial_seed
from tunebridge.schema import Scalar, Space

if TYPE_CHECKING:  # the type only: importing the spec package would load presets and the spec parser
    from tunebridge.spec import LightningCliSpec

__all__ = ["CliConfigBuild", "cli_builder", "config_keys"]

_SECTIONS = (("model", "model"), ("data", "data"))
_EXAMPLE = "e.g. model.init_args.lr (`python main.py fit --print_config` lists them)"
# The latest instantiated parse, so that trainer_options() and build() of one trial parse once.
_LAST: dict[str, Any] = {}


def _import(ref: str, where: str) -> Any:
    return import_or_refuse(
        ref,
        path=f"lightning_cli.{where}",
        rule=f"cannot import `lightning_cli.{where}`",
        fix="Check the module and class names, and that the module is importable from the spec's folder.",
    )


def _arg_value(value: Scalar) -> str:
    """A value as the command line spells it (YAML, as jsonargparse reads it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        text = repr(value)
        # PyYAML reads 1e-05 as a string: YAML 1.1 floats need a dot before the exponent.
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    return json.dumps(value)


@dataclass(frozen=True)
class CliConfigBuild:
    """``build(config) -> (module, datamodule)`` from a LightningCLI project's base config (picklable).

    Attributes:
        spec: The ``lightning_cli:`` section (classes and base config files).
        base_dir: The spec's folder (put on ``sys.path`` first, like a ``builder:`` module's).
        max_epochs: The run's budget (``trainer.max_epochs`` of :meth:`write_config`).
    """

    spec: LightningCliSpec
    base_dir: str = "."
    max_epochs: int = 20

    def _cli(self, config: Mapping[str, Scalar], *, instantiate: bool) -> Any:
        """The project's LightningCLI, parsed (and, if asked, its model and data made) without a Trainer."""
        require("jsonargparse", "lightning_cli (tuning a LightningCLI config)")
        search_first(self.base_dir)
        target = _import(self.spec.cli, "cli")
        cli_class, given, options = (target, (), {}) if isinstance(target, type) else _captured(target, self.spec.cli)
        model = None if self.spec.model is None else _import(self.spec.model, "model")
        data = None if self.spec.datamodule is None else _import(self.spec.datamodule, "datamodule")
        # The classes main.py gives its LightningCLI, unless the spec names others.
        options = dict(options)
        model = model or (given[0] if given else options.pop("model_class", None))
        data = data or (given[1] if len(given) > 1 else options.pop("datamodule_class", None))
        for key in ("model_class", "datamodule_class"):
            options.pop(key, None)

        class _Parsed(cli_class):  # type: ignore[misc, valid-type]
            def parse_arguments(self, parser: Any, args: Any) -> None:
                self.config = parser.parse_args(args)  # no warning about sys.argv: args are ours

            def _set_seed(self) -> None:  # tunebridge seeds every trial before its build
                pass

            def instantiate_classes(self) -> None:
                if instantiate:
                    super().instantiate_classes()

            def instantiate_trainer(self, **kwargs: Any) -> Any:
                return None  # the runner makes the Trainer

        args = [f"--config={path}" for path in self.spec.config]
        # A class_path before its init_args: the override of a class replaces its arguments.
        for key in sorted(config, key=lambda k: (not k.endswith(".class_path"), k)):
            args.append(f"--{key}={_arg_value(config[key])}")
        # A section given as class_path + init_args is parsed in subclass mode, as main.py must then parse it.
        base = self._base()
        subclass = {
            f"subclass_mode_{k}": isinstance(base.get(s), Mapping) and "class_path" in base[s] for k, s in _SECTIONS
        }
        # main.py's own options (trainer_defaults, subclass modes, ...) win; how and what to parse is ours.
        options = {**subclass, **options, "run": False, "args": args, "parser_kwargs": {"exit_on_error": False}}
        try:
            return _Parsed(model, data, *given[2:], **options)
        except (argparse.ArgumentError, ValueError, TypeError, SystemExit) as e:
            raise SchemaError(
                "the LightningCLI parser refused the config",
                path="lightning_cli",
                value=f"{' '.join(args[len(self.spec.config) :]) or '(the base config)'}: {e}",
                fix="Check the space's values against the types of the classes' __init__ arguments.",
            ) from None

    def _base(self) -> dict[str, Any]:
        """The base config files merged (later files win per top-level section key), as written."""
        merged: dict[str, Any] = {}
        for path in self.spec.config:
            data = _read_yaml(path) or {}
            for key, value in data.items():
                if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
        return merged

    def _instantiated(self, config: Mapping[str, Scalar]) -> Any:
        key = json.dumps(dict(config), sort_keys=True)
        if _LAST.get("key") != key:
            _LAST.clear()
            _LAST.update(key=key, cli=self._cli(config, instantiate=True))
        return _LAST["cli"]

    def __call__(self, config: dict[str, Scalar]) -> tuple[Any, Any]:
        cli = self._instantiated(config)
        _LAST.clear()  # a module is trained once: the next build of this config makes fresh ones
        return cli.model, cli.datamodule

    def trainer_options(self, config: Mapping[str, Scalar]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(from the base config, from the trial)``: the Trainer options the config sets, tunebridge's left out."""
        cli = self._instantiated(config)
        return split_trainer(self._base().get("trainer") or {}, cli.config_init.get("trainer") or {}, config)

    def check_space(self, names: Iterable[str]) -> None:
        """Every parameter must be a key of the parsed config; tunebridge's Trainer keys are refused.

        Raises:
            SchemaError: The first bad name, with the nearest existing key.
        """
        keys = config_keys(self._cli({}, instantiate=False).config)
        check_names(names, keys, config="LightningCLI config", example=_EXAMPLE)

    def write_config(self, config: Mapping[str, Scalar], path: str | Path, *, seed: int | None = None) -> Path:
        """Write the complete config of ``config`` (``main.py fit --config PATH`` runs it unchanged).

        ``trainer.max_epochs`` is the run's budget and ``seed_everything`` the trial's seed, as the trial trained.
        """
        values: dict[str, Scalar] = {**config, "trainer.max_epochs": self.max_epochs}
        if seed is not None:
            values["seed_everything"] = trial_seed(seed, config)
        cli = self._cli(values, instantiate=False)
        text = cli.parser.dump(cli.config, skip_none=False, format="yaml")
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            f"# tunebridge: the best trial's complete config; run it with `python main.py fit --config {out.name}`\n{text}"
        )
        return out


class _Made(Exception):
    """Raised instead of constructing the LightningCLI a ``cli_main`` function makes: its class and arguments."""

    def __init__(self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(cls.__name__)
        self.cls, self.args, self.kwargs = cls, args, kwargs


def _captured(fn: Any, ref: str) -> tuple[type, tuple[Any, ...], dict[str, Any]]:
    """The LightningCLI class, classes and options that ``fn()`` (main.py's ``cli_main``) constructs.

    ``fn`` is called with the LightningCLI classes its module refers to replaced, for the call only, by
    subclasses whose ``__init__`` records its arguments and stops: nothing is parsed, built or trained.
    """
    module = sys.modules[fn.__module__]
    bases = tuple(
        sys.modules[n].LightningCLI for n in ("lightning.pytorch.cli", "pytorch_lightning.cli") if n in sys.modules
    )
    originals = {k: v for k, v in vars(module).items() if isinstance(v, type) and bases and issubclass(v, bases)}
    if not originals:  # calling it would run the real CLI: refuse instead
        raise SchemaError(
            "the module of `lightning_cli.cli` refers to no LightningCLI class",
            path="lightning_cli.cli",
            value=repr(ref),
            fix="Import it at the top of main.py (from lightning.pytorch.cli import LightningCLI), or name the "
            "LightningCLI class with `model:` and `datamodule:`.",
        )

    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        raise _Made(type(self).__mro__[1], args, kwargs)

    try:
        for name, cls in originals.items():
            setattr(module, name, type(cls.__name__, (cls,), {"__init__": record}))
        fn()
    except _Made as made:
        return made.cls, made.args, made.kwargs
    except Exception as e:
        raise SchemaError(
            "calling `lightning_cli.cli` failed before it made its LightningCLI",
            path="lightning_cli.cli",
            value=f"{ref!r} ({type(e).__name__}: {e})",
            fix="Name a function that takes no arguments and constructs the LightningCLI, or the LightningCLI class.",
        ) from None
    finally:
        for name, cls in originals.items():
            setattr(module, name, cls)
    raise SchemaError(
        "`lightning_cli.cli` returned without constructing a LightningCLI",
        path="lightning_cli.cli",
        value=repr(ref),
        fix="Name the function main.py calls (it constructs LightningCLI(...) from `lightning.pytorch.cli`), "
        "or the LightningCLI class with `model:` and `datamodule:`.",
    )


def _read_yaml(path: str) -> Any:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def config_keys(config: Any) -> set[str]:
    """Every dotted key of a parsed config (a jsonargparse Namespace or a mapping), inner ones included."""
    data = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    data.pop("config", None)  # the --config files themselves, not a key of the config
    return set(flatten(data))


def cli_builder(spec: LightningCliSpec, space: Space, *, base_dir: str, max_epochs: int) -> CliConfigBuild:
    """The build of a ``lightning_cli:`` spec, its space checked against the config before any trial runs.

    Raises:
        SchemaError: A parameter that is not a key of the config, one tunebridge owns
            (``trainer.max_epochs``...), or a ``per_layer`` one (its copies ``name/0``... are not config keys).
    """
    refuse_per_layer(
        space,
        config="LightningCLI config",
        example="e.g. model.init_args.sizes as a choice of lists is not a scalar: tune one key per layer, "
        "model.init_args.hidden1, model.init_args.hidden2",
    )
    build = CliConfigBuild(spec, base_dir=base_dir, max_epochs=max_epochs)
    build.check_space(space.names)
    return build
