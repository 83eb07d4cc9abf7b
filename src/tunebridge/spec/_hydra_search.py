"""A hydra-optuna-sweeper config (``configs/hparams_search/X.yaml``) as a tunebridge search, without the sweeper.

Standard library (+ PyYAML) only. What carries over, with the sweeper's meaning:

- ``hydra.sweeper.params`` (:func:`tunebridge.spec._hydra_sweep.parse_sweep`) and the older
  ``hydra.sweeper.search_space`` form become the spec's ``space:``; plain values become overrides.
- ``direction`` (``minimize``/``maximize``, default minimize) becomes ``mode:``, ``n_trials`` (default 20)
  ``trials:``, ``optimized_metric`` ``metric:``, ``study_name`` ``study:``.
- ``sampler`` (``_target_: optuna.samplers.TPESampler`` ..., or ``override /hydra/sweeper/sampler: tpe``):
  its algorithm becomes ``search:``, its ``seed`` ``seed:``, and the options tunebridge's search takes.
- The file's other values (it is ``# @package _global_``) and ``override /group: option`` defaults become
  overrides, as the sweeper's run composes them.

Anything else that changes what a trial trains or how the search samples is refused with its line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunebridge._overrides import override_value
from tunebridge._search import SEARCH_OPTIONS
from tunebridge.errors import SchemaError, show
from tunebridge.schema import load_yaml
from tunebridge.schema._codec import param_from_dict
from tunebridge.spec._hydra_sweep import SweepSyntaxError, parse_sweep

__all__ = ["SweeperSearch", "read_sweeper"]

# optuna.samplers.X -> tunebridge's search name; the sweeper's sampler config names (hydra/sweeper/sampler).
_SAMPLERS = {
    "TPESampler": "tpe",
    "RandomSampler": "random",
    "CmaEsSampler": "cmaes",
    "NSGAIISampler": "nsga2",
    "QMCSampler": "qmc",
    "GPSampler": "gp",
}
_SAMPLER_CONFIGS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "nsgaii": "NSGAIISampler"}
_REFUSED_SAMPLERS = {
    "GridSampler": "the sweeper's grid leaves out the last value of each range(...); write `search: grid` in the "
    "spec (tunebridge's grid visits every value, both bounds inclusive)",
    "MOTPESampler": "Optuna removed it: write optuna.samplers.TPESampler (it handles several objectives)",
}
# Sampler arguments at the value the sweeper's own sampler config gives them: they change nothing.
_SWEEPER_DEFAULTS = {
    "consider_prior": True,
    "prior_weight": 1.0,
    "consider_magic_clip": True,
    "consider_endpoints": False,
    "warn_independent_sampling": True,
    "_partial_": None,
}
_IGNORED = {
    "n_jobs": "tunebridge runs one trial per process: use `--jobs N` (local workers) or `--backend ray`",
    "storage": "tunebridge keeps its own study: pass `--storage URL` or set `storage:` in the spec",
    "max_failure_rate": "tunebridge records a failed trial with its reason and goes on",
}
_DIRECTIONS = {"minimize": "min", "maximize": "max"}


@dataclass(frozen=True)
class SweeperSearch:
    """What a sweeper config says, as spec keys; ``notes`` list what was left out or reads differently."""

    space: dict[str, Any]
    mode: str | list[str] = "min"
    trials: int = 20
    search: str | dict[str, Any] = "tpe"
    metric: str | None = None
    seed: int | None = None
    study: str | None = None
    overrides: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    def document(self) -> dict[str, Any]:
        """The spec keys it gives (``space``, ``metric``, ``mode``, ``trials``, ``search``, ``seed``, ``study``)."""
        doc: dict[str, Any] = {"space": self.space, "mode": self.mode, "trials": self.trials, "search": self.search}
        for key in ("metric", "seed", "study"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        return doc


def _lines(text: str) -> dict[str, int]:
    """The line of every dotted key of the document (1-based)."""
    import yaml

    out: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                out[name] = key.start_mark.line + 1
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[f"{prefix}[{i}]"] = item.start_mark.line + 1
                walk(item, f"{prefix}[{i}]")

    try:
        walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    except yaml.YAMLError:
        pass  # load_yaml has already reported it
    return out


class _File:
    def __init__(self, path: str, shown: str) -> None:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.shown = shown
        self.data = load_yaml(text, where=shown)
        self.lines = _lines(text)
        self.notes: list[str] = []
        self.overrides: list[str] = []

    def at(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.shown} line {line}: {key}" if line else f"{self.shown}: {key}"

    def refuse(self, key: str, rule: str, value: Any, fix: str) -> SchemaError:
        return SchemaError(rule, path=self.at(key), value=value, fix=fix)

    def note(self, key: str, text: str) -> None:
        line = self.lines.get(key)
        self.notes.append(f"{'line ' + str(line) + ' ' if line else ''}{key}: {text}")


def _globals(f: _File, data: Mapping[str, Any], prefix: str = "") -> None:
    """The file's own values (``# @package _global_``) as ``++key=value`` overrides."""
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            _globals(f, value, name)
        elif isinstance(value, list):
            if any(isinstance(v, (list, Mapping)) for v in value):
                raise f.refuse(
                    name,
                    "a nested list value in the sweeper config is not carried",
                    show(value),
                    "Move it to the config it belongs to, or give it in the spec's `hydra.overrides`.",
                )
            f.overrides.append(f"++{name}=[{','.join(override_value(v) for v in value)}]")
        else:
            f.overrides.append(f"++{name}={override_value(value)}")


