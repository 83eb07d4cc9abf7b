"""MO-ASHA (issue 18): the one rule, its refusals, and the same decisions on the Optuna and the Ray backend."""

from __future__ import annotations

import random
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from tunebridge.backends._mo_asha import (
    MoAsha,
    crowding_order,
    epsilon_net_order,
    pareto_fronts,
    peeled_fronts,
    rung_stops,
)
from tunebridge.backends.optuna import make_pruner
from tunebridge.backends.optuna._mo_pruner import MoAshaPruner
from tunebridge.backends.optuna._study import OptunaReporter
from tunebridge.errors import MetricNotFoundError, SchemaError
from tunebridge.schema import PruningSpec, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)

METRICS, MODES = ("val_acc", "n_params"), ("max", "min")

# --- the rule ----------------------------------------------------------------------------------------------------


def test_non_dominated_sorting() -> None:
    points = [(1.0, 3.0), (2.0, 2.0), (3.0, 3.0), (3.0, 1.0), (4.0, 4.0), (1.0, 3.0)]
    assert pareto_fronts(points) == [[0, 1, 3, 5], [2], [4]]


COST = st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.5, float("inf"), -1.0])


@settings(max_examples=300, deadline=None)
@given(points=st.lists(st.tuples(COST, COST), max_size=30), extra=st.lists(st.tuples(COST, COST, COST), max_size=12))
def test_the_two_objective_sweep_gives_the_fronts_of_the_definition(
    points: list[tuple[float, float]], extra: list[tuple[float, float, float]]
) -> None:
    assert pareto_fronts(points) == peeled_fronts(points)  # ties, duplicates and infinite costs included
    assert pareto_fronts(extra) == peeled_fronts(extra)  # three objectives: the definition itself


@settings(max_examples=300, deadline=None)
@given(candidate=st.lists(COST, min_size=2, max_size=2), others=st.lists(st.lists(COST, min_size=2, max_size=2),
       max_size=25), eta=st.integers(2, 4), crowding=st.booleans())  # fmt: skip
def test_a_rungs_decision_is_that_of_the_whole_order(
    candidate: list[float], others: list[list[float]], eta: int, crowding: bool
) -> None:
    tie_break = "crowding" if crowding else "epsilon_net"
    kw: dict[str, Any] = {"modes": MODES, "reduction_factor": eta, "tie_break": tie_break}
    expected = rung_stops(candidate, others, **kw, by_definition=True)
    assert rung_stops(candidate, others, **kw) is expected


def test_epsilon_net_starts_at_the_best_first_objective_and_goes_farthest_first() -> None:
    points = [(0.0, 1.0), (0.1, 0.9), (0.5, 0.5), (1.0, 0.0)]
    assert epsilon_net_order([0, 1, 2, 3], points) == [0, 3, 2, 1]


def test_crowding_puts_the_extremes_first_then_the_loneliest() -> None:
    points = [(0.0, 1.0), (0.1, 0.9), (0.6, 0.4), (1.0, 0.0), (0.65, 0.35)]
    # crowding: 0 and 3 are extremes; 1: 0.6 + 0.6, 2: 0.55 + 0.55, 4: 0.4 + 0.4
    assert crowding_order([0, 1, 2, 3, 4], points) == [0, 3, 1, 2, 4]


@pytest.mark.parametrize(
    ("candidate", "others", "eta", "stops"),
    [
        ([0.5, 100.0], [], 3, False),  # alone at the rung
        ([0.5, 100.0], [[0.9, 50.0]], 3, True),  # dominated by the only other: top max(1, 2 // 3) = 1
        ([0.95, 100.0], [[0.9, 50.0]], 3, False),  # a trade-off: on the front
        ([0.5, 100.0], [[0.9, 50.0], [0.8, 60.0], [0.2, 300.0]], 2, True),  # third of 4, keep 2
        ([0.7, 70.0], [[0.9, 50.0], [0.2, 300.0], [0.1, 400.0]], 2, False),  # second of 4
        ([float("nan"), 10.0], [[0.5, 10.0]], 2, True),  # a diverged metric is the worst value
    ],
)
def test_rung_decisions(candidate: list[float], others: list[list[float]], eta: int, stops: bool) -> None:
    for tie_break in ("epsilon_net", "crowding"):
        assert rung_stops(candidate, others, modes=MODES, reduction_factor=eta, tie_break=tie_break) is stops


VALUES = st.lists(st.integers(0, 6).map(float), min_size=2, max_size=2)


