"""The Ray Tune backend: the same spec, run on a local Ray instance or a Ray cluster.

Spaces keep the schema's meaning (inclusive bounds, conditions, per-layer copies), the pruning spec
maps to Ray's schedulers with epochs as the time unit, Lightning trials report through
``ray.tune.report`` with checkpoints, and every finished trial is written into the run's Optuna
study, so results, reports and ``tunebridge show`` are the same for both backends.

``sample_configs`` here is the Optuna backend's random draw (:func:`tunebridge.backends.optuna.sample_configs`):
the one :func:`plan_run` lists as PBT's first population, and what ``OptunaSearch`` draws at random
for spaces Ray's domains cannot draw. What a Ray random search draws for every space (Ray's own
domains for flat ones) is ``space.sample(n, seed=seed, backend="ray")`` (``backends/ray/_sample.py``).

Importing this package needs ``ray[tune]`` (``pip install 'tunebridge[ray]'``).
"""

from __future__ import annotations

from tunebridge._compat import require

require("ray.tune", "The Ray backend")

import importlib  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

# Names are imported on first use (a module-level __getattr__): a Ray trial process imports
# tunebridge.backends.ray._trainable, which runs this file, and should not pay for optuna's import there.
_HOMES = {
    "sample_configs": "tunebridge.backends.optuna",
    "CONFIG_KEY": "tunebridge.backends.ray._convert",
    "DefineByRun": "tunebridge.backends.ray._convert",
    "native_param_space": "tunebridge.backends.ray._convert",
    "ray_config_to_config": "tunebridge.backends.ray._convert",
    "ray_domain": "tunebridge.backends.ray._convert",
    "Mirror": "tunebridge.backends.ray._mirror",
    "MirrorCallback": "tunebridge.backends.ray._mirror",
    "RayOptions": "tunebridge.backends.ray._options",
    "storage_root": "tunebridge.backends.ray._options",
    "RayPlan": "tunebridge.backends.ray._plan",
    "plan_run": "tunebridge.backends.ray._plan",
    "ensure_ray": "tunebridge.backends.ray._run",
    "run_ray": "tunebridge.backends.ray._run",
    "PatienceScheduler": "tunebridge.backends.ray._schedulers",
    "SpaceExplorer": "tunebridge.backends.ray._schedulers",
    "make_scheduler": "tunebridge.backends.ray._schedulers",
    "pbt_mutations": "tunebridge.backends.ray._schedulers",
    "plateaued": "tunebridge.backends.ray._schedulers",
    "structural_reason": "tunebridge.backends.ray._schedulers",
    "RayReporter": "tunebridge.backends.ray._trainable",
    "TrialPlan": "tunebridge.backends.ray._trainable",
    "TrialStopped": "tunebridge.backends.ray._trainable",
    "train_config": "tunebridge.backends.ray._trainable",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from tunebridge.backends.optuna import sample_configs
    from tunebridge.backends.ray._convert import (
        CONFIG_KEY,
        DefineByRun,
        native_param_space,
        ray_config_to_config,
        ray_domain,
    )
    from tunebridge.backends.ray._mirror import Mirror, MirrorCallback
    from tunebridge.backends.ray._options import RayOptions, storage_root
    from tunebridge.backends.ray._plan import RayPlan, plan_run
    from tunebridge.backends.ray._run import ensure_ray, run_ray
    from tunebridge.backends.ray._schedulers import (
        PatienceScheduler,
        SpaceExplorer,
        make_scheduler,
        pbt_mutations,
        plateaued,
        structural_reason,
    )
    from tunebridge.backends.ray._trainable import RayReporter, TrialPlan, TrialStopped, train_config


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "CONFIG_KEY",
    "DefineByRun",
    "Mirror",
    "MirrorCallback",
    "PatienceScheduler",
    "RayOptions",
    "RayPlan",
    "RayReporter",
    "SpaceExplorer",
    "TrialPlan",
    "TrialStopped",
    "ensure_ray",
    "make_scheduler",
    "native_param_space",
    "pbt_mutations",
    "plan_run",
    "plateaued",
    "ray_config_to_config",
    "ray_domain",
    "run_ray",
    "sample_configs",
    "storage_root",
    "structural_reason",
    "train_config",
]
