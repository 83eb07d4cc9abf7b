"""Names that several layers accept, defined once (standard library only, so ``check`` stays fast).

The spec file, :func:`tunebridge.tune`, the backends and the built-in models all read these tuples;
none of them keeps a copy of its own.
"""

from __future__ import annotations

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "BUILTIN_DATA",
    "BUILTIN_MODELS",
    "LOGGERS",
    "MODES",
    "OBJECTIVE_RULES",
    "OPTIMIZERS",
    "OWNED_TRAINER_KEYS",
    "RAY_OPTION_KEYS",
    "SCHEDULES",
    "SEARCH_ALGORITHMS",
]

#: Search algorithms by name (``search:`` in a spec, ``search=`` in ``tune()``).
SEARCH_ALGORITHMS = ("grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2")
#: Execution backends.
BACKENDS = ("optuna", "ray")
#: Optimisation directions, one per metric.
MODES = ("min", "max")
#: Which epoch gives a trial its value (and its kept weights): the best one, or the last one trained.
OBJECTIVE_RULES = ("best_epoch", "last_epoch")
#: Per-trial loggers (``logger:`` in a spec).
LOGGERS = ("tensorboard", "csv", "mlflow")
#: Built-in models (``model:``) and the bundled datasets they train on (``data:``).
BUILTIN_MODELS = ("mlp", "cnn")
BUILTIN_DATA = ("digits", "breast_cancer", "wine")
#: The choices the presets offer and the built-in models read (``activation``, ``optimizer``, ``lr_schedule``).
ACTIVATIONS = ("relu", "tanh", "gelu", "leaky_relu")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = ("none", "exponential", "cosine")
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
    "max_failures",
    "restore",
)

#: Trainer keywords tunebridge sets itself, and where a user sets them instead.
OWNED_TRAINER_KEYS = {
    "max_epochs": "it is the trial budget: set `max_epochs:` in the spec (max_epochs= in tune())",
    "enable_progress_bar": "tunebridge shows one progress bar for the study: use --no-progress "
    "(tune(run={'progress': False}))",
    "callbacks": "set `callbacks:` in the spec (tune(trainer={'callbacks': [...]})); they run next to tunebridge's",
    "logger": "set `logger: tensorboard | csv | mlflow` in the spec (tune(trainer={'logger': 'csv'})): "
    "one run per trial",
    "accelerator": "set `accelerator:` in the spec (tune(trainer={'accelerator': 'cpu'}))",
    "enable_checkpointing": "tunebridge keeps the best epoch's checkpoint itself: set `keep_checkpoints:` "
    "(tune(run={'checkpoints': {'keep': 1}}))",
}
