"""Space: construction rules, the walk (conditions, per-layer copies), validate/errors, composition."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tunebridge.errors import SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Param, Scalar, Space

# (id, constructor, the exact message)
SPACE_RULES: list[tuple[str, Callable[[], Any], str]] = [
    (
        "when-missing-parent-with-suggestion",
        lambda: Space(optimizer=Choice(["sgd"]), momentum=Float(0, 1, when={"optimzer": "sgd"})),
        "momentum.when: `when` names a parameter that does not exist, but got 'optimzer'. Did you mean 'optimizer'?",
    ),
    (
        "when-missing-parent",
        lambda: Space(momentum=Float(0, 1, when={"zzz": "sgd"})),
        "momentum.when: `when` names a parameter that does not exist, but got 'zzz'. Declare the parent parameter too.",
    ),
    (
        "when-value-never-taken-choice",
        lambda: Space(optimizer=Choice(["sgd", "adam"]), momentum=Float(0, 1, when={"optimizer": ["sgd", "rmsprop"]})),
        "momentum.when: `when['optimizer']` lists a value 'optimizer' can never take, but got 'rmsprop'. Use one of ['sgd', 'adam'].",
    ),
    (
        "when-value-never-taken-int",
        lambda: Space(n=Int(1, 3), x=Bool(when={"n": 4})),
        "x.when: `when['n']` lists a value 'n' can never take, but got 4. Use an integer from 1 to 3.",
    ),
    (
        "when-value-off-the-int-step",
        lambda: Space(n=Int(0, 8, step=4), x=Bool(when={"n": 2})),
        "x.when: `when['n']` lists a value 'n' can never take, but got 2. Use an integer from 0 to 8 on a step of 4.",
    ),
    (
        "when-float-for-an-int",
        lambda: Space(n=Int(1, 3), x=Bool(when={"n": 2.0})),
        "x.when: `when['n']` lists a value 'n' can never take, but got 2.0. Use an integer from 1 to 3.",
    ),
    (
        "when-1-for-a-bool",
        lambda: Space(b=Bool(), x=Bool(when={"b": 1})),
        "x.when: `when['b']` lists a value 'b' can never take, but got 1. Use one of [False, True].",
    ),
    (
        "when-string-true-for-a-bool",
        lambda: Space(b=Bool(), x=Bool(when={"b": "true"})),
        "x.when: `when['b']` lists a value 'b' can never take, but got 'true'. Use one of [False, True].",
    ),
    (
        "when-outside-a-float",
        lambda: Space(f=Float(0, 1), x=Bool(when={"f": 2.0})),
        "x.when: `when['f']` lists a value 'f' can never take, but got 2.0. Use a number from 0.0 to 1.0.",
    ),
    (
        "when-itself",
        lambda: Space(x=Bool(when={"x": True})),
        "x.when: a parameter cannot be conditioned on itself, but got 'x'. Name another parameter.",
    ),
    (
        "when-per-layer-parent",
        lambda: Space(n=Int(1, 2), u=Int(1, 2, per_layer="n"), x=Bool(when={"u": 1})),
        "x.when: `when` cannot name a per-layer parameter, but got 'u'. Condition on a parameter that is not repeated.",
    ),
    (
        "cycle-of-two",
        lambda: Space(a=Bool(when={"b": True}), b=Bool(when={"a": True})),
        "a.when: conditions must not form a cycle, but got a -> b -> a. Remove one of the conditions in the loop.",
    ),
    (
        "cycle-of-three",
        lambda: Space(a=Bool(when={"c": True}), b=Bool(when={"a": True}), c=Bool(when={"b": True})),
        "a.when: conditions must not form a cycle, but got a -> c -> b -> a. Remove one of the conditions in the loop.",
    ),
    (
        "cycle-behind-a-tree",
        lambda: Space(r=Bool(), a=Bool(when={"r": True, "b": True}), b=Bool(when={"a": True})),
        "a.when: conditions must not form a cycle, but got a -> b -> a. Remove one of the conditions in the loop.",
    ),
    (
        "per-layer-missing-count",
        lambda: Space(n_layers=Int(1, 2), u=Int(1, 2, per_layer="n_layer")),
        "u.per_layer: `per_layer` names a parameter that does not exist, but got 'n_layer'. Did you mean 'n_layers'?",
    ),
    (
        "per-layer-on-a-float",
        lambda: Space(n=Float(1, 2), u=Int(1, 2, per_layer="n")),
        "u.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'n' (Float(low=1.0, high=2.0)). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "per-layer-on-a-string-choice",
        lambda: Space(n=Choice(["a"]), u=Int(1, 2, per_layer="n")),
        "u.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'n' (Choice(['a'])). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "per-layer-on-a-bool",
        lambda: Space(n=Bool(), u=Int(1, 2, per_layer="n")),
        "u.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'n' (Bool()). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "per-layer-on-a-negative-int",
        lambda: Space(n=Int(-1, 2), u=Int(1, 2, per_layer="n")),
        "u.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'n' (Int(low=-1, high=2)). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "per-layer-on-itself",
        lambda: Space(u=Int(1, 2, per_layer="u")),
        "u.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'u' (Int(low=1, high=2)). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "per-layer-on-a-per-layer",
        lambda: Space(n=Int(1, 2), m=Int(1, 2, per_layer="n"), u=Int(1, 2, per_layer="m")),
        "u.per_layer: `per_layer` must name a non-repeated int parameter whose values are all >= 0, but got 'm' (Int(low=1, high=2)). Point it at an Int (or a Choice/Fixed of ints) such as n_layers.",
    ),
    (
        "per-layer-count-too-large",
        lambda: Space(n=Int(1, 10**6), u=Int(1, 2, per_layer="n")),
        "u.per_layer: a layer count must stay <= 1024, but got 'n' up to 1000000. Lower the largest value of 'n'.",
    ),
    (
        "name-with-a-space",
        lambda: Space({"my lr": Float(0, 1)}),
        "parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-', but got 'my lr'. Rename it ('/' is reserved for per-layer copies).",
    ),
    (
        "name-with-a-slash",
        lambda: Space({"units/0": Float(0, 1)}),
        "parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-', but got 'units/0'. Rename it ('/' is reserved for per-layer copies).",
    ),
    (
        "name-with-a-newline",
        lambda: Space({"lr\n": Float(0, 1)}),
        "parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-', but got 'lr\\n'. Rename it ('/' is reserved for per-layer copies).",
    ),
    (
        "name-not-a-string",
        lambda: Space({1: Float(0, 1)}),
        "parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-', but got 1. Rename it ('/' is reserved for per-layer copies).",
    ),
    (
        "name-twice",
        lambda: Space({"lr": Float(0, 1)}, lr=Float(0, 2)),
        "lr: parameter names must be unique, but got 'lr'. Rename one of them.",
    ),
    (
        "not-a-param",
        lambda: Space(lr=0.1),
        "lr: a parameter must be Int, Float, Choice, Bool or Fixed, but got float. Wrap the value, e.g. Fixed(3) or Choice([...]).",
    ),
    (
        "not-a-mapping",
        lambda: Space([Float(0, 1)]),
        "space: a space takes a mapping of names to parameters, but got list. Write Space({'lr': Float(...)}) or Space(lr=Float(...)).",
    ),
    (
        "add-conflict",
        lambda: Space(lr=Float(0, 1)) + Space(lr=Float(0, 2)),
        "lr: both spaces define this parameter differently, but got {'high': 1.0, 'low': 0.0, 'type': 'float'} vs {'high': 2.0, 'low': 0.0, 'type': 'float'}. Use .replace() or .without() first.",
    ),
    (
        "add-conflict-on-json-type",
        lambda: Space(seed=Fixed(1)) + Space(seed=Fixed(True)),
        "seed: both spaces define this parameter differently, but got {'type': 'fixed', 'value': 1} vs {'type': 'fixed', 'value': True}. Use .replace() or .without() first.",
    ),
    (
        "without-unknown",
        lambda: Space(lr=Float(0, 1)).without("learning_rate"),
        "learning_rate: cannot remove a parameter that does not exist, but got 'learning_rate'. Known parameters: lr.",
    ),
    (
        "without-typo",
        lambda: Space(dropout=Float(0, 1)).without("dropuot"),
        "dropuot: cannot remove a parameter that does not exist, but got 'dropuot'. Did you mean 'dropout'?",
    ),
    (
        "without-a-parent-alone",
        lambda: Space(o=Choice(["a"]), m=Bool(when={"o": "a"})).without("o"),
        "m: cannot remove 'o' alone: 'm' depends on it, but got 'o'. Remove 'm' too, or replace it with a version that does not refer to 'o'.",
    ),
    (
        "without-a-count-alone",
        lambda: Space(n=Int(1, 2), u=Int(1, 2, per_layer="n")).without("n"),
        "u: cannot remove 'n' alone: 'u' depends on it, but got 'n'. Remove 'u' too, or replace it with a version that does not refer to 'n'.",
    ),
]


@pytest.mark.parametrize(("make", "message"), [(m, msg) for _, m, msg in SPACE_RULES], ids=[c[0] for c in SPACE_RULES])
def test_space_rule(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        make()
    assert str(info.value) == message


SPACE = Space(
    n_layers=Int(1, 3),
    units=Int(8, 64, log=True, per_layer="n_layers"),
    optimizer=Choice(["sgd", "adam", "rmsprop"]),
    momentum=Float(0.5, 0.99, when={"optimizer": ["sgd", "rmsprop"]}),
    nesterov=Bool(when={"optimizer": "sgd"}),
    seed=Fixed(7),
)


def _first(key: str, p: Param) -> Scalar:
    values = p.enumerate()
    return p.low if isinstance(p, Float) and values is None else (values or ())[0]  # type: ignore[attr-defined]


def _scripted(**choices: Scalar) -> Callable[[str, Param], Scalar]:
    def draw(key: str, p: Param) -> Scalar:
        return choices[key] if key in choices else _first(key, p)

    return draw


def test_walk_follows_conditions_and_per_layer_counts() -> None:
    calls: list[str] = []

    def draw(key: str, p: Param) -> Scalar:
        calls.append(key)
        return _scripted(n_layers=2, optimizer="adam")(key, p)

    config = SPACE.walk(draw)
    assert config == {"n_layers": 2, "units/0": 8, "units/1": 8, "optimizer": "adam", "seed": 7}
    assert calls == ["n_layers", "units/0", "units/1", "optimizer"]  # Fixed is filled in without a draw
    sgd = SPACE.walk(_scripted(n_layers=1, optimizer="sgd", nesterov=True))
    assert sgd == {"n_layers": 1, "units/0": 8, "optimizer": "sgd", "momentum": 0.5, "nesterov": True, "seed": 7}
    assert set(SPACE.walk(_scripted(optimizer="rmsprop"))) == {"n_layers", "units/0", "optimizer", "momentum", "seed"}


def test_sampling_order_puts_parents_first_whatever_the_declaration_order() -> None:
    space = Space(
        momentum=Float(0.5, 0.9, when={"optimizer": "sgd"}),
        units=Int(8, 16, per_layer="n_layers"),
        optimizer=Choice(["sgd", "adam"]),
        n_layers=Int(1, 2),
    )
    assert space.names == ("momentum", "units", "optimizer", "n_layers")
    assert space.order == ("optimizer", "momentum", "n_layers", "units")


def test_a_long_chain_of_conditions_does_not_recurse() -> None:
    params: dict[str, Param] = {"p0": Bool()}
    for i in range(1, 1500):  # beyond the default recursion limit
        params[f"p{i}"] = Bool(when={f"p{i - 1}": True})
    space = Space(params)
    assert space.order[:3] == ("p0", "p1", "p2")
    assert len(space.walk(lambda k, p: True)) == 1500
    assert len(space.walk(lambda k, p: False)) == 1
    assert len(space.grid()) == 1501


def test_per_layer_copies_of_a_conditional_count_exist_only_when_the_count_does() -> None:
    space = Space(deep=Bool(), n_extra=Int(1, 3, when={"deep": True}), extra=Int(4, 8, per_layer="n_extra"))
    assert space.walk(_scripted(deep=False)) == {"deep": False}
    assert space.walk(_scripted(deep=True, n_extra=2)) == {"deep": True, "n_extra": 2, "extra/0": 4, "extra/1": 4}
    space.validate({"deep": False})
    assert space.errors({"deep": False, "extra/0": 4}) == [
        "'extra/0' is present but inactive in this config; remove it"
    ]
    assert len(space.grid()) == 1 + 5 + 25 + 125


def test_a_count_may_be_a_choice_or_fixed_of_ints() -> None:
    space = Space(n=Choice([0, 2]), u=Bool(per_layer="n"), k=Fixed(1), v=Bool(per_layer="k"))
    assert space.max_layers("u") == 2 and space.max_layers("v") == 1
    assert space.walk(_scripted(n=0)) == {"n": 0, "k": 1, "v/0": False}
    assert len(space.grid()) == (1 + 4) * 2


@pytest.mark.parametrize(
    ("config", "problems"),
    [
        ({"n_layers": 2, "units/0": 8, "units/1": 9, "optimizer": "adam", "seed": 7}, []),
        (
            {"n_layers": 2, "units/0": 8, "units/1": 99, "optimizer": "adam", "momentum": 0.6, "seed": 7},
            [
                "'units/1' = 99 is not a value of Int(low=8, high=64)",
                "'momentum' is present but inactive in this config; remove it",
            ],
        ),
        (
            {"n_layers": 5, "units/0": 8, "optimizer": "sgd", "nesterov": False, "seed": 7},
            [
                "'n_layers' = 5 is not a value of Int(low=1, high=3)",
                "'momentum' is missing (it is active in this config); add a value for it",
            ],
        ),
        (
            {"n_layers": 10**9, "optimizer": "adam", "seed": 7},  # a huge count is judged, never expanded
            ["'n_layers' = 1000000000 is not a value of Int(low=1, high=3)"],
        ),
        (
            {"n_layers": 1, "units": 8, "optimizer": "adam", "seed": 7},
            [
                "'units/0' is missing (it is active in this config); add a value for it",
                "'units' is repeated per layer; name its copies units/0, units/1, ...",
            ],
        ),
        (
            {"n_layers": 1, "units/0": 8, "optimizer": "adam", "seed": 7, "optimizer/0": "sgd", "lrr": 1, 3: 4},
            [
                "'optimizer/0' is not a parameter of this space ('optimizer' is not repeated per layer)",
                "'lrr' is not a parameter of this space",
                "3 is not a parameter name (names are strings)",
            ],
        ),
        (
            {"n_layers": 1, "units/0": 8, "optimizer": "sgdd", "momentum": 0.7, "seed": 7},  # momentum is not judged
            ["'optimizer' = 'sgdd' is not a value of Choice(['sgd', 'adam', 'rmsprop'])"],
        ),
        (
            {"n_layers": 1, "units/0": 8, "optimizer": "adam", "seed": 7.0},
            ["'seed' = 7.0 is not a value of Fixed(7)"],
        ),
        (
            {"n_layers": 1, "units/0": 8, "optimizer": "adam", "seed": 7, "momentun": 0.5},
            ["'momentun' is not a parameter of this space; Did you mean 'momentum'?"],
        ),
    ],
    ids=[
        "valid",
        "out-of-range-and-inactive",
        "bad-count-and-missing",
        "huge-count",
        "per-layer-unsplit",
        "unknown-keys",
        "bad-parent",
        "json-type",
        "typo",
    ],
)
def test_errors_lists_every_problem(config: dict[Any, Any], problems: list[str]) -> None:
    assert SPACE.errors(config) == problems
    if problems:
        with pytest.raises(SchemaError, match=r"^config: the config does not fit the space, but got ") as info:
            SPACE.validate(config)
        assert str(info.value).endswith(". Fix the listed values (tunebridge check SPEC shows each parameter's range).")
        assert "; ".join(problems) in str(info.value)
    else:
        SPACE.validate(config)


def test_errors_refuses_a_config_that_is_not_a_mapping() -> None:
    assert SPACE.errors([("n_layers", 1)]) == ["a config must be a mapping of parameter names to values, not list"]  # type: ignore[arg-type]


def test_replace_narrows_dependents_to_what_their_parent_can_still_take() -> None:
    space = SPACE.replace(optimizer=Choice(["adam", "sgd"]))
    assert space["momentum"] == Float(0.5, 0.99, when={"optimizer": "sgd"})
    assert space["nesterov"] == SPACE["nesterov"]
    gone = SPACE.replace(optimizer=Choice(["adam"]))  # momentum and nesterov can never be active: they go
    assert gone.names == ("n_layers", "units", "optimizer", "seed")
    fewer = SPACE.replace(n_layers=Int(1, 2))
    assert fewer["units"] == SPACE["units"]


def test_replace_cascades_and_takes_explicit_params_as_given() -> None:
    space = Space(
        a=Choice(["x", "y"]), b=Choice([1, 2], when={"a": "y"}), c=Bool(when={"b": 1}), d=Int(0, 2, per_layer="b")
    )
    assert space.replace(a=Choice(["x"])).names == ("a",)
    with pytest.raises(
        SchemaError,
        match=r"^b\.when: `when\['a'\]` lists a value 'a' can never take, but got 'y'\. Use one of \['x'\]\.$",
    ):
        space.replace(a=Choice(["x"]), b=Choice([1, 2], when={"a": "y"}))


def test_replace_adds_new_parameters_last_and_add_merges() -> None:
    space = Space(a=Bool()).replace(b=Fixed(1), a=Bool())
    assert space.names == ("a", "b")
    merged = Space(a=Bool(), b=Fixed(1)) + Space(b=Fixed(1), c=Int(1, 2))
    assert merged.names == ("a", "b", "c")
    assert merged.without("b", "c") == Space(a=Bool())


def test_introspection() -> None:
    assert len(SPACE) == 6 and "units" in SPACE and "units/0" not in SPACE and list(SPACE) == list(SPACE.names)
    assert SPACE.is_conditional() and not Space(a=Bool()).is_conditional()
    assert SPACE.always_active("optimizer") and not SPACE.always_active("momentum") and not SPACE.always_active("units")
    assert SPACE.max_layers("units") == 3
    with pytest.raises(ValueError, match=r"'optimizer' is not a per-layer parameter"):
        SPACE.max_layers("optimizer")
    assert repr(Space(a=Fixed(1))) == "Space(a=Fixed(when=(), per_layer=None, value=1))"
    assert SPACE == Space(dict(SPACE.items())) and hash(SPACE) == hash(Space(dict(SPACE.items())))
    assert SPACE != Space(dict(reversed(SPACE.items())))  # declaration order is part of a space
    assert SPACE != object()


def test_the_docstring_example_space_builds() -> None:
    space = Space(
        n_layers=Int(1, 3),
        units=Int(16, 128, log=True, per_layer="n_layers"),
        optimizer=Choice(["sgd", "adam"]),
        momentum=Float(0.0, 0.99, when={"optimizer": "sgd"}),
    )
    assert space.order == ("n_layers", "units", "optimizer", "momentum")
