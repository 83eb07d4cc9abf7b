"""The Ray backend's options (``tune(..., ray={...})``, the CLI's ``--address`` etc.), validated once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunebridge._rules import check_int
from tunebridge._storage_url import local_file
from tunebridge._vocab import RAY_OPTION_KEYS
from tunebridge.errors import SchemaError
from tunebridge.schema._codec import check_keys

__all__ = ["RayOptions", "storage_root"]

# Schedulers that stop or pause trials mid-run (they need checkpoints); ``custom`` is a user's own
# TrialScheduler, which may do either.
PAUSING_SCHEDULERS = ("asha", "hyperband", "pbt", "custom")
DEFAULT_STORAGE = "~/tunebridge-ray"
CLUSTER_RETRIES = 3  # a lost node's trials run again (the Optuna workers' max_retry default, too)


def _number(name: str, value: object, *, minimum: float, strict: bool = False) -> None:
    wrong = isinstance(value, bool) or not isinstance(value, (int, float))
    if wrong or value < minimum or (strict and value == minimum):  # type: ignore[operator]
        rule = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise SchemaError(f"`{name}` must be a number {rule}", path=f"ray.{name}", value=repr(value))


def _count(name: str, value: object, minimum: int) -> None:
    check_int(value, minimum, path=f"ray.{name}", name=name, fix="")


@dataclass(frozen=True)
class RayOptions:
    """How a run uses Ray.

    Attributes:
        address: None starts (or reuses) an in-process local Ray; ``"auto"`` joins the cluster this
            machine belongs to (``ray start --head`` / ``ray start --address``); ``"ray://host:10001"``
            connects a Ray client (trials are then mirrored into the study when the run ends).
        cpus_per_trial: CPUs reserved per trial (also ``torch.set_num_threads`` in the trial).
        gpus_per_trial: GPUs per trial; fractions share a GPU between trials.
        max_concurrent: Trials running at once (default: the cluster's CPUs // cpus_per_trial).
        checkpoint_frequency: Epochs between Lightning checkpoints; default 1 for schedulers that
            stop or pause trials (asha, hyperband, a user's own scheduler object), ``pbt_interval``
            for PBT, else 0 (none).
        checkpoint_keep: Checkpoints kept per trial, the best by the metric (the latest is always
            kept). PBT keeps every checkpoint it takes (one per perturbation), see :meth:`keep`.
        reuse_actors: Reuse trial processes (skips re-importing torch and Lightning per trial).
        scheduler: ``"pbt"`` for PopulationBasedTraining; otherwise the pruning spec decides.
        pbt_interval: Epochs between PBT perturbations (default: a quarter of the budget).
        pbt_mutate: Parameters PBT may mutate (default: the non-structural ones the space has).
        pbt_synch: Synchronous PBT: every member waits at each perturbation until the whole
            population got there (reproducible; needs the population to run at once).
        storage_path: Folder of Ray's experiment state and checkpoints (see :func:`storage_root`).
        name: The Ray experiment's name (default: the study name, else ``tunebridge``).
        max_failures: How often Ray retries a failed trial (``FailureConfig``: from its latest checkpoint,
            else from the start) before it is recorded failed. Default: 3 on a cluster (``address`` set,
            where a node can be lost), 0 on a local Ray (a failure there is the trial's own, and would
            fail again); see :meth:`retries`.
        restore: Restore this study's interrupted Ray experiment (``tunebridge run --resume``):
            its unfinished trials continue from their checkpoints.
    """

    address: str | None = None
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_concurrent: int | None = None
    checkpoint_frequency: int | None = None
    checkpoint_keep: int = 2
    reuse_actors: bool = True
    scheduler: str | None = None
    pbt_interval: int | None = None
    pbt_mutate: tuple[str, ...] | None = None
    pbt_synch: bool = False
    storage_path: str | None = None
    name: str | None = None
    max_failures: int | None = None
    restore: bool = False

    def __post_init__(self) -> None:
        if self.address is not None and not isinstance(self.address, str):
            raise SchemaError(
                "`address` must be a string such as 'auto' or 'ray://host:10001'",
                path="ray.address",
                value=repr(self.address),
            )
        _number("cpus_per_trial", self.cpus_per_trial, minimum=0, strict=True)
        _number("gpus_per_trial", self.gpus_per_trial, minimum=0)
        if self.max_concurrent is not None:
            _count("max_concurrent", self.max_concurrent, 1)
        if self.checkpoint_frequency is not None:
            _count("checkpoint_frequency", self.checkpoint_frequency, 0)
        _count("checkpoint_keep", self.checkpoint_keep, 1)
        if self.max_failures is not None:
            _count("max_failures", self.max_failures, -1)  # -1: Ray's "retry forever"
        if self.pbt_interval is not None:
            _count("pbt_interval", self.pbt_interval, 1)
        for flag in ("reuse_actors", "pbt_synch", "restore"):
            if not isinstance(getattr(self, flag), bool):
                raise SchemaError(
                    f"`{flag}` must be true or false", path=f"ray.{flag}", value=repr(getattr(self, flag))
                )
        if self.scheduler not in (None, "pbt"):
            raise SchemaError(
                "`scheduler` must be 'pbt' (other schedulers come from the pruning spec)",
                path="ray.scheduler",
                value=repr(self.scheduler),
                fix="Use pruner: {policy: asha|hyperband|median|patience|none} for the others.",
            )
        if self.pbt_mutate is not None:
            names = (self.pbt_mutate,) if isinstance(self.pbt_mutate, str) else tuple(self.pbt_mutate)
            if not all(isinstance(n, str) and n for n in names):
                raise SchemaError(
                    "`pbt_mutate` must be a list of parameter names", path="ray.pbt_mutate", value=repr(self.pbt_mutate)
                )
            object.__setattr__(self, "pbt_mutate", names)
        for key in ("storage_path", "name"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise SchemaError(f"`{key}` must be a non-empty string", path=f"ray.{key}", value=repr(value))

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | RayOptions | None) -> RayOptions:
        """Options from ``tune(ray={...})``; unknown keys are refused with the nearest known one."""
        if isinstance(options, RayOptions):
            return options
        data = dict(options or {})
        check_keys("ray", data, RAY_OPTION_KEYS)  # the fields of this class (tests hold the two equal)
        return cls(**data)

    def retries(self) -> int:
        """Ray's ``FailureConfig.max_failures``: as set, else 3 on a cluster and 0 on a local Ray."""
        if self.max_failures is not None:
            return self.max_failures
        return 0 if self.address is None else CLUSTER_RETRIES

    def policy(self, pruning_policy: str) -> str:
        """The scheduler this run uses: ``pbt`` or the pruning policy."""
        return self.scheduler or pruning_policy

    def checkpoint_every(self, pruning_policy: str, pbt_interval: int = 1) -> int:
        """Epochs between checkpoints: as set, else each PBT perturbation, 1 for asha/hyperband, 0 otherwise."""
        if self.checkpoint_frequency is not None:
            return self.checkpoint_frequency
        if self.policy(pruning_policy) == "pbt":
            return pbt_interval  # PBT clones the checkpoint of a perturbation epoch, never one in between
        return 1 if self.policy(pruning_policy) in PAUSING_SCHEDULERS else 0

    def keep(self, pruning_policy: str) -> int | None:
        """Checkpoints kept per trial (None: all).

        PBT keeps all: Ray 2.60 registers the checkpoint of each PBT save a second time, and its
        top-k bookkeeping then deletes a checkpoint another trial is still cloning.
        """
        return None if self.policy(pruning_policy) == "pbt" else self.checkpoint_keep


def storage_root(options: RayOptions, storage: str | None) -> str:
    """Where Ray keeps experiment state and checkpoints.

    ``storage_path`` if given; else ``ray_results/`` next to a SQLite or journal-file study
    (``sqlite:///runs/study.db`` -> ``runs/ray_results``), so one folder holds the whole run; else
    ``~/tunebridge-ray``. Always an absolute path (Ray requires one).
    """
    if options.storage_path:
        return os.path.abspath(os.path.expanduser(options.storage_path))
    file = local_file(storage)
    if file is not None:
        return os.path.join(os.path.dirname(file), "ray_results")
    return os.path.abspath(os.path.expanduser(DEFAULT_STORAGE))
