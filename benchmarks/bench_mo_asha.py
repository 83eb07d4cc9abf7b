"""MO-ASHA's decision at a rung of n trials: :func:`rung_stops` against the rule as written.

``tunebridge.backends._mo_asha.rung_stops`` sorts two objectives into fronts with an O(n log n) sweep and
orders only the trial's own front; ``rung_stops(..., by_definition=True)`` peels the fronts one by one (O(n^2) per front)
and orders the whole rung. Both give the same decision (``tests/backends/test_mo_asha.py``). The rungs are
real: (val_acc after epoch 1, n_params) of the first n configs of the digits_mlp table
(``benchmarks/data/digits_mlp.npz``), tiled with small offsets past its 500 rows; each decision is asked for
20 candidates spread over the rung.

    python benchmarks/bench_mo_asha.py            # n = 100, 300, 700, 2000
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np

from tunebridge.backends._mo_asha import rung_stops

MODES = ("max", "min")


def rung(n: int) -> list[list[float]]:
    with np.load(Path(__file__).parent / "data" / "digits_mlp.npz") as z:
        acc, size = z["val_acc"][:, 0], z["n_params"]
    return [[float(acc[i % len(acc)]) - 1e-4 * (i // len(acc)), float(size[i % len(acc)])] for i in range(n)]


def timed(decide, points: list[list[float]], repeats: int) -> tuple[float, list[bool]]:
    """Median seconds per decision over ``repeats`` passes of 20 candidates, and the decisions."""
    picks = range(0, len(points), max(1, len(points) // 20))
    per_pass, decisions = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        decisions = [decide(points[i], points[:i] + points[i + 1 :], modes=MODES, reduction_factor=3) for i in picks]
        per_pass.append((time.perf_counter() - started) / len(picks))
    return statistics.median(per_pass), decisions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 700, 2000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| trials at the rung | by definition, ms per decision | rung_stops, ms | ratio |")
    print("|---|---|---|---|")
    for n in args.sizes:
        points = rung(n)
        slow, expected = timed(partial(rung_stops, by_definition=True), points, 1 if n > 700 else args.repeats)
        fast, got = timed(rung_stops, points, args.repeats)
        assert got == expected, "the decisions differ"
        print(f"| {n} | {1e3 * slow:.1f} | {1e3 * fast:.2f} | {slow / fast:.0f}x |")


if __name__ == "__main__":
    main()
