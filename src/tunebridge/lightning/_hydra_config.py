"""A Hydra project's config as a ``build(config)``: each trial is the composed config with its values as overrides.

Every trial composes the project's primary config with Hydra's compose API, the spec's overrides and then
the trial's values (``model.optimizer.lr=0.003``), exactly as ``python train.py model.optimizer.lr=0.003``
would, and sets what ``@hydra.main`` sets before the task runs (``hydra.runtime.output_dir`` and ``cwd``), so
``${paths.data_dir}``, ``${hydra:runtime.output_dir}`` and ``${oc.env:…}`` resolve as in the user's own run.
The model and datamodule nodes are instantiated (``_partial_`` optimizers included), the ``trainer`` node
becomes Trainer options of the usual runner (those tunebridge owns, :data:`tunebridge._vocab.OWNED_TRAINER_KEYS`,
stay tunebridge's), and the callbacks and loggers nodes are made fresh for every trial next to
tunebridge's (progress bars left out: the study has one). Nothing here trains.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunebridge._compat import require
from tunebridge._imports import search_first
from tunebridge._vocab import OWNED_TRAINER_KEYS
from tunebridge.errors import SchemaError
from tunebridge.lightning._config_keys import check_names, flatten, refuse_per_layer, split_trainer
from tunebridge.lightning._hydra_best import best_files, override
from tunebridge.schema import Choice, Scalar, Space

if TYPE_CHECKING:  # the type only: importing the spec package would load presets and the spec parser
    from tunebridge.spec import HydraSpec

__all__ = ["HydraBuild", "hydra_builder", "override"]

_FEATURE = "hydra: (tuning a Hydra project)"
_PARTS = ("model", "datamodule", "trainer", "callbacks", "loggers")
# The latest composed trial config, so that trainer_options(), build() and trial_callbacks() of one trial compose once.
_LAST: dict[str, Any] = {}


def _errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return HydraException, OmegaConfBaseException, ValueError, KeyError


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines()[:3] if line.strip())


@dataclass(frozen=True)
class _Composed:
    """One composed config: the parts (resolved, plain containers), the whole (unresolved) and the groups."""

    parts: dict[str, Any]
    keys: set[str]
    groups: dict[str, Any]
    sweep_dir: str
    has_seed: bool = False


@dataclass(frozen=True)
class HydraBuild:
    """``build(config) -> (module, datamodule)`` from a Hydra project's composed config (picklable).

    Attributes:
        spec: The ``hydra:`` section (config folder and name, overrides, where the parts live).
        base_dir: The spec's folder (put on ``sys.path`` first: ``_target_`` modules import from it).
        max_epochs: The run's budget (``trainer.max_epochs`` of the best command).
        cwd: The working directory of the run (``${hydra:runtime.cwd}``, in every worker and Ray actor).
        sweep_dir: The run's ``hydra.sweep.dir``; each trial's ``hydra.runtime.output_dir`` is a folder in it.
    """

    spec: HydraSpec
    base_dir: str = "."
    max_epochs: int = 20
    cwd: str = "."
    sweep_dir: str = ""

    def overrides(self, config: Mapping[str, Scalar]) -> list[str]:
        """The spec's overrides, then the trial's values, as Hydra's command line writes them."""
        return [*self.spec.overrides, *(f"{k}={override(v)}" for k, v in config.items())]

    def compose(self, config: Mapping[str, Scalar]) -> _Composed:
        """The config of ``config``, as ``python train.py OVERRIDES`` composes it.

        Raises:
            MissingDependencyError: hydra-core is not installed (``pip install 'tunebridge[hydra]'``).
            SchemaError: An override Hydra refuses, a config or group option that does not exist, an
                interpolation of the parts that fails.
        """
        require("hydra", _FEATURE)
        require("omegaconf", _FEATURE)
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        # `_target_` modules import as in `python train.py`: from the script's folder (python puts it first), the
        # project's root (the config folder's parent, which lightning-hydra-template's rootutils adds) and the spec's.
        for folder in (self.base_dir, os.path.dirname(self.spec.config_dir), os.path.dirname(self.spec.script)):
            search_first(folder)
        root = _project_root(self.spec.script)
        if root is not None and "PROJECT_ROOT" not in os.environ:  # what rootutils.setup_root in train.py sets
            os.environ["PROJECT_ROOT"] = root
        # Composing needs Hydra's global state; a caller's own (tune() inside an @hydra.main app) is put back.
        saved = GlobalHydra.instance().hydra, HydraConfig.instance().cfg
        try:
            return self._compose(config)
        finally:
            GlobalHydra.instance().hydra, HydraConfig.instance().cfg = saved

    def _compose(self, config: Mapping[str, Scalar]) -> _Composed:
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, open_dict, read_write

        overrides = self.overrides(config)
        GlobalHydra.instance().clear()
        job = os.path.splitext(os.path.basename(self.spec.script))[0]
        try:
            with initialize_config_dir(config_dir=self.spec.config_dir, version_base="1.3", job_name=job):
                cfg = compose(config_name=self.spec.config_name, overrides=overrides, return_hydra_config=True)
        except _errors() as e:
            raise SchemaError(
                "Hydra refused the config",
                path="hydra",
                value=f"{self.spec.config_name}.yaml with {' '.join(overrides) or 'no overrides'}: {_first_line(e)}",
                fix="Check the overrides and the config groups (`python train.py OVERRIDES --cfg job` composes "
                "the same config).",
            ) from None
        # What @hydra.main sets before the task runs; the hydra node is read-only once HydraConfig holds it.
        with read_write(cfg), open_dict(cfg):
            cfg.hydra.runtime.cwd = self.cwd
            cfg.hydra.job.num = 0
            cfg.hydra.job.id = "tunebridge"
        sweep_dir = self.sweep_dir
        if not sweep_dir:
            HydraConfig.instance().set_config(cfg)
            sweep_dir = os.path.normpath(os.path.join(self.cwd, str(self._resolve(cfg, "hydra.sweep.dir"))))
        with read_write(cfg.hydra), open_dict(cfg):
            cfg.hydra.runtime.output_dir = os.path.join(sweep_dir, _trial_folder(overrides))
        HydraConfig.instance().set_config(cfg)
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        groups = {str(k): v for k, v in choices.items() if not str(k).startswith("hydra")}  # type: ignore[union-attr]
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        whole = OmegaConf.to_container(cfg, resolve=False)
        # Every part resolved now, while HydraConfig holds this trial's runtime: nothing resolves later.
        parts = {
            part: None if getattr(self.spec, part) is None else self._resolve(cfg, getattr(self.spec, part))
            for part in _PARTS
        }
        return _Composed(parts, set(flatten(whole)), groups, sweep_dir, has_seed="seed" in cfg)

    def _resolve(self, cfg: Any, key: str) -> Any:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        try:
            node = OmegaConf.select(cfg, key, throw_on_missing=True)
            if isinstance(node, (DictConfig, ListConfig)):
                return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
            return node
        except _errors() as e:
            full = getattr(e, "full_key", "") or key
            raise SchemaError(
                "a Hydra interpolation failed",
                path=f"hydra: {full}",
                value=_first_line(e),
                fix="Interpolations resolve as in `python train.py`: set the environment variable an ${oc.env:NAME} "
                "reads (or give it a default, ${oc.env:NAME,default}), or set the `???` value with an override.",
            ) from None

    def _trial(self, config: Mapping[str, Scalar]) -> _Composed:
        key = json.dumps([self.spec.config_dir, self.spec.config_name, self.overrides(config)])
        if _LAST.get("key") != key:
            _LAST.clear()
            _LAST.update(key=key, composed=self.compose(config))
        composed: _Composed = _LAST["composed"]
        return composed

    def __call__(self, config: dict[str, Scalar]) -> tuple[Any, Any]:
        from hydra.utils import instantiate

        parts = self._trial(config).parts
        _LAST.clear()  # a module is trained once: the next build of this config composes afresh
        model = instantiate(parts["model"])
        data = None if parts["datamodule"] is None else instantiate(parts["datamodule"])
        return model, data

    def trainer_options(self, config: Mapping[str, Scalar]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(from the config, from the trial)``: the Trainer options the ``trainer`` node sets, tunebridge's left out."""
        section = dict(self._trial(config).parts["trainer"] or {})
        section.pop("_target_", None)
        if any(isinstance(v, Mapping) and "_target_" in v for v in section.values()):
            from hydra.utils import instantiate

            section = dict(instantiate(section, _convert_="all"))  # a strategy or plugin node, as train.py makes it
        return split_trainer(section, section, config, trainer=self.spec.trainer or "trainer")

    def trial_callbacks(self, config: Mapping[str, Scalar]) -> tuple[list[Any], list[Any]]:
        """The user's callbacks and loggers, made fresh for this trial (progress bars left out: the study has one)."""
        parts = self._trial(config).parts
        callbacks = [cb for cb in _instantiate_all(parts["callbacks"]) if not _is_progress_bar(cb)]
        return callbacks, _instantiate_all(parts["loggers"])

    def check(self, space: Space) -> None:
        """Before any trial: every space key is a key of the config or a config group, and it composes.

        Raises:
            SchemaError: A name that is not a key (with the nearest one), one tunebridge owns, a group option
                that does not exist, a ``_target_`` that cannot be imported, a Trainer key Lightning lacks.
        """
        trainer = self.spec.trainer or "trainer"
        for given in self.spec.overrides:
            key = given.partition("=")[0].lstrip("+~")
            if key.partition(".")[0] == trainer and key.partition(".")[2] in OWNED_TRAINER_KEYS:
                raise SchemaError(
                    "tunebridge sets this Trainer option itself",
                    path="hydra.overrides",
                    value=repr(given),
                    fix=OWNED_TRAINER_KEYS[key.partition(".")[2]][0].upper()
                    + OWNED_TRAINER_KEYS[key.partition(".")[2]][1:]
                    + ".",
                )
        base = self.compose({})
        keys = base.keys | {g for g in base.groups}
        check_names(space.names, keys, config="Hydra config", example=_EXAMPLE, trainer=trainer)
        for name in space.names:
            if name in base.groups:  # a config group: each option must exist
                param = space[name]
                for value in param.values if isinstance(param, Choice) else ():
                    self.compose({name: value})  # an option that does not exist is refused now
        _check_targets(base.parts)
        if base.parts["trainer"]:
            from tunebridge.lightning._trainer import check_trainer_options

            section = {
                k: v for k, v in base.parts["trainer"].items() if k != "_target_" and k not in OWNED_TRAINER_KEYS
            }
            check_trainer_options(section)

    def rebuild_record(self) -> dict[str, Any]:
        """What ``best.yaml`` records (its ``hydra:`` entry) so that ``tunebridge.results.load_best`` builds the
        best trial's module again in another process: the config composed with the best trial's values, the kept
        weights loaded into it. A module whose ``save_hyperparameters`` leaves out
        its network (lightning-hydra-template's ``ignore=["net"]``) cannot rebuild itself from the checkpoint."""
        spec = {**asdict(self.spec), "overrides": list(self.spec.overrides)}
        return {"spec": spec, "base_dir": self.base_dir, "max_epochs": self.max_epochs, "cwd": self.cwd,
                "sweep_dir": self.sweep_dir}  # fmt: skip

    def best_files(self, config: Mapping[str, Scalar], out: str, *, seed: int | None) -> dict[str, Any]:
        """``best_overrides.yaml`` and ``best_command.sh``: the best trial by the project's own entry point."""
        base = self.compose({})
        return best_files(self, config, out, seed=seed, has_seed=base.has_seed, trainer=base.parts["trainer"])


_EXAMPLE = "e.g. model.optimizer.lr, or a config group such as model (`python train.py --cfg job` lists them)"


def _project_root(script: str) -> str | None:
    """The folder of lightning-hydra-template's ``.project-root`` above the script (rootutils' indicator), or None."""
    folder = os.path.dirname(os.path.abspath(script))
    for parent in (folder, *[str(p) for p in Path(folder).parents]):
        if os.path.exists(os.path.join(parent, ".project-root")):
            return parent
    return None


def _trial_folder(overrides: Iterable[str]) -> str:
    return "trial-" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:10]


