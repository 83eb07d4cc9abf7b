"""Workers started at the same moment on a fresh PostgreSQL database all join the study.

Optuna creates its tables (and stamps ``alembic_version``) on first use; two processes doing that at
once collided with ``UniqueViolation``. Each round here makes a scratch database, releases several
real processes through a file barrier, and every one must open the study.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]

N_WORKERS = 7
ROUNDS = 3

# Each process imports everything first, then waits for the barrier file, so that all of them reach
# make_storage() within a few milliseconds of each other.
WORKER = textwrap.dedent(
    """
    import os, sys, time
    import optuna
    from tunebridge.backends.optuna import make_storage

    url, barrier = sys.argv[1], sys.argv[2]
    print("waiting", flush=True)
    while not os.path.exists(barrier):
        time.sleep(0.002)
    storage = make_storage(url)
    study = optuna.create_study(storage=storage, study_name="race", load_if_exists=True)
    print("joined", study.study_name, flush=True)
    """
)


def _admin(base_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(base_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def scratch_db(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards); yields its URL."""
    name = f"tb_race_{uuid.uuid4().hex[:12]}"
    _admin(postgres_url, f"CREATE DATABASE {name}")
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _admin(postgres_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _race(url: str, barrier: Path) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(N_WORKERS)
    ]
    # Release them once all are waiting at the barrier (each printed "waiting" after its imports).
    for p in procs:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "waiting", p.stderr.read() if p.stderr else ""
    barrier.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_workers_starting_together_on_a_fresh_database_all_join(round_: int, scratch_db: str, tmp_path: Path) -> None:
    started = time.monotonic()
    results = _race(scratch_db, tmp_path / "go")
    failed = [r for r in results if r.returncode != 0]
    assert not failed, failed[0].stderr[-3000:]
    assert all("joined race" in r.stdout for r in results)
    assert time.monotonic() - started < 120

    import optuna

    from tunebridge.backends.optuna import make_storage

    studies = optuna.get_all_study_summaries(make_storage(scratch_db))
    assert [s.study_name for s in studies] == ["race"], "one study, created once"
