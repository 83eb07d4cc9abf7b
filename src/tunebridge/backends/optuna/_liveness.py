"""Is a trial's worker alive? Heartbeats for every worker, and a direct look for those on this host.

A running trial's worker writes a heartbeat every few seconds (:class:`Heartbeat`), and with the first
one (in the same storage operation) who it is (``host:pid``) and where it runs: its PID namespace and pid. Another worker of the same host (same PID namespace)
sees at once that the process is gone (:func:`gone_here`); for other hosts only the heartbeat can tell.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from tunebridge import _record
from tunebridge.backends.optuna._attrs import write_attrs
from tunebridge.backends.optuna._internals import storage_of, trial_id_of

__all__ = ["HEARTBEAT_ATTR", "PID_NAMESPACE", "PROCESS_ATTR", "Heartbeat", "gone_here", "waiting_for", "worker_id"]

HEARTBEAT_ATTR = "tb_heartbeat"
# [PID namespace, pid] of the process running a trial, written with its first heartbeat.
PROCESS_ATTR = "tb_process"


def _pid_namespace() -> str:
    """Where a pid names one process: host, boot and PID namespace (containers may share a hostname, not this)."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:  # no /proc (macOS): a host has one PID namespace
        pass
    return "/".join(parts)


PID_NAMESPACE = _pid_namespace()


def gone_here(trial: optuna.trial.FrozenTrial) -> str | None:
    """Why a running trial's worker is dead, when it ran on this host and its process is gone; else None."""
    process = trial.system_attrs.get(PROCESS_ATTR)
    if not isinstance(process, list) or len(process) != 2 or process[0] != PID_NAMESPACE:
        return None  # another host or container: only its heartbeat can tell
    pid = int(process[1])
    if pid == os.getpid() or _alive(pid):
        return None
    worker = _record.bookkeeping(trial, _record.WORKER) or f"{socket.gethostname()}:{pid}"
    return (
        f"its worker {worker} is no longer running on this host (process {pid} is gone), "
        "so its heartbeat timeout was not waited for"
    )


def worker_id() -> str:
    """``host:pid`` of this process (read at each call: a forked worker has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this PID namespace still runs (not a zombie awaiting its parent)."""
    if pid <= 0:
        return True  # not a process id (0 and -1 would signal process groups): leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    # A SIGKILLed child that its parent has not reaped yet (e.g. a worker of `run --jobs`) still answers
    # signal 0; Linux shows it as state Z. Without /proc, it counts as alive (the heartbeat decides).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def waiting_for(study: optuna.Study, dead_after: float) -> str | None:
    """What a worker with nothing to claim is waiting for, in words; None when nothing alive holds a trial.

    Example: ``trial 7 on host-b:1234, last heartbeat 12 s ago; it counts as dead after 30 s``. With
    several running trials, the one with the oldest heartbeat (the first that can count as dead).
    """
    now = time.time()
    beats = [
        (float(t.system_attrs[HEARTBEAT_ATTR]), t)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if HEARTBEAT_ATTR in t.system_attrs
    ]
    if not beats:
        return None
    beat, t = min(beats, key=lambda b: b[0])
    worker = _record.bookkeeping(t, _record.WORKER) or "an unnamed worker"
    text = (
        f"trial {t.number} on {worker}, last heartbeat {max(0.0, now - beat):.0f} s ago; "
        f"it counts as dead after {dead_after:g} s"
    )
    return text if len(beats) == 1 else f"{len(beats)} trials running elsewhere; the stalest: {text}"


class Heartbeat:
    """Keeps a running trial's heartbeat fresh from a daemon thread (works with every storage)."""

    def __init__(
        self, study: optuna.Study, trial: optuna.Trial, interval: float | None, first: Mapping[str, Any] | None = None
    ) -> None:
        self.interval = interval
        # Record attributes written with the first heartbeat (a trial's resume folder): no write of their own.
        self.first = dict(first or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._storage, self._trial_id = storage_of(study), trial_id_of(trial)

    def __enter__(self) -> Heartbeat:
        if self.interval:
            # Who runs the trial (several workers may share the study), and where, so that a worker on
            # this host can see at once that it died: with the first heartbeat, in one write.
            process = {PROCESS_ATTR: [PID_NAMESPACE, os.getpid()], HEARTBEAT_ATTR: time.time()}
            write_attrs(self._storage, self._trial_id, {**self.first, _record.WORKER: worker_id()}, system=process)
            self._thread = threading.Thread(target=self._run, daemon=True, name="tunebridge-heartbeat")
            self._thread.start()
        elif self.first:
            write_attrs(self._storage, self._trial_id, self.first)
        return self

    def _beat(self) -> None:
        self._storage.set_trial_system_attr(self._trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval or 0):
            try:
                self._beat()
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # another worker has failed the trial: nothing left to keep alive
            except Exception:  # a transient storage error (a locked SQLite file, a dropped connection)
                continue

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
