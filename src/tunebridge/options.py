"""The two option groups of :func:`tunebridge.tune` besides its core arguments (standard library only).

``tune(trainer=...)`` takes :class:`TrainerOptions`: how every trial's Lightning ``Trainer`` runs.
``tune(run=...)`` takes :class:`RunOptions`: what a trial's value is, what the study keeps, when it
stops, how it starts and how processes run it. Either may also be a mapping of its fields, and nested
groups (:class:`Checkpoints`, ``stop``, ``workers``, ``ray``) mappings of theirs, so a spec file's
sections and Python read the same:

>>> TrainerOptions.of({"accelerator": "cpu", "precision": "bf16-mixed"})
TrainerOptions(accelerator='cpu', threads=None, options={'precision': 'bf16-mixed'}, callbacks=(), logger=None, log_dir=None)
>>> RunOptions.of({"fuse": 4, "checkpoints": {"keep": 3}, "stop": {"timeout": 600}}).checkpoints
Checkpoints(keep=3, dir=None)

An option the chosen backend would ignore is refused with the reason (:meth:`RunOptions.check_backend`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunebridge._rules import check_choice, check_fuse, check_int, check_mapping
from tunebridge._vocab import LOGGERS, OBJECTIVE_RULES
from tunebridge.backends import ResumeOptions
from tunebridge.backends._options import StudyLimits, WorkerOptions
from tunebridge.errors import SchemaError, show
from tunebridge.schema._codec import check_keys

__all__ = ["Checkpoints", "ResumeOptions", "RunOptions", "StudyLimits", "TrainerOptions", "WorkerOptions"]


def _group(cls: Any, value: Any, path: str) -> Any:
    """``value`` as ``cls``: an instance as given, None as the defaults, a mapping of its fields."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    check_mapping(
        value,
        path=path,
        rule=f"`{path}` must be a {cls.__name__} or a mapping of its fields",
        fix=f"Pass e.g. {path}={cls.__name__}(...) or {path}={{...}}; see help(tunebridge.options.{cls.__name__}).",
    )
    names = [f.name for f in dataclasses.fields(cls)]
    check_keys(path, value, names)
    return cls(**value)


@dataclass(frozen=True)
class TrainerOptions:
    """How every trial's Lightning ``Trainer`` runs (``tune(trainer=...)``).

    As a mapping, its field names go to the fields and every other key is a ``Trainer`` keyword
    (``{"accelerator": "cpu", "precision": "bf16-mixed"}``), as in a spec file, where they are the
    top-level ``accelerator:``, ``threads:``, ``callbacks:`` and ``logger:`` and the ``trainer:`` section.

    Attributes:
        accelerator: Lightning accelerator for every trial (``"cpu"``, ``"gpu"``, ``"auto"``).
        threads: ``torch.set_num_threads`` inside trials (None keeps torch's default).
        options: Any other ``Trainer`` keyword (``precision``, ``gradient_clip_val``, ``devices``,
            ``strategy``, …); the ones tunebridge sets itself are refused with where to set them instead.
        callbacks: Your Lightning callbacks, fresh for every trial: instances (deep-copied), classes
            or factories, ``"module:Class"`` or ``{"class_path": ..., "init_args": {...}}``.
        logger: ``tensorboard``, ``csv`` or ``mlflow``: one run per trial, grouped by study, with the
            trial's config as hyperparameters, under ``log_dir`` (default: next to the study).
        log_dir: Where the per-trial logs go.
    """

    accelerator: str = "auto"
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    callbacks: Sequence[Any] = ()
    logger: str | None = None
    log_dir: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.accelerator, str):
            raise SchemaError(
                "`accelerator` must be a string", path="trainer.accelerator", value=show(self.accelerator)
            )
        if self.threads is not None:
            check_int(self.threads, 1, path="trainer.threads", fix="Pass e.g. threads=1, or None for torch's default.")
        if self.logger is not None:
            check_choice(self.logger, LOGGERS, path="trainer.logger")
        if not isinstance(self.options, Mapping):
            raise SchemaError(
                "`options` must be a mapping of Trainer keyword arguments",
                path="trainer.options",
                value=show(self.options),
                fix="Write e.g. options={'precision': 'bf16-mixed'}.",
            )

    @classmethod
    def of(cls, value: TrainerOptions | Mapping[str, Any] | None) -> TrainerOptions:
        """``tune(trainer=...)`` as options: an instance, None (the defaults), or a mapping."""
        if value is None or isinstance(value, cls):
            return value or cls()
        value = check_mapping(
            value,
            path="trainer",
            rule="`trainer` must be TrainerOptions or a mapping of its fields and Trainer keywords",
            fix="Pass e.g. trainer={'accelerator': 'cpu', 'precision': 'bf16-mixed'}.",
        )
        names = {f.name for f in dataclasses.fields(cls)} - {"options"}
        fields = {k: v for k, v in value.items() if k in names}
        extra = {k: v for k, v in value.items() if k not in names and k != "options"}
        if "options" in value:
            extra = {**dict(value["options"] or {}), **extra}
        return cls(**fields, options=extra)


