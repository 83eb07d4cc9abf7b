"""MO-ASHA's decision, one home for every backend: stop a trial at a rung by its Pareto rank there.

Multi-objective asynchronous successive halving (Schmucker et al., 2021, "Multi-objective
Asynchronous Successive Halving"; Syne Tune's ``MOASHA``): when a trial reaches a rung (an epoch
``grace_period * reduction_factor**k``), its objective values are compared with those of every trial
that reached the same rung before it. The rung's values are ordered by non-dominated sorting (the first
Pareto front, then the front of what is left, ...), ties within a front broken by an ε-net (the paper's
default: farthest-first from the best point on the first objective) or by NSGA-II's crowding distance.
The trial goes on when it is among the first ``max(1, n // reduction_factor)`` of the ``n`` values
(itself included; Optuna's ``SuccessiveHalvingPruner`` keeps as many) **or on the rung's first front**:
a trial no other trial beats on every objective is never stopped.

Hyperband is brackets of MO-ASHA (as Optuna's ``HyperbandPruner`` is brackets of successive halving):
bracket ``s`` has its first rung at ``grace_period * reduction_factor**s``; a trial's bracket follows
from its index (0, 1, 2, ... in creation order) alone, so every backend puts it in the same one.

Both backends ask :meth:`MoAsha.stops` with the values they recorded at the rung; given the same values
they decide the same. Standard library only.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from tunebridge._rules import check_mode, is_int_at_least
from tunebridge.schema import PruningSpec
from tunebridge.schema._policies import TIE_BREAKS

__all__ = [
    "MoAsha",
    "check_metrics",
    "crowding_order",
    "epsilon_net_order",
    "minimizing",
    "pareto_fronts",
    "peeled_fronts",
    "rung_stops",
]

Point = tuple[float, ...]


def check_metrics(owner: str, metrics: Sequence[str], modes: Sequence[str]) -> tuple[str, ...]:
    """The metrics a multi-objective pruner compares: one per mode (the objectives' directions).

    Raises:
        ValueError: Not one metric per mode.
    """
    if len(metrics) != len(modes) or len(modes) < 2:
        raise ValueError(
            f"{owner}: several objectives need one metric per mode, but got metrics={list(metrics)!r} "
            f"and modes={list(modes)!r}."
        )
    return tuple(metrics)


def minimizing(values: Sequence[float], modes: Sequence[str]) -> Point:
    """``values`` as costs: ``max`` objectives negated; NaN (a diverged metric) is the worst, ``inf``."""
    out = []
    for value, mode in zip(values, modes, strict=True):
        v = float(value)
        out.append(math.inf if math.isnan(v) else (v if mode == "min" else -v))
    return tuple(out)


def dominates(a: Point, b: Point) -> bool:
    """Whether cost vector ``a`` is no worse than ``b`` on every objective and better on one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the indices of ``points`` (costs) front by front, first front first, each
    front's indices in ascending order.

    Two objectives (the usual pair, a score and a size) take an O(n log n) sweep; more peel the fronts one
    by one (:func:`peeled_fronts`, the definition). Both give the same fronts (a property test holds them
    equal).

    Example:
        >>> pareto_fronts([(1.0, 3.0), (2.0, 2.0), (3.0, 3.0), (3.0, 1.0)])
        [[0, 1, 3], [2]]
    """
    if points and len(points[0]) == 2:
        return _swept_fronts(points)
    return peeled_fronts(points)


def _swept_fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting of two-objective costs in O(n log n) (Jensen's sweep).

    Equal points share a front (neither dominates the other), so the sweep runs over distinct points sorted by
    (first, second) cost: every point before ``p`` has a first cost no larger, and dominates ``p`` exactly when
    its second cost is no larger. ``least[k]``, the least second cost in front ``k``, grows with ``k``; ``p``
    joins the first front whose least second cost is above its own (a new front when none is).
    """
    distinct = sorted(set(points))
    least: list[float] = []
    front_of: dict[Point, int] = {}
    for p in distinct:
        k = bisect.bisect_right(least, p[1])
        if k == len(least):
            least.append(p[1])
        else:
            least[k] = p[1]
        front_of[p] = k
    fronts: list[list[int]] = [[] for _ in least]
    for i, p in enumerate(points):
        fronts[front_of[p]].append(i)
    return fronts


def peeled_fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting by its definition: the points no other remaining point dominates, front by front."""
    left = list(range(len(points)))
    fronts: list[list[int]] = []
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)]
        fronts.append(front)
        chosen = set(front)
        left = [i for i in left if i not in chosen]
    return fronts


def _scaled(points: Sequence[Point]) -> list[Point]:
    """Each objective scaled to [0, 1] over ``points`` (distances must not depend on units: accuracy
    against a parameter count); an infinite cost is put at 2, beyond every finite one."""
    dims = len(points[0]) if points else 0
    lows, spans = [], []
    for d in range(dims):
        finite = [p[d] for p in points if math.isfinite(p[d])]
        low = min(finite, default=0.0)
        lows.append(low)
        spans.append((max(finite, default=0.0) - low) or 1.0)
    return [tuple((p[d] - lows[d]) / spans[d] if math.isfinite(p[d]) else 2.0 for d in range(dims)) for p in points]


def epsilon_net_order(front: Sequence[int], points: Sequence[Point]) -> list[int]:
    """The members of ``front`` farthest-first (an ε-net): the best on the first objective, then each time
    the member farthest from those already chosen. Ties go to the lower index."""
    scaled = _scaled(points)
    left = sorted(front)
    first = min(left, key=lambda i: (points[i], i))
    order = [first]
    left.remove(first)
    nearest = {i: math.dist(scaled[i], scaled[first]) for i in left}
    while left:
        pick = max(left, key=lambda i: (nearest[i], -i))
        order.append(pick)
        left.remove(pick)
        for i in left:
            nearest[i] = min(nearest[i], math.dist(scaled[i], scaled[pick]))
    return order


def crowding_order(front: Sequence[int], points: Sequence[Point]) -> list[int]:
    """The members of ``front`` by NSGA-II's crowding distance, largest first (the extremes of each
    objective first of all). Ties go to the lower index."""
    scaled = _scaled(points)
    distance = dict.fromkeys(front, 0.0)
    for d in range(len(points[0]) if points else 0):
        ranked = sorted(front, key=lambda i: (scaled[i][d], i))
        distance[ranked[0]] = distance[ranked[-1]] = math.inf
        for before, member, after in zip(ranked, ranked[1:], ranked[2:]):
            distance[member] += scaled[after][d] - scaled[before][d]
    return sorted(front, key=lambda i: (-distance[i], i))


def _canonical(candidate: Point, others: Sequence[Point]) -> tuple[list[Point], int]:
    """The rung's points in one order that depends on the values alone (not on which backend recorded
    them, or in which order): sorted, the candidate after the records equal to it."""
    keyed = sorted([(p, 0) for p in others] + [(candidate, 1)])
    return [p for p, _ in keyed], next(i for i, (_, is_candidate) in enumerate(keyed) if is_candidate)


def rung_stops(
    candidate: Sequence[float],
    others: Sequence[Sequence[float]],
    *,
    modes: Sequence[str],
    reduction_factor: int,
    tie_break: str = "epsilon_net",
    by_definition: bool = False,
) -> bool:
    """Whether the trial with ``candidate`` values stops at a rung the ``others`` reached before it.

    Args:
        candidate: The trial's objective values at the rung's epoch, in the metrics' order.
        others: The values every other trial recorded at this rung (in any order).
        modes: ``min`` or ``max`` per objective.
        reduction_factor: Keep the first ``max(1, n // reduction_factor)`` of ``n`` values.
        tie_break: ``epsilon_net`` or ``crowding``: the order within a front.
        by_definition: Decide as the rule is written, without shortcuts: the fronts peeled one by one and the
            whole rung ordered (the reference ``tests/backends/test_mo_asha.py`` holds the shortcuts to, and
            ``benchmarks/bench_mo_asha.py`` times them against). Otherwise two objectives are sorted by a sweep
            and only the trial's own front is ordered: the same decision.

    Example:
        >>> rung_stops([0.5, 10], [[0.9, 5], [0.8, 8]], modes=["max", "min"], reduction_factor=2)
        True
        >>> rung_stops([0.95, 20], [[0.9, 5], [0.8, 8]], modes=["max", "min"], reduction_factor=2)
        False
    """
    points, me = _canonical(minimizing(candidate, modes), [minimizing(o, modes) for o in others])
    fronts = peeled_fronts(points) if by_definition else pareto_fronts(points)
    if me in fronts[0]:
        return False
    within = crowding_order if tie_break == "crowding" else epsilon_net_order
    keep = max(1, len(points) // reduction_factor)
    if by_definition:
        return [i for front in fronts for i in within(front, points)].index(me) >= keep
    # The rung's order is front after front, each in its tie-break order: only the trial's own front is ordered.
    before = 0
    for front in fronts:
        if me in front:
            return before + within(front, points).index(me) >= keep
        before += len(front)
    raise AssertionError("unreachable: every point is on a front")


@dataclass(frozen=True)
class MoAsha:
    """MO-ASHA (``brackets == 1``) or Hyperband of MO-ASHA brackets, for one study.

    Attributes:
        modes: ``min`` or ``max`` per objective.
        grace_period: The first rung's epoch (bracket 0).
        reduction_factor: The halving rate.
        budget: The most epochs a trial runs; it is never stopped there, so no rung is at it.
        tie_break: ``epsilon_net`` or ``crowding``.
        brackets: How many brackets (1 for ASHA).
    """

    modes: tuple[str, ...]
    grace_period: int = 1
    reduction_factor: int = 3
    budget: int = 1
    tie_break: str = "epsilon_net"
    brackets: int = 1

    def __post_init__(self) -> None:
        for mode in self.modes:
            check_mode(mode, path="MoAsha.modes")
        for name, low in (("grace_period", 1), ("reduction_factor", 2), ("budget", 1), ("brackets", 1)):
            if not is_int_at_least(getattr(self, name), low):
                raise ValueError(f"MoAsha: `{name} >= {low}` must hold, but got {name}={getattr(self, name)!r}.")
        if len(self.modes) < 2:
            raise ValueError(f"MoAsha: compares several objectives, but got modes={self.modes!r}.")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"MoAsha: `tie_break` must be one of {', '.join(TIE_BREAKS)}, but got {self.tie_break!r}.")

    @classmethod
    def of(cls, spec: PruningSpec, *, modes: Sequence[str], max_epochs: int) -> MoAsha:
        """The rule of an ``asha`` or ``hyperband`` pruning spec over several objectives."""
        budget = spec.budget(max_epochs)
        brackets = 1
        if spec.policy == "hyperband":
            # Optuna's HyperbandPruner: floor(log_eta(max / min)) + 1 brackets.
            while spec.grace_period * spec.reduction_factor**brackets <= budget:
                brackets += 1
        tie_break = spec.tie_break or TIE_BREAKS[0]
        return cls(tuple(modes), spec.grace_period, spec.reduction_factor, budget, tie_break, brackets)

    def rungs(self, bracket: int = 0) -> tuple[int, ...]:
        """The epochs at which a trial of ``bracket`` is compared (all before the budget's last epoch)."""
        out, epoch = [], self.grace_period * self.reduction_factor**bracket
        while epoch < self.budget:
            out.append(epoch)
            epoch *= self.reduction_factor
        return tuple(out)

    def bracket_of(self, index: int) -> int:
        """The bracket of the ``index``-th trial (0-based, creation order): bracket ``s`` takes a share of
        ``ceil(brackets * eta**(brackets-1-s) / (brackets - s))``, as in Optuna's ``HyperbandPruner``; the
        trial's place is a CRC-32 of its index, so the brackets fill evenly and every backend agrees."""
        if self.brackets == 1:
            return 0
        shares = [
            math.ceil(self.brackets * self.reduction_factor ** (self.brackets - 1 - s) / (self.brackets - s))
            for s in range(self.brackets)
        ]
        n = zlib.crc32(str(index).encode()) % sum(shares)
        for bracket, share in enumerate(shares):
            n -= share
            if n < 0:
                return bracket
        return self.brackets - 1  # unreachable: the shares sum to the modulus

    def stops(self, candidate: Sequence[float], others: Sequence[Sequence[float]]) -> bool:
        """Whether a trial with ``candidate`` values stops at a rung the ``others`` (same bracket) reached first."""
        return rung_stops(
            candidate, others, modes=self.modes, reduction_factor=self.reduction_factor, tie_break=self.tie_break
        )
