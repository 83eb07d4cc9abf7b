"""How stacked MLP members are grouped into cohorts: the padding bound, tighter on the CPU."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tunebridge.fused import _loop
from tunebridge.fused._mlp import MemberShape, paid_work, stack_widths, work

N_FEATURES, N_CLASSES = 64, 10
SHAPES = [  # the digits_mlp recipe's kind of spread: depth 1-3, widths 16-256
    MemberShape((251, 45, 233), "gelu", True, 0.3),
    MemberShape((249, 21, 81), "relu", False, 0.0),
    MemberShape((187, 88), "tanh", True, 0.1),
    MemberShape((115, 108), "relu", False, 0.0),
    MemberShape((110,), "relu", False, 0.2),
    MemberShape((48, 57), "gelu", True, 0.0),
    MemberShape((24, 35, 54), "relu", False, 0.0),
    MemberShape((16,), "relu", False, 0.0),
]


def _efficiency(shapes: list[MemberShape]) -> float:
    useful = sum(work(m, N_FEATURES, N_CLASSES) for m in shapes)
    return useful / (paid_work(N_FEATURES, N_CLASSES, stack_widths(shapes)) * len(shapes))


def test_the_cpu_bound_is_tighter_than_the_accelerators() -> None:
    assert _loop.min_efficiency(torch.device("cpu")) == _loop.MIN_EFFICIENCY_CPU == 0.8
    assert _loop.min_efficiency(None) == 0.8  # no device: the CPU
    assert _loop.min_efficiency(torch.device("cuda")) == _loop.MIN_EFFICIENCY == 0.5
    on_gpu = _loop.group_members(SHAPES, N_FEATURES, N_CLASSES, 8, bound=0.5)
    on_cpu = _loop.group_members(SHAPES, N_FEATURES, N_CLASSES, 8, bound=0.8)
    assert len(on_cpu) > len(on_gpu)


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(
        st.builds(
            MemberShape,
            st.lists(st.integers(1, 256), min_size=1, max_size=3).map(tuple),
            st.sampled_from(["relu", "tanh"]),
            st.booleans(),
            st.sampled_from([0.0, 0.2]),
        ),
        min_size=1,
        max_size=12,
    ),
    bound=st.sampled_from([0.5, 0.8]),
    capacity=st.integers(1, 8),
)
def test_every_member_is_placed_once_and_every_cohort_keeps_the_bound(
    shapes: list[MemberShape], bound: float, capacity: int
) -> None:
    groups = _loop.group_members(shapes, N_FEATURES, N_CLASSES, capacity, bound=bound)
    assert sorted(i for g in groups for i in g) == list(range(len(shapes)))
    for group in groups:
        assert 1 <= len(group) <= capacity
        assert len(group) == 1 or _efficiency([shapes[i] for i in group]) >= bound
