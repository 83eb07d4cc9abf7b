"""hydra-optuna-sweeper's search syntax read without the sweeper (issue 19): each value as the sweeper samples
it, both bounds inclusive; checked against Hydra's own override parser, and against the sweeper's own reading
when hydra-optuna-sweeper is importable (it pins optuna<3, so not in tunebridge's environment)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tunebridge._overrides import override_value, primitive
from tunebridge.schema import Space
from tunebridge.spec._hydra_sweep import SweepSyntaxError, parse_sweep

CASES: list[tuple[str, dict[str, Any]]] = [
    ("interval(0.1, 0.5)", {"type": "float", "low": 0.1, "high": 0.5}),
    ("interval(1, 5)", {"type": "float", "low": 1.0, "high": 5.0}),  # Hydra reads interval bounds as floats
    ("interval(end=2, start=1)", {"type": "float", "low": 1.0, "high": 2.0}),
    ("int(interval(1, 5))", {"type": "int", "low": 1, "high": 5}),
    ("tag(log, interval(0.0001, 0.1))", {"type": "float", "low": 0.0001, "high": 0.1, "log": True}),
    ("tag(log, int(interval(8, 64)))", {"type": "int", "low": 8, "high": 64, "log": True}),
    ("int(tag(log, interval(8, 64)))", {"type": "int", "low": 8, "high": 64, "log": True}),
    ("range(1, 5)", {"type": "int", "low": 1, "high": 5}),  # Optuna's high is inclusive: 5 is sampled
    ("range(5)", {"type": "int", "low": 0, "high": 5}),
    ("range(start=2, stop=10, step=4)", {"type": "int", "low": 2, "high": 10, "step": 4}),
    ("range(32, 129, 32)", {"type": "int", "low": 32, "high": 128, "step": 32}),  # Optuna's adjusted high
    ("range(0.1, 0.5, 0.1)", {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1}),
    ("float(range(1, 3))", {"type": "float", "low": 1.0, "high": 3.0, "step": 1.0}),
    ("choice(32, 64, 128)", {"type": "choice", "values": [32, 64, 128]}),
    ("32,64", {"type": "choice", "values": [32, 64]}),
    ("choice(adam, sgd)", {"type": "choice", "values": ["adam", "sgd"]}),
    ("choice('a b', \"c\")", {"type": "choice", "values": ["a b", "c"]}),
    ("choice(true, false)", {"type": "choice", "values": [True, False]}),
    ("choice(1e-3, 1.5)", {"type": "choice", "values": [0.001, 1.5]}),
    ("sort(choice(3, 1, 2))", {"type": "choice", "values": [1, 2, 3]}),
    ("sort(choice(3, 1, 2), reverse=true)", {"type": "choice", "values": [3, 2, 1]}),
    ("tag(foo, interval(1, 2))", {"type": "float", "low": 1.0, "high": 2.0}),  # the sweeper reads only `log`
]


@pytest.mark.parametrize(("text", "param"), CASES, ids=[c[0] for c in CASES])
def test_each_sweep_reads_as_the_sweeper_samples_it(text: str, param: dict[str, Any]) -> None:
    sweep = parse_sweep(text)
    assert sweep.param == param
    Space.from_dict({"x": sweep.param})  # a valid tunebridge parameter


@pytest.mark.parametrize(
    ("value", "fixed"),
    [("adam", "adam"), (5, "5"), (0.5, "0.5"), (True, "true"), (None, "null"), ("${oc.env:A,b}", "${oc.env:A,b}")],
)
def test_a_plain_value_is_the_same_override_in_every_trial(value: object, fixed: str) -> None:
    sweep = parse_sweep(value)
    assert sweep.param is None and sweep.fixed == fixed


def test_a_range_that_reaches_its_stop_says_where_hydras_own_reading_differs() -> None:
    assert "Hydra's own basic sweeper stops before 5" in parse_sweep("range(1, 5)").note
    assert parse_sweep("range(32, 129, 32)").note == ""  # 129 is not on the grid: both readings stop at 128


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("shuffle(range(1, 4))", r"shuffle\(...\) is not carried: .*write choice"),
        ("glob(*)", r"glob\(...\) is not carried"),
        ("str(choice(1, 2))", r"str\(...\) is not carried: write choice\(...\) with quoted values"),
        ("choice([1, 2], [3])", "a list or mapping as a swept value"),
        ("choice(1, null)", "choice values must be numbers, true/false or strings"),
        ("tag(log, range(1, 5))", r"the sweeper ignores tag\(log, ...\) on range"),
        ("tag(log, choice(1, 2))", r"the sweeper ignores tag\(log, ...\) on choice"),
        ("tag(log, interval(0, 1))", "needs start > 0"),
        ("interval(2, 1)", "has start > end: swap them"),
        ("range(1, 10, -1)", "is empty for the sweeper"),
        ("int(interval(1.5, 5))", "would drop its fraction"),
        ("interval(a, 2)", r"interval\(...\) takes numbers"),
        ("frobnicate(1, 2)", r"unknown sweep function frobnicate"),
        ("choice(1,", "a value is missing"),
        ("choice(1, 2) extra", "unexpected text"),
    ],
)
def test_syntax_it_cannot_carry_is_refused_with_what_to_write(text: str, match: str) -> None:
    with pytest.raises(SweepSyntaxError, match=match):
        parse_sweep(text)


@pytest.mark.parametrize(
    "value", [0.0012, 1e-05, 64, -3, True, False, None, "adam", "a b", "64", "true", "it's", "x,y", "${paths.x}"]
)
def test_override_values_read_back_as_the_same_value(value: object) -> None:
    hydra = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    parsed = hydra.OverridesParser.create().parse_override(f"key={override_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


def test_unquoted_words_are_typed_as_hydra_types_them() -> None:
    hydra = pytest.importorskip("hydra.core.override_parser.overrides_parser")
    parser = hydra.OverridesParser.create()
    for word in ("64", "-3", "1_000", "1e-3", "1.", ".5", "inf", "True", "NULL", "adam", "0x10", "a.b/c"):
        ours, theirs = primitive(word), parser.parse_override(f"k={word}").value()
        assert ours == theirs or (isinstance(ours, float) and math.isnan(ours) and math.isnan(theirs)), word
        assert type(ours) is type(theirs), word


def _values(param: dict[str, Any]) -> Any:
    """A parameter's value set: the values of a discrete one, (low, high, log, int) of a continuous one."""
    space = Space.from_dict({"x": param})
    p = space["x"]
    if param["type"] == "choice":
        return sorted(param["values"], key=repr)
    if param.get("step") is not None or (param["type"] == "int" and not param.get("log")):
        return [round(v, 12) for v in p.enumerate()]  # type: ignore[attr-defined]
    return (param["low"], param["high"], bool(param.get("log")), param["type"] == "int")


