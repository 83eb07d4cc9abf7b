"""Writing a file so that a reader never sees half of it: write next to it, then move it into place.

Standard library only; the one home of the ``.partial`` + ``os.replace`` dance (checkpoints, exports).
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["write_atomically"]


def write_atomically(path: str, write: Callable[[str], object], *, move: bool = True) -> None:
    """``write(partial)`` a file ``path + ".partial"``, then move it onto ``path`` in one step.

    ``os.replace`` is atomic on one file system: a reader sees the old file or the new one, never a
    file being written. The folder is made if it is missing.

    Args:
        path: Where the file ends up.
        write: Writes the whole file to the path it is given (``torch.save``, a Trainer's checkpoint I/O).
        move: False leaves the move to another process (under DDP every rank writes, only rank 0 moves).
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = f"{path}.partial"
    write(partial)
    if move:
        os.replace(partial, path)
