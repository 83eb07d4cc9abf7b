"""An Optuna sampler that Ray can save: every lock in it is dropped when pickled and made anew when loaded.

Ray pickles the searcher with its sampler: once when the ``Tuner`` is built (``tuner.pkl``, the
experiment's restore point) and at every experiment checkpoint (``OptunaSearch.save``). Some samplers
hold a ``threading.Lock`` (optuna 5.1's ``NSGAIISampler`` guards its generation cache with one),
which no pickler can save. A lock protects memory that a process owns; a loaded copy is a new
process's memory, so it gets a new, free lock, as Optuna itself does for its ``Study`` and
``InMemoryStorage``. Everything else (random state, caches) is saved as it is, so a restored
experiment goes on drawing where it stopped.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Callable
from typing import Any

from optuna.samplers import BaseSampler
from ray import cloudpickle

from tunebridge.backends.optuna import WrappedSampler

__all__ = ["SavableSampler", "dumps", "fresh_copy", "savable"]

# The lock types of this Python, and how to make a new one (a free lock holds no state worth saving).
_LOCKS: dict[type, Callable[[], Any]] = {
    type(threading.Lock()): threading.Lock,
    type(threading.RLock()): threading.RLock,
}


class _FreshLocks(cloudpickle.Pickler):
    """Ray's cloudpickle (a user's lambdas and classes are saved by value), with locks made anew on load."""

    def reducer_override(self, obj: Any) -> Any:
        make = _LOCKS.get(type(obj))
        if make is not None:
            return make, ()
        return super().reducer_override(obj)  # type: ignore[no-untyped-call]


def dumps(obj: object) -> bytes:
    """``obj`` pickled by Ray's cloudpickle, with each lock in it saved as "a new lock" (``pickle.loads`` reads it)."""
    buffer = io.BytesIO()
    _FreshLocks(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


def fresh_copy(obj: Any) -> Any:
    """A deep copy of ``obj`` that also copies objects holding locks (each copy gets new ones)."""
    return pickle.loads(dumps(obj))


def savable(sampler: BaseSampler) -> BaseSampler:
    """``sampler`` itself when Ray can pickle it, else in a :class:`SavableSampler` (it holds a lock).

    Most samplers pickle as they are and reach ``OptunaSearch`` unchanged; optuna 5.1's NSGA-II (also
    inside ``OrderedChoices``) does not.
    """
    try:
        cloudpickle.dumps(sampler)  # type: ignore[no-untyped-call]
    except Exception:  # TypeError: cannot pickle '_thread.lock' object (or a pickling error of its own)
        return SavableSampler(sampler)
    return sampler


class SavableSampler(WrappedSampler):
    """``sampler`` as Ray's ``OptunaSearch`` gets it: it draws exactly as ``sampler`` does, and pickles.

    Args:
        sampler: The sampler that draws; every call passes through to it unchanged.
    """

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": dumps(self.inner)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.inner = pickle.loads(state["inner"])