def _defaults(f: _File, items: Any) -> str | None:
    """The defaults list: the sweeper plugin and its sampler, and ``override /group: option`` entries."""
    sampler = None
    for i, item in enumerate(items if isinstance(items, list) else []):
        where = f"defaults[{i}]"
        if item == "_self_":
            continue
        if not isinstance(item, Mapping) or len(item) != 1:
            raise f.refuse(
                where,
                "a defaults entry the reader does not know",
                show(item),
                "Write `- override /group: option` entries, or move it to the primary config.",
            )
        ((key, option),) = item.items()
        group = str(key).removeprefix("override").strip().lstrip("/")
        if not str(key).startswith("override "):
            raise f.refuse(
                where,
                "only `override /group: option` defaults are carried",
                show(item),
                "Add the group to the primary config's defaults list, or to `hydra.overrides`.",
            )
        if group == "hydra/sweeper":
            if option != "optuna":
                raise f.refuse(
                    where,
                    "not a hydra-optuna-sweeper config",
                    show(item),
                    "Only `override /hydra/sweeper: optuna` configs are read.",
                )
        elif group == "hydra/sweeper/sampler":
            if option not in _SAMPLER_CONFIGS:
                raise f.refuse(
                    where,
                    "a sampler tunebridge does not carry",
                    show(option),
                    f"Use one of {', '.join(_SAMPLER_CONFIGS)}, or write `search:` in the spec.",
                )
            sampler = _SAMPLER_CONFIGS[str(option)]
        elif group.startswith("hydra/"):
            f.note(where, f"{group}: {option} configures Hydra's own run, not a trial: left out")
        else:
            f.overrides.append(f"{group}={override_value(option)}")
    return sampler


def _sampler(f: _File, node: Any, chosen: str | None) -> tuple[str | dict[str, Any], int | None]:
    where = "hydra.sweeper.sampler"
    node = dict(node) if isinstance(node, Mapping) else {}
    target = str(node.pop("_target_", "") or (f"optuna.samplers.{chosen}" if chosen else "optuna.samplers.TPESampler"))
    cls = target.rpartition(".")[2]
    if cls in _REFUSED_SAMPLERS:
        raise f.refuse(f"{where}._target_", f"{cls} is not carried", repr(target), _REFUSED_SAMPLERS[cls] + ".")
    if not target.startswith("optuna.samplers.") or cls not in _SAMPLERS:
        raise f.refuse(
            f"{where}._target_",
            "a custom sampler is not carried",
            repr(target),
            f"Write `search:` in the spec ({', '.join(sorted(set(_SAMPLERS.values())))}), or pass your "
            "sampler object to tunebridge.tune(search=...).",
        )
    name = _SAMPLERS[cls]
    seed, options = node.pop("seed", None), {}
    for key, value in node.items():
        if key in SEARCH_OPTIONS[name]:
            options[key] = value
        elif key in _SWEEPER_DEFAULTS and (value == _SWEEPER_DEFAULTS[key] or _SWEEPER_DEFAULTS[key] is None):
            f.note(f"{where}.{key}", "the sweeper's default, left to Optuna")
        else:
            raise f.refuse(
                f"{where}.{key}",
                f"an option tunebridge's `{name}` search does not take",
                show(value),
                f"It takes {', '.join(SEARCH_OPTIONS[name]) or 'no options'} (and seed); remove it.",
            )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise f.refuse(f"{where}.seed", "the seed must be an integer >= 0", show(seed), "Write e.g. seed: 1234.")
    if seed is None:
        f.note(where, "no seed: the sweeper's search was not reproducible; tunebridge seeds it (seed: 0)")
    return ({"name": name, **options} if options else name), seed


def _old_space(f: _File, node: Mapping[str, Any]) -> dict[str, Any]:
    """``hydra.sweeper.search_space`` (the sweeper's older form): {type: int|float|categorical, low, high, ...}."""
    out: dict[str, Any] = {}
    for name, p in node.items():
        where = f"hydra.sweeper.search_space.{name}"
        kind = p.get("type") if isinstance(p, Mapping) else None
        if kind == "categorical":
            out[str(name)] = {"type": "choice", "values": list(p.get("choices") or [])}
            continue
        if kind not in ("int", "float"):
            raise f.refuse(
                where,
                "`type` must be int, float or categorical",
                show(p),
                "Write e.g. {type: float, low: 0.001, high: 0.1, log: true}, or move it to `params:` as interval(...).",
            )
        call = (
            f"range({p.get('low')}, {p.get('high')}, {p.get('step')})"
            if p.get("step") and not p.get("log")
            else (
                f"{'int(' if kind == 'int' else ''}interval({p.get('low')}, {p.get('high')}){')' if kind == 'int' else ''}"
            )
        )
        out[str(name)] = _param(f, where, f"tag(log, {call})" if p.get("log") else call)
    return out