@dataclass(frozen=True)
class Checkpoints:
    """The weights a study keeps (``run={"checkpoints": ...}``; the spec's ``keep_checkpoints:``).

    Attributes:
        keep: Keep the weights of the reported epoch of this many best trials (0: none);
            :meth:`TuneResult.load_best` and :func:`tunebridge.results.load_best` load them.
        dir: Their folder (default: next to a SQLite or journal-file study, else
            ``./tunebridge-runs/STUDY/checkpoints``; a temporary folder for an in-memory study).
    """

    keep: int = 1
    dir: str | None = None

    def __post_init__(self) -> None:
        fix = "Keep the best trial's weights with 1 (the default), none with 0."
        check_int(self.keep, 0, path="checkpoints.keep", fix=fix)
        if self.dir is not None and not isinstance(self.dir, str):
            raise SchemaError("`dir` must be a folder path", path="checkpoints.dir", value=show(self.dir))


@dataclass(frozen=True)
class RunOptions:
    """What a trial's value is, what the study keeps, when it stops and how it runs (``tune(run=...)``).

    Attributes:
        objective: ``best_epoch`` (default: early stopping trains past the best epoch, whose weights
            are kept) or ``last_epoch``: which epoch's metrics are the trial's value.
        fuse: Train up to this many trials at once as one vectorized model (``"auto"``: from free
            device memory and the model's size): the built-in MLP and ConvNet, or your module with
            ``fused_loss``/``fused_metrics`` hooks; on the trainer's accelerator; with ``backend="ray"``
            as cohort workers on Ray (one per GPU). Each member is an ordinary trial and trains as it
            would alone (see :mod:`tunebridge.fused`).
        progress: Show one progress bar for the study.
        checkpoints: The weights kept (:class:`Checkpoints`).
        resume: Resume points (:class:`ResumeOptions`; default: at the end of every epoch; False: none):
            a trial whose worker is killed or preempted goes on from its last one on the next worker that
            claims it, on any host that sees the study's resume folder (next to its checkpoints). Not
            written for an in-memory study, which no other process can resume.
        stop: Stop before the trial budget (:class:`StudyLimits`: ``timeout`` seconds of wall time,
            a ``target`` best value, ``patience_trials`` without improvement).
        enqueue: Configs to evaluate first (each validated against the space).
        warm_start: A ``best.yaml`` path, an earlier study's name (its 5 best configs) or
            ``{"study": NAME, "storage": URL, "top_k": K}``: evaluated first.
        workers: How this process runs trials of the shared study (:class:`WorkerOptions`: the
            ``stop`` event, ``trial_timeout``, ``heartbeat`` (default 10 s; always off for in-memory
            studies), ``heartbeat_timeout``, ``max_retry``, ``join``). The Optuna backend and fused
            cohorts only: Ray runs and retries trials in its own actors.
        ray: The Ray backend's options (``address``, ``cpus_per_trial``, ``gpus_per_trial``,
            ``max_concurrent``, ``restore``, …; see ``tunebridge.backends.ray.RayOptions``).
        spec_hash: Recorded on the study; a resume with another hash is refused unless ``force``.
        force: Resume a study whose recorded spec hash differs.
    """

    objective: str = "best_epoch"
    fuse: int | str | None = None
    progress: bool = True
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    resume: ResumeOptions | Mapping[str, Any] | bool | None = True
    stop: StudyLimits = field(default_factory=StudyLimits)
    enqueue: Sequence[Mapping[str, Any]] = ()
    warm_start: str | Mapping[str, Any] | None = None
    workers: WorkerOptions | None = None
    ray: Mapping[str, Any] | Any | None = None
    spec_hash: str | None = None
    force: bool = False

    def __post_init__(self) -> None:
        check_choice(self.objective, OBJECTIVE_RULES, path="run.objective")
        if self.fuse is not None:
            object.__setattr__(self, "fuse", check_fuse(self.fuse))
        for flag in ("progress", "force"):
            if not isinstance(getattr(self, flag), bool):
                raise SchemaError(
                    f"`{flag}` must be true or false", path=f"run.{flag}", value=show(getattr(self, flag))
                )
        object.__setattr__(self, "checkpoints", _group(Checkpoints, self.checkpoints, "checkpoints"))
        object.__setattr__(self, "stop", _group(StudyLimits, self.stop, "stop"))
        object.__setattr__(self, "resume", ResumeOptions.of(self.resume))
        if self.workers is not None:
            object.__setattr__(self, "workers", _group(WorkerOptions, self.workers, "workers"))
        if self.ray is not None and not isinstance(self.ray, Mapping) and not dataclasses.is_dataclass(self.ray):
            raise SchemaError(
                "`ray` must be RayOptions or a mapping of its fields",
                path="ray",
                value=show(self.ray),
                fix="Pass e.g. run={'ray': {'address': 'auto', 'cpus_per_trial': 2}}.",
            )
        if self.enqueue is None:
            object.__setattr__(self, "enqueue", ())

    @classmethod
    def of(cls, value: RunOptions | Mapping[str, Any] | None) -> RunOptions:
        """``tune(run=...)`` as options: an instance, None (the defaults), or a mapping of its fields."""
        options: RunOptions = _group(cls, value, "run")
        return options

    def worker_options(self, *, in_memory: bool) -> WorkerOptions:
        """How this process runs its trials: :attr:`workers`, heartbeats every 10 s by default."""
        worker = self.workers or WorkerOptions()
        return dataclasses.replace(worker, heartbeat=None) if in_memory else worker  # nobody else sees it

    def check_backend(self, backend: str) -> None:
        """Refuse an option ``backend`` would ignore, naming it, the reason and the fix."""
        if backend != "ray" and self.ray:
            raise SchemaError(
                "Ray options need the Ray backend",
                path="run.ray",
                value=show(dict(self.ray) if isinstance(self.ray, Mapping) else self.ray),
                fix="Pass backend='ray', or drop run.ray.",
            )
        if backend == "ray" and self.fuse is None and self.workers is not None:
            given = {
                f.name: getattr(self.workers, f.name)
                for f in dataclasses.fields(WorkerOptions)
                if getattr(self.workers, f.name) != f.default
            }
            if given:
                raise SchemaError(
                    "Ray runs and retries trials in its own actors: it has no tunebridge workers, heartbeats, "
                    "trial timeout, stop event or joining",
                    path="run.workers",
                    value=show(given),
                    fix="Drop run.workers with backend='ray'; use run.ray.max_failures for retries and "
                    "run.stop.timeout for wall time, or backend='optuna' for workers.",
                )
        if self.fuse is not None and _restore(self.ray):
            raise SchemaError(
                "fused cohorts on Ray resume from the study's queue, not from a Ray experiment",
                path="run.ray.restore",
                value="True",
                fix="Drop restore: rerunning the same study continues its queue.",
            )


def _restore(ray: Any) -> bool:
    if isinstance(ray, Mapping):
        return bool(ray.get("restore"))
    return bool(getattr(ray, "restore", False))
