"""Preemption is a signal, not a crash (standard library only).

Slurm (``--signal=B:TERM@<grace>``), Kubernetes (pod deletion) and ``ray stop`` send SIGTERM before they
kill. While a study runs, :func:`preemptible` turns SIGTERM into a request: the running trials finish
their epoch if they can within ``grace`` seconds, write a resume point and stop (their reporters ask
:func:`requested`); a trial that cannot finish its epoch in time is interrupted when 80 % of the grace
has passed and goes on from its last resume point. Either way the loop re-queues the trials it held,
and the process exits with :data:`PREEMPTED_EXIT_CODE`, which schedulers retry on.
"""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "preemptible", "requested"]

#: The exit code of a preempted ``tunebridge run``/``worker`` (EX_TEMPFAIL: try again later).
PREEMPTED_EXIT_CODE = 75

_requested_at: float | None = None


class Preempted(KeyboardInterrupt):
    """Raised where a trial stops because its process was asked to go (SIGTERM)."""


def requested() -> bool:
    """Whether this process was asked to go (SIGTERM) while a study ran."""
    return _requested_at is not None


def reset() -> None:
    """Forget an earlier request (tests; a process that runs another study afterwards)."""
    global _requested_at
    _requested_at = None


@contextmanager
def preemptible(grace: float | None) -> Iterator[None]:
    """SIGTERM while inside: request a stop, and interrupt the main thread after 80 % of ``grace`` s.

    Outside the main thread (where Python cannot install handlers), or with ``grace`` None, nothing
    changes. The previous handler comes back on exit.
    """
    if grace is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        global _requested_at
        if _requested_at is not None:
            return
        _requested_at = time.monotonic()
        timer = threading.Timer(0.8 * grace, _thread.interrupt_main)
        timer.daemon = True
        timer.start()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