def _hydra_values(text: str) -> Any:
    """The same value set from Hydra's own parser, with hydra-optuna-sweeper 1.3's rules (its _impl.py)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    override = OverridesParser.create().parse_override(f"x={text}")
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return sorted(override.sweep_iterator(), key=repr)
    if isinstance(value, RangeSweep):
        # the sweeper: IntUniformDistribution / DiscreteUniformDistribution(start, stop, step), high inclusive
        start, stop, step = value.start, value.stop, value.step
        n = math.floor((stop - start) / step + 1e-9)
        return [round(start + i * step, 12) for i in range(n + 1)]
    assert isinstance(value, IntervalSweep)
    is_int = isinstance(value.start, int) and isinstance(value.end, int)
    if is_int and "log" not in value.tags:  # IntUniformDistribution(start, end): every integer, both ends
        return list(range(value.start, value.end + 1))
    return (value.start, value.end, "log" in value.tags, is_int)


@pytest.mark.parametrize("text", [c[0] for c in CASES if not c[0].startswith(("sort", "tag(foo"))])
def test_the_value_set_is_the_one_hydras_parser_and_the_sweepers_rules_give(text: str) -> None:
    pytest.importorskip("hydra")
    assert _values(parse_sweep(text).param or {}) == _hydra_values(text)


@pytest.mark.filterwarnings("ignore:The distribution is specified by")  # Optuna moves high onto the grid, as we do
@pytest.mark.parametrize("text", [c[0] for c in CASES])
def test_the_value_set_is_the_sweepers_own(text: str) -> None:
    # Only where hydra-optuna-sweeper imports (benchmarks/bench_hydra.py's separate environment, optuna<3).
    impl = pytest.importorskip("hydra_plugins.hydra_optuna_sweeper._impl", reason="hydra-optuna-sweeper pins optuna<3")
    distributions, _ = impl.create_params_from_overrides([f"x={text}"])
    d = distributions["x"]
    if hasattr(d, "choices"):
        theirs: Any = sorted(d.choices, key=repr)
    elif getattr(d, "q", None) or type(d).__name__ == "IntUniformDistribution":
        step = getattr(d, "step", None) or getattr(d, "q", None) or 1
        n = math.floor((d.high - d.low) / step + 1e-9)
        theirs = [round(d.low + i * step, 12) for i in range(n + 1)]
    else:
        theirs = (d.low, d.high, "Log" in type(d).__name__, "Int" in type(d).__name__)
    assert _values(parse_sweep(text).param or {}) == theirs
