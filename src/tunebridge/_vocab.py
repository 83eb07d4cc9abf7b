"""Names that several layers accept, defined once (standard library only, so ``check`` stays fast).

The spec file, :func:`tunebridge.tune`, the backends and the built-in models all read these tuples;
none of them keeps a copy of its own.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "BUILTIN_DATA", "BUILTIN_MODELS", "MODES", "RAY_OPTION_KEYS", "SEARCH_ALGORITHMS"]

#: Search algorithms by name (``search:`` in a spec, ``search=`` in ``tune()``).
SEARCH_ALGORITHMS = ("grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2")
#: Execution backends.
BACKENDS = ("optuna", "ray")
#: Optimisation directions, one per metric.
MODES = ("min", "max")
#: Built-in models (``model:``) and the bundled datasets they train on (``data:``).
BUILTIN_MODELS = ("mlp", "cnn")
BUILTIN_DATA = ("digits", "breast_cancer", "wine")
#: The keys of a spec's ``ray:`` section: the fields of ``tunebridge.backends.ray.RayOptions``
#: (a test holds the two equal).
RAY_OPTION_KEYS = (
    "address",
    "cpus_per_trial",
    "gpus_per_trial",
    "max_concurrent",
    "checkpoint_frequency",
    "checkpoint_keep",
    "reuse_actors",
    "scheduler",
    "pbt_interval",
    "pbt_mutate",
    "pbt_synch",
    "storage_path",
    "name",
)
