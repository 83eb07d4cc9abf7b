"""The one place a trial's kept checkpoint file is deleted, for every backend.

A trial's objective writes the weights of its reported epoch into one file (its path is the trial's
``checkpoint`` attribute). The backend deletes it when the trial keeps no weights: it was pruned,
failed, stopped for good by a Ray scheduler, or fell out of the study's top ``keep_checkpoints``
(``tunebridge.backends.optuna.keep_best_checkpoints``, which both backends run on their study).
Standard library only.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["discard_checkpoint"]


def discard_checkpoint(path: object) -> None:
    """Delete a trial's checkpoint file if there is one (a pruned, failed or superseded trial).

    Anything that is not a non-empty path (None, a missing attribute) is ignored, and so is a file
    already gone: another worker of the same study may have deleted it first.
    """
    if isinstance(path, str) and path:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
