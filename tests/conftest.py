"""Shared test set-up: one torch thread, quiet Lightning, and the service servers' reachability."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

# Two threads on two shared cores were seen 10x slower than one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip with a clear reason when a server is unreachable, or fail when CI says it must be there."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("TUNEBRIDGE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}, and TUNEBRIDGE_REQUIRE_SERVICES=1 says it must be (CI runs it on this machine)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def postgres_url() -> str:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("TUNEBRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def redis_url() -> str:
    require_server("Redis", "127.0.0.1", 6379)
    return os.environ.get("TUNEBRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """A local Ray with 2 CPUs, no dashboard, quiet; started once (ray.init takes ~7 s here), never re-initialised."""
    pytest.importorskip("ray.tune")
    import torch

    from tunebridge.backends.ray import ensure_ray

    torch.set_num_threads(1)
    ensure_ray(num_cpus=2)
    yield
