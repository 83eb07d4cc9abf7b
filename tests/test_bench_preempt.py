"""benchmarks/bench_preempt.py runs: its resume-point cost part at the smallest sizes (the kills part needs
PostgreSQL and ~1 min per arm even at ``--smoke``; run it by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_preempt.py"


def test_bench_preempt_smoke_cost_part(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--parts", "cost"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| **median** |" in proc.stdout
    assert "point: write (all)" in proc.stdout