def _instantiate_all(section: Any) -> list[Any]:
    """Every ``_target_`` node of a callbacks or logger group, as lightning-hydra-template's train.py makes them."""
    from hydra.utils import instantiate

    nodes = section.values() if isinstance(section, Mapping) else section or []
    return [instantiate(node) for node in nodes if isinstance(node, Mapping) and "_target_" in node]


def _is_progress_bar(callback: Any) -> bool:
    return any(
        k.__name__ == "ProgressBar" and k.__module__.split(".")[0] in ("lightning", "pytorch_lightning")
        for k in type(callback).__mro__
    )


def _check_targets(data: Any, path: str = "") -> None:
    """Every ``_target_`` of the parts imports (a typo is refused before any trial, not in every one)."""
    import logging

    from hydra.utils import get_object

    if isinstance(data, Mapping):
        target = data.get("_target_")
        if isinstance(target, str):
            quiet = logging.getLogger("hydra.utils")
            level, quiet.level = quiet.level, logging.CRITICAL  # it logs the error it raises: one message is enough
            try:
                get_object(target)
            except Exception as e:
                raise SchemaError(
                    "a `_target_` of the Hydra config cannot be imported",
                    path=f"hydra: {path}._target_" if path else "hydra: _target_",
                    value=f"{target!r} ({_first_line(e)})",
                    fix="Check the module and class names, and that the module imports from the spec's folder.",
                ) from None
            finally:
                quiet.setLevel(level)
        for key, value in data.items():
            _check_targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_targets(value, f"{path}[{i}]")


def hydra_builder(spec: HydraSpec, space: Space, *, base_dir: str, max_epochs: int) -> HydraBuild:
    """The build of a ``hydra:`` spec, its space checked against the composed config before any trial runs.

    Raises:
        MissingDependencyError: hydra-core is not installed.
        SchemaError: A parameter that is not a key of the config (with the nearest key), one tunebridge owns
            (``trainer.max_epochs``...), a ``per_layer`` one; an override, group option or interpolation that fails.
    """
    refuse_per_layer(space, config="Hydra config", example="e.g. model.net.lin1_size, model.net.lin2_size")
    cwd = os.getcwd()
    probe = HydraBuild(spec, base_dir=base_dir, max_epochs=max_epochs, cwd=cwd)
    build = HydraBuild(spec, base_dir=base_dir, max_epochs=max_epochs, cwd=cwd, sweep_dir=probe.compose({}).sweep_dir)
    build.check(space)
    return build