def _param(f: _File, where: str, value: Any) -> dict[str, Any] | None:
    try:
        sweep = parse_sweep(value)
    except SweepSyntaxError as e:
        raise f.refuse(
            where, "a sweep tunebridge cannot carry", repr(value), str(e)[0].upper() + str(e)[1:] + "."
        ) from None
    if sweep.note:
        f.note(where, sweep.note)
    if sweep.param is None:
        f.overrides.append(f"{where.removeprefix('hydra.sweeper.params.')}={sweep.fixed}")
        return None
    try:
        param_from_dict(where, sweep.param)
    except SchemaError as e:
        raise f.refuse(where, e.rule, repr(value), e.fix) from None
    return sweep.param


def read_sweeper(path: str, *, shown: str | None = None) -> SweeperSearch:
    """Read a hydra-optuna-sweeper config file (``configs/hparams_search/X.yaml``).

    Raises:
        SchemaError: A value that cannot be carried with the sweeper's meaning, naming its line and what to
            write instead; a file that is not a sweeper config.
    """
    f = _File(path, shown or os.path.basename(path))
    data = f.data if isinstance(f.data, Mapping) else {}
    sweeper = (data.get("hydra") or {}).get("sweeper") if isinstance(data.get("hydra"), Mapping) else None
    if not isinstance(sweeper, Mapping):
        raise SchemaError(
            "not a hydra-optuna-sweeper config: it has no `hydra.sweeper` section",
            path=f.shown,
            value=show(sorted(data)) if data else "nothing",
            fix="Name a configs/hparams_search/*.yaml file written for hydra-optuna-sweeper.",
        )
    chosen = _defaults(f, data.get("defaults"))
    target = str(sweeper.get("_target_", "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"))
    if not target.endswith("OptunaSweeper"):
        raise f.refuse(
            "hydra.sweeper._target_",
            "not hydra-optuna-sweeper's sweeper",
            repr(target),
            "Only hydra-optuna-sweeper configs are read; write the spec's `space:` yourself.",
        )
    _globals(f, {k: v for k, v in data.items() if k not in ("defaults", "hydra", "optimized_metric")})
    for key in ("mode", "sweep", "run", "job", "launcher"):
        if key in data["hydra"]:
            f.note(f"hydra.{key}", "configures Hydra's own run, not a trial: left out")
    if sweeper.get("custom_search_space"):
        raise f.refuse(
            "hydra.sweeper.custom_search_space",
            "a Python search space is not carried",
            repr(sweeper["custom_search_space"]),
            "Write its parameters in the spec's `space:` (with `when:` for conditional ones).",
        )
    space: dict[str, Any] = {}
    params, old = sweeper.get("params"), sweeper.get("search_space")
    if isinstance(old, Mapping) and old and not params:
        space.update(_old_space(f, old))
    for name, value in (params or {}).items():
        param = _param(f, f"hydra.sweeper.params.{name}", value)
        if param is not None:
            space[str(name)] = param
    for key, why in _IGNORED.items():
        if sweeper.get(key) is not None:
            f.note(f"hydra.sweeper.{key}", f"not carried: {why}")
    direction = sweeper.get("direction", "minimize")
    directions = direction if isinstance(direction, list) else [direction]
    if not directions or not all(d in _DIRECTIONS for d in directions):
        raise f.refuse(
            "hydra.sweeper.direction",
            "`direction` must be minimize or maximize (or a list)",
            show(direction),
            "Write direction: maximize.",
        )
    modes = [_DIRECTIONS[d] for d in directions]
    trials = sweeper.get("n_trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise f.refuse(
            "hydra.sweeper.n_trials", "`n_trials` must be an integer >= 1", show(trials), "Write n_trials: 20."
        )
    search, seed = _sampler(f, sweeper.get("sampler"), chosen)
    metric = data.get("optimized_metric")
    if metric is not None and not (isinstance(metric, str) and metric):
        raise f.refuse(
            "optimized_metric",
            "`optimized_metric` must name a metric",
            show(metric),
            "Write optimized_metric: val/acc.",
        )
    return SweeperSearch(
        space=space,
        mode=modes[0] if len(modes) == 1 else modes,
        trials=trials,
        search=search,
        metric=metric,
        seed=seed,
        study=sweeper.get("study_name"),
        overrides=tuple(f.overrides),
        notes=tuple(f.notes),
    )
