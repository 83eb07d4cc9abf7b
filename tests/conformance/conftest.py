"""Fixtures for the conformance suite: one real local Ray instance shared by every Ray test of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """A local Ray with 2 CPUs, no dashboard, quiet; started once (ray.init takes ~7 s here), never re-initialised."""
    pytest.importorskip("ray.tune")
    import torch

    from tunebridge.backends.ray import ensure_ray

    torch.set_num_threads(1)
    ensure_ray(num_cpus=2)
    yield