@settings(max_examples=150, deadline=None)
@given(candidate=VALUES, others=st.lists(VALUES, max_size=14), eta=st.integers(2, 4), crowding=st.booleans())
def test_a_trial_on_the_front_is_never_stopped(
    candidate: list[float], others: list[list[float]], eta: int, crowding: bool
) -> None:
    cost = (-candidate[0], candidate[1])
    on_front = not any(
        (-o[0], o[1]) != cost and -o[0] <= cost[0] and o[1] <= cost[1] for o in others
    )  # nobody is no worse on both and better on one
    tie_break = "crowding" if crowding else "epsilon_net"
    if on_front:
        assert not rung_stops(candidate, others, modes=MODES, reduction_factor=eta, tie_break=tie_break)


@settings(max_examples=150, deadline=None)
@given(candidate=VALUES, others=st.lists(VALUES, max_size=14), eta=st.integers(2, 4), crowding=st.booleans())
def test_a_trial_dominated_by_enough_others_is_stopped_whatever_their_order(
    candidate: list[float], others: list[list[float]], eta: int, crowding: bool
) -> None:
    tie_break = "crowding" if crowding else "epsilon_net"
    stops = rung_stops(candidate, others, modes=MODES, reduction_factor=eta, tie_break=tie_break)
    dominators = sum(
        o[0] >= candidate[0] and o[1] <= candidate[1] and (o[0] > candidate[0] or o[1] < candidate[1]) for o in others
    )
    if dominators >= max(1, (len(others) + 1) // eta):
        assert stops
    shuffled = random.Random(len(others)).sample(others, len(others))
    assert rung_stops(candidate, shuffled, modes=MODES, reduction_factor=eta, tie_break=tie_break) is stops


def test_rungs_and_hyperband_brackets() -> None:
    asha = MoAsha.of(PruningSpec(policy="asha", grace_period=1, reduction_factor=3), modes=MODES, max_epochs=27)
    assert asha.brackets == 1 and asha.rungs() == (1, 3, 9)  # never at the budget's last epoch
    hb = MoAsha.of(PruningSpec(policy="hyperband", grace_period=1, reduction_factor=3), modes=MODES, max_epochs=27)
    assert hb.brackets == 4 and [hb.rungs(s) for s in range(4)] == [(1, 3, 9), (3, 9), (9,), ()]
    shares = [sum(hb.bracket_of(i) == s for i in range(3000)) for s in range(4)]
    assert shares[0] > shares[1] > shares[2] > shares[3] > 0  # Hyperband: most trials in the bracket of most rungs


# --- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pruner", "match"),
    [
        (
            {"policy": "asha", "patience": 2},
            r"pruner\.patience: `patience` is not read by `policy: asha` \(it is an option of patience\), but got 2\. "
            r"Remove patience, or choose a policy that reads it\. `policy: asha` reads: grace_period, reduction_factor",
        ),
        ({"policy": "median", "reduction_factor": 3}, r"`reduction_factor` is not read by `policy: median`.*but got 3"),
        ({"policy": "none", "grace_period": 2}, r"`grace_period` is not read by `policy: none`"),
        ({"policy": "patience", "tie_break": "crowding"}, r"`tie_break` is not read by `policy: patience`"),
        ({"policy": "asha", "tie_break": "crowd"}, r"`tie_break` must be one of epsilon_net, crowding.*'crowding'"),
    ],
)
def test_an_option_the_policy_ignores_is_refused(pruner: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        PruningSpec.from_dict(pruner)


def test_a_constructed_spec_is_refused_only_for_values_off_their_default() -> None:
    with pytest.raises(SchemaError, match=r"`min_delta` is not read by `policy: hyperband`"):
        PruningSpec(policy="hyperband", min_delta=0.1)
    assert PruningSpec(policy="median").to_dict() == {
        "policy": "median",
        "grace_period": 1,
        "reduction_factor": 3,
        "max_budget": None,
        "patience": 3,
        "min_delta": 0.0,
    }  # no tie_break: the spec hashes of earlier studies stay the same


@pytest.mark.parametrize(
    ("spec", "metrics", "match"),
    [
        (PruningSpec(policy="patience"), ["val_acc", "n_params"], r"`policy: patience` compares one metric.*asha"),
        (PruningSpec(policy="asha", tie_break="crowding"), ["val_acc"], r"`tie_break` .* needs several objectives"),
    ],
)
def test_a_policy_that_cannot_take_the_objectives_is_refused(spec: PruningSpec, metrics: list[str], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        make_pruner(spec, max_epochs=9, metrics=metrics, modes=["max", "min"][: len(metrics)])


def test_a_ray_scheduler_object_that_compares_one_metric_is_refused_with_several_objectives() -> None:
    pytest.importorskip("ray.tune")
    from ray.tune.schedulers import ASHAScheduler

    from tunebridge.backends.ray._schedulers import user_scheduler
    from tunebridge.errors import ConversionError

    with pytest.raises(
        ConversionError, match=r"AsyncHyperBandScheduler object with several objectives.*\{'policy': 'asha'\}"
    ):
        user_scheduler(ASHAScheduler(), n_objectives=2, ray_scheduler=None)


def test_an_objective_not_logged_every_epoch_is_named() -> None:
    pruner = make_pruner(PruningSpec(policy="asha"), max_epochs=9, metrics=list(METRICS), modes=list(MODES))
    assert isinstance(pruner, MoAshaPruner)
    with pytest.raises(MetricNotFoundError, match=r"n_params"):
        pruner.values(1, {"val_acc": 0.5, "val_loss": 1.0})


# --- the same decisions on both backends ----------------------------------------------------------------------


def _events(n_trials: int, budget: int, seed: int) -> list[tuple[int, int, dict[str, float]]]:
    """(trial, epoch, metrics) in the order results arrive: trials start one after another and take
    different times per epoch; accuracy rises towards a ceiling, the size is fixed per trial."""
    rng = random.Random(seed)
    events = []
    for i in range(n_trials):
        ceiling, speed, size, pace = (
            rng.uniform(0.5, 1),
            rng.uniform(0.2, 1.5),
            float(rng.randrange(1, 20)),
            rng.uniform(1, 3),
        )
        for epoch in range(1, budget + 1):
            acc = round(ceiling * (1 - 0.5 ** (speed * epoch)), 4)
            events.append((i + epoch * pace, i, epoch, {"val_acc": acc, "n_params": size, "val_loss": 1 - acc}))
    return [(i, epoch, metrics) for _, i, epoch, metrics in sorted(events, key=lambda e: e[:3])]


def _optuna_decisions(spec: PruningSpec, events: list[Any], n_trials: int, budget: int) -> list[tuple[int, int]]:
    pruner = make_pruner(spec, max_epochs=budget, metrics=list(METRICS), modes=list(MODES))
    study = optuna.create_study(directions=["maximize", "minimize"], pruner=pruner)
    trials = [study.ask() for _ in range(n_trials)]  # trial numbers are the indices
    reporters = [OptunaReporter(t, METRICS[0], len(METRICS), budget) for t in trials]
    stopped: list[tuple[int, int]] = []
    done: set[int] = set()
    for i, epoch, metrics in events:
        if i in done:
            continue
        if reporters[i].report(epoch, metrics):
            stopped.append((i, epoch))
            study.tell(trials[i], state=TrialState.PRUNED)
            done.add(i)
        elif epoch == budget:
            study.tell(trials[i], [metrics["val_acc"], metrics["n_params"]])
            done.add(i)
    return stopped


def _ray_decisions(spec: PruningSpec, events: list[Any], n_trials: int, budget: int) -> list[tuple[int, int]]:
    from ray.tune.experiment import Trial

    from tunebridge.backends.ray._mo_scheduler import MoAshaScheduler
    from tunebridge.backends.ray._schedulers import TIME_ATTR, make_scheduler

    scheduler = make_scheduler(
        spec, max_epochs=budget, n_objectives=2, mode="max", space=Space({}), metrics=METRICS, modes=MODES
    )
    assert isinstance(scheduler, MoAshaScheduler)
    trials = [Trial("__fake", config={}, trial_id=f"t{i:03d}", stub=True) for i in range(n_trials)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    stopped: list[tuple[int, int]] = []
    done: set[int] = set()
    for i, epoch, metrics in events:
        if i in done or epoch == budget:  # RayReporter ends the trial at its budget epoch without reporting it
            continue
        if scheduler.on_trial_result(None, trials[i], {**metrics, TIME_ATTR: epoch}) == "STOP":
            stopped.append((i, epoch))
            done.add(i)
    return stopped


@pytest.mark.parametrize("policy", ["asha", "hyperband"])
@pytest.mark.parametrize("tie_break", ["epsilon_net", "crowding"])
def test_the_same_values_get_the_same_decisions_on_both_backends(policy: str, tie_break: str) -> None:
    pytest.importorskip("ray.tune")
    n_trials, budget = 30, 9
    spec = PruningSpec(policy=policy, grace_period=1, reduction_factor=3, tie_break=tie_break)  # type: ignore[arg-type]
    for seed in range(3):
        events = _events(n_trials, budget, seed)
        on_optuna = _optuna_decisions(spec, events, n_trials, budget)
        on_ray = _ray_decisions(spec, events, n_trials, budget)
        assert on_optuna == on_ray
        assert 0 < len(on_optuna) < n_trials  # some stopped at a rung, some ran to the budget
        assert {epoch for _, epoch in on_optuna} <= {1, 3}
