"""Seeding a trial before its ``build``: one home for every way a trial is trained.

The unfused runner, the DDP ranks (they run the same runner), the fused loop and the Ray trainable
all seed a trial here, so that a module whose ``__init__`` draws from python's ``random``, numpy or
torch gets the same initial weights whichever way it trains.

Example:
    >>> seed_trial(None, {"lr": 0.1}) is None
    True
    >>> seed_trial(0, {"lr": 0.1}) == trial_seed(0, {"lr": 0.1})
    True
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from typing import Any, cast

from tunebridge.schema import Scalar

__all__ = ["random_states", "restore_random_states", "seed_process", "seed_trial", "trial_seed"]


def trial_seed(seed: int, config: Mapping[str, Scalar]) -> int:
    """The seed a trial of ``config`` trains with: the run's seed and the config, the same under every backend."""
    digest = zlib.crc32(json.dumps(dict(config), sort_keys=True).encode())
    return (seed + digest) % (2**31 - 1)


def seed_trial(seed: int | None, config: Mapping[str, Scalar]) -> int | None:
    """Seed this process for a trial of ``config``, before its ``build``: :func:`seed_process` with :func:`trial_seed`.

    Args:
        seed: The run's seed; None seeds nothing.
        config: The trial's config (its seed is derived from it).

    Returns:
        The trial's seed, or None when ``seed`` is None.
    """
    if seed is None:
        return None
    derived = trial_seed(seed, config)
    seed_process(derived)
    return derived


def seed_process(seed: int | None) -> None:
    """Seed python, numpy, torch (every device) and the dataloader workers with ``seed`` as it is.

    What Lightning's ``seed_everything(seed, workers=True)`` does, without knowing yet which
    Lightning package the module will come from: both read ``PL_GLOBAL_SEED``/``PL_SEED_WORKERS``
    to seed dataloader workers. None seeds nothing.
    """
    if seed is None:
        return
    import random

    import numpy as np
    import torch

    os.environ["PL_GLOBAL_SEED"] = str(seed)
    os.environ["PL_SEED_WORKERS"] = "1"
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def random_states() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) random states: what a resumed trial restores so
    that the epochs after the resume draw what they would have drawn without the interruption."""
    import random

    import numpy as np
    import torch

    # Plain types and tensors only: Lightning loads checkpoints with torch.load(weights_only=True).
    name, keys, pos, has_gauss, gauss = cast(tuple[str, Any, int, int, float], np.random.get_state())
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: Mapping[str, Any]) -> None:
    """Put back what :func:`random_states` took (the states it has; CUDA's only where CUDA runs)."""
    import random

    import numpy as np
    import torch

    if "python" in states:
        random.setstate(_tuples(states["python"]))
    if "numpy" in states:
        name, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "torch" in states:
        torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples where a checkpoint's round trip may have made lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value
