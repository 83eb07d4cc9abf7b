"""Resume points: a running trial's state at the end of an epoch, so that a killed or preempted trial
goes on from there on any worker that sees the folder (standard library only).

A resume point is a folder ``<root>/<trial label>/`` with two slots, ``a/`` and ``b/``, and ``resume.json``.
A slot holds the training state a reporter's ``checkpoint(folder)`` writes
(:data:`~tunebridge.backends._base.CHECKPOINT_FILE`: for Lightning trials the whole checkpoint, optimizer,
schedulers, loop and callback states and RNG states included) and the trial's kept weights
(:data:`KEPT_FILE`). ``resume.json`` names the slot of the latest point, its epoch, every epoch's metrics so
far, the spec hash, the config and the versions that wrote it. A new point goes into the slot that
``resume.json`` does not name, and then ``resume.json`` is replaced in one step (``os.replace``): a reader
finds the latest whole point or the one before it, never half of one, and a point costs no folder made,
renamed or deleted.

:func:`read_point` checks a point before anything trusts it: a missing folder, another spec, another
config, another tunebridge or Lightning version, or a checkpoint that is not whole gives the reason,
and the trial starts from epoch 0 with that reason recorded — never a crash, never a mixed curve.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunebridge._atomic import write_atomically
from tunebridge._rules import check_int, check_mapping
from tunebridge.backends._base import CHECKPOINT_FILE
from tunebridge.errors import SchemaError, show

__all__ = [
    "KEPT_FILE",
    "META_FILE",
    "ResumeOptions",
    "ResumePlan",
    "ResumePoint",
    "ResumeWriter",
    "discard_point",
    "has_point",
    "read_point",
]

META_FILE = "resume.json"
#: The trial's kept weights (its best epoch so far) as of the point, when it keeps any.
KEPT_FILE = "kept.ckpt"
_SLOTS = ("a", "b")
_HOST = socket.gethostname()


@dataclass(frozen=True)
class ResumeOptions:
    """When a running trial writes its resume point (``resume:`` in a spec, ``run={"resume": ...}``).

    Attributes:
        every_epochs: Write one at the end of every this many epochs (None: only by ``every_minutes``).
        every_minutes: Also write one when this many minutes passed since the last (None: off).
    """

    every_epochs: int | None = 1
    every_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.every_epochs is not None:
            check_int(self.every_epochs, 1, path="resume.every_epochs", fix="Write e.g. resume: {every_epochs: 1}.")
        if self.every_minutes is not None and (
            isinstance(self.every_minutes, bool)
            or not isinstance(self.every_minutes, int | float)
            or not self.every_minutes > 0
        ):
            raise SchemaError(
                "`every_minutes` must be a number > 0",
                path="resume.every_minutes",
                value=show(self.every_minutes),
                fix="Write e.g. resume: {every_minutes: 10}, or null.",
            )
        if self.every_epochs is None and self.every_minutes is None:
            raise SchemaError(
                "a resume point needs every_epochs or every_minutes",
                path="resume",
                value=show({"every_epochs": None, "every_minutes": None}),
                fix="Write resume: false to turn resume points off.",
            )

    @classmethod
    def of(cls, value: ResumeOptions | Mapping[str, Any] | bool | None) -> ResumeOptions | None:
        """``resume:`` as options: True or None the defaults, False off (None), or a mapping."""
        if value is None or value is True:
            return cls()
        if value is False:
            return None
        if isinstance(value, cls):
            return value
        rule = "`resume` must be true, false or {every_epochs, every_minutes}"
        value = check_mapping(
            value, path="resume", rule=rule, fix="Write e.g. resume: {every_epochs: 1}, or resume: false."
        )
        from tunebridge.schema._codec import check_keys

        check_keys("resume", value, ("every_epochs", "every_minutes"))
        return cls(**value)


@dataclass(frozen=True)
class ResumePoint:
    """A checked resume point: go on from the epoch after :attr:`epoch`; :attr:`folder` is its slot, which
    holds its checkpoint and kept weights."""

    folder: str
    epoch: int
    history: dict[int, dict[str, float]]

    @property
    def checkpoint(self) -> str:
        return os.path.join(self.folder, CHECKPOINT_FILE)


@dataclass
class ResumeWriter:
    """Writes one running trial's resume points into ``<root>/<label>``.

    Attributes:
        root: The study's resume folder (next to its checkpoints).
        label: The trial's file name (``trial_7``).
        options: When to write.
        meta: What every point records besides its epoch and history (spec hash, config, versions).
    """

    root: str
    label: str
    options: ResumeOptions
    meta: dict[str, Any] = field(default_factory=dict)
    last_epoch: int = 0
    last_time: float = field(default_factory=time.monotonic)
    prepared: str | None = None  # the slot :meth:`prepare` emptied, not yet committed
    slot: str | None = None  # the slot of the latest point (None: none written yet)

    @property
    def folder(self) -> str:
        return point_folder(self.root, self.label)

    def due(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` gets a resume point."""
        every, minutes = self.options.every_epochs, self.options.every_minutes
        if every is not None and epoch - self.last_epoch >= every:
            return True
        return minutes is not None and time.monotonic() - self.last_time >= 60 * minutes

    def write(
        self,
        epoch: int,
        history: Mapping[int, Mapping[str, float]],
        save: Callable[[str], None],
        kept: str | None = None,
    ) -> None:
        """``save(slot)`` the training state into the free slot, then record the epoch and history there.

        ``kept``: the trial's kept weights so far, linked into the point (:data:`KEPT_FILE`). A slot
        :meth:`prepare` handed out (a DDP trial's, which every rank saved into) is completed instead.
        """
        slot = self.prepared if self.prepared is not None else self.prepare()
        save(slot)
        self.commit(epoch, history, kept=kept)

    def prepare(self) -> str:
        """The emptied slot that the next point's training state goes into; :meth:`commit` completes it.

        The two steps of :meth:`write`, for a save that is not this process's alone (under DDP every rank
        takes part in ``trainer.save_checkpoint``, rank 0 writes): prepare, save, commit.
        """
        slot = os.path.join(self.folder, _SLOTS[1] if self.slot == _SLOTS[0] else _SLOTS[0])
        if self.slot is None:  # the trial's first point: its folder, and nothing left in it by an earlier run
            shutil.rmtree(self.folder, ignore_errors=True)
            for name in _SLOTS:
                os.makedirs(os.path.join(self.folder, name))
        else:
            for name in (CHECKPOINT_FILE, KEPT_FILE):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(slot, name))
        self.prepared = slot
        return slot

    def commit(self, epoch: int, history: Mapping[int, Mapping[str, float]], kept: str | None = None) -> None:
        """Record the epoch and history of the prepared slot (its checkpoint saved): it becomes the point."""
        slot = self.prepared if self.prepared is not None else self.prepare()
        if kept is not None and os.path.exists(kept):
            try:
                os.link(kept, os.path.join(slot, KEPT_FILE))
            except OSError:
                shutil.copyfile(kept, os.path.join(slot, KEPT_FILE))
        meta = {
            **self.meta,
            "slot": os.path.basename(slot),
            "epoch": epoch,
            "history": {str(e): dict(m) for e, m in history.items() if e <= epoch},
            "size": os.path.getsize(os.path.join(slot, CHECKPOINT_FILE)),
            "host": _HOST,
            "written": time.time(),
        }
        write_atomically(os.path.join(self.folder, META_FILE), lambda path: _write_json(path, meta))
        self.prepared, self.slot = None, os.path.basename(slot)
        self.last_epoch, self.last_time = epoch, time.monotonic()

    def discard(self) -> None:
        discard_point(self.folder)


