"""The Ray Tune backend: the same spec, run on a local Ray instance or a Ray cluster.

Spaces keep the schema's meaning (inclusive bounds, conditions, per-layer copies), the pruning spec
maps to Ray's schedulers with epochs as the time unit, Lightning trials report through
``ray.tune.report`` with checkpoints, and every finished trial is written into the run's Optuna
study, so results, reports and ``tunebridge show`` are the same for both backends.

``sample_configs`` here is the Optuna backend's random draw (:mod:`tunebridge.backends.optuna._sample`):
the one :func:`plan_run` lists as PBT's first population, and what ``OptunaSearch`` draws at random
for spaces Ray's domains cannot draw. What a Ray random search draws for every space (Ray's own
domains for flat ones) is ``space.sample(n, seed=seed, backend="ray")`` (``backends/ray/_sample.py``).

Importing this package needs ``ray[tune]`` (``pip install 'tunebridge[ray]'``).
"""

from __future__ import annotations

from tunebridge._compat import require

require("ray.tune", "The Ray backend")

from tunebridge.backends.optuna._sample import sample_configs  # noqa: E402
from tunebridge.backends.ray._convert import (  # noqa: E402
    CONFIG_KEY,
    DefineByRun,
    native_param_space,
    ray_config_to_config,
    ray_domain,
)
from tunebridge.backends.ray._mirror import Mirror, MirrorCallback  # noqa: E402
from tunebridge.backends.ray._options import RayOptions, storage_root  # noqa: E402
from tunebridge.backends.ray._plan import RayPlan, plan_run  # noqa: E402
from tunebridge.backends.ray._run import ensure_ray, run_ray  # noqa: E402
from tunebridge.backends.ray._schedulers import (  # noqa: E402
    PatienceScheduler,
    SpaceExplorer,
    make_scheduler,
    pbt_mutations,
    plateaued,
    structural_reason,
)
from tunebridge.backends.ray._trainable import RayReporter, TrialPlan, TrialStopped, train_config  # noqa: E402

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
