"""A trial's wall-clock limit (``trial_timeout``), enforced with a timer signal."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tunebridge.errors import TrialTimeoutError

__all__ = ["deadline"]


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeoutError` in the main thread once ``seconds`` have passed.

    A timer signal interrupts Python code (a training loop, a hung data loader in Python) wherever
    it is; Lightning tears the trainer down and re-raises, so the trial is failed cleanly. An outer
    alarm (e.g. pytest-timeout's) is re-armed afterwards with what is left of it.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TrialTimeoutError(f"the trial ran past trial_timeout={seconds:g} s and was stopped")

    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if outer_delay and outer_delay <= seconds:
        yield  # an outer alarm fires first anyway: leave it alone
        return
    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:  # re-arm the caller's alarm with what is left of it
            left = max(outer_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)