@dataclass(frozen=True)
class ResumePlan:
    """A study's resume points: where they go, when, and what each records besides the trial's own state.

    Attributes:
        root: The study's resume folder (``<checkpoints' folder>/../resume``; on a cluster, a shared one).
        options: When a running trial writes one.
        meta: Recorded in every point and required to match when one is read: the spec hash and the
            versions that decide whether a checkpoint loads (tunebridge, torch, the Lightning package).
    """

    root: str
    options: ResumeOptions = field(default_factory=ResumeOptions)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def folder(self, label: str) -> str:
        """The folder of the points of the trial ``label`` (``trial_7``)."""
        return point_folder(self.root, label)

    def writer(self, label: str, config: Mapping[str, Any]) -> ResumeWriter:
        """The writer of one trial's points (its config recorded, and required on resume)."""
        return ResumeWriter(self.root, label, self.options, meta={**self.meta, "config": dict(config)})

    def read(self, folder: str, config: Mapping[str, Any]) -> tuple[ResumePoint | None, str | None]:
        """The point in ``folder`` if it was written for this study's meaning and ``config``."""
        return read_point(folder, expect={**self.meta, "config": dict(config)})


def point_folder(root: str, label: str) -> str:
    """Where the trial ``label`` writes its points in the resume folder ``root``."""
    return os.path.join(root, label)


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        # No fsync: it guards against a host crash only with the checkpoint and the folder synced too, and a
        # point a crash left short fails read_point's size and CRC checks (the trial then starts over).
        json.dump(data, f, sort_keys=True)


def discard_point(folder: str | None) -> None:
    """Delete a resume point (both slots, and what a kill mid-write left of the next one)."""
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def has_point(folder: str) -> bool:
    """Whether ``folder`` holds a written point (whole or not: :func:`read_point` says), as seen from this host."""
    return os.path.exists(os.path.join(folder, META_FILE))


def read_point(folder: str, *, expect: Mapping[str, Any]) -> tuple[ResumePoint | None, str | None]:
    """The resume point in ``folder`` if it can be trusted, else ``(None, reason)``.

    ``expect`` holds what must match the point's record (``spec_hash``, ``config``, versions); a key the
    point does not record, or that ``expect`` gives as None, is not compared.
    """
    if not os.path.isdir(folder):
        return None, f"its resume point {folder} is not on this host ({_HOST})"
    try:
        with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        epoch = int(meta["epoch"])
        history = {int(e): {str(k): float(v) for k, v in m.items()} for e, m in meta["history"].items()}
        slot = str(meta["slot"])
        if slot not in _SLOTS:
            raise ValueError(slot)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"its resume point {folder} has no readable {META_FILE} ({type(exc).__name__})"
    for key, wanted in expect.items():
        if wanted is not None and key in meta and meta[key] != wanted:
            return None, f"its resume point was written with another {key} ({show(meta[key])}, now {show(wanted)})"
    checkpoint = os.path.join(folder, slot, CHECKPOINT_FILE)
    if not _whole(checkpoint, meta.get("size")):
        return None, f"its resume point's checkpoint {checkpoint} is missing or truncated"
    if sorted(history) != list(range(1, epoch + 1)):
        return None, f"its resume point's history does not hold epochs 1..{epoch}"
    return ResumePoint(os.path.join(folder, slot), epoch, history), None


def _whole(path: str, size: Any) -> bool:
    """The file exists, has the size recorded when it was written and, as a zip (torch.save's format),
    passes its CRC checks."""
    try:
        if size is not None and os.path.getsize(path) != int(size):
            return False
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        return os.path.getsize(path) > 0
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
