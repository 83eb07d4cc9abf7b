"""The YAML codec: safe loading with positions, strict keys with suggestions, exact round trips."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from tunebridge.errors import SchemaError
from tunebridge.schema import Bool, Choice, Fixed, Float, Int, Space, load_yaml
from tunebridge.schema._codec import dump_yaml, param_from_dict


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-4", 1e-4),
        ("1.5e3", 1500.0),
        ("-2E+2", -200.0),
        ("1.0e-3", 1e-3),
        ("0.5", 0.5),
        ("'1e-4'", "1e-4"),
        ("1_000", 1000),
        ("0x1F", 31),
        ("true", True),
        ("~", None),
        ("e5", "e5"),
    ],
)
def test_scalars_read_as_people_mean_them(text: str, value: Any) -> None:
    got = load_yaml(f"x: {text}")["x"]
    assert got == value and type(got) is type(value)


def test_nan_and_inf_load_and_are_then_refused_by_the_schema() -> None:
    assert math.isnan(load_yaml("x: .nan")["x"]) and load_yaml("x: -.inf")["x"] == -math.inf
    with pytest.raises(
        SchemaError, match=re.escape("space.lr.high: `high` of a float parameter must be a finite number, but got inf.")
    ):
        Space.from_yaml("lr: {type: float, low: 0, high: .inf}")


@pytest.mark.parametrize(
    "value",
    [
        "1e3",
        "1.5e3",
        "-1E-4",
        ".5",
        "true",
        "False",
        "yes",
        "off",
        "null",
        "~",
        "0x1F",
        "1_000",
        "12:30",
        "",
        " lead",
        "a: b",
        "#c",
        "- x",
        "é",
        "\t",
        "line\nbreak",
        "'",
        '"',
        "*x",
        "&x",
        "!tag",
        "2024-01-01",
        "3.",
        "+1",
        "\u2028",
    ],
)
def test_every_string_survives_the_dumper_and_the_loader(value: str) -> None:
    assert load_yaml(dump_yaml({"v": value})) == {"v": value}
    space = Space(a=Choice([value, 1]), b=Fixed(value))
    assert Space.from_yaml(space.to_yaml()) == space


def test_to_yaml_is_readable() -> None:
    space = Space(
        lr=Float(1e-4, 1e-1, log=True), units=Int(8, 64, per_layer="n"), n=Int(1, 2), act=Choice(["relu", "tanh"])
    )
    assert space.to_yaml() == (
        "lr: {type: float, low: 0.0001, high: 0.1, log: true}\n"
        "units: {type: int, low: 8, high: 64, per_layer: n}\n"
        "n: {type: int, low: 1, high: 2}\n"
        "act:\n"
        "  type: choice\n"
        "  values: [relu, tanh]\n"
    )


# (id, YAML text, the exact message); the document is loaded with where="space.yaml"
LOADER_ERRORS: list[tuple[str, str | bytes, str]] = [
    (
        "duplicate-key",
        "lr: {type: float, low: 0.1, high: 1}\nlr: {type: int, low: 1, high: 2}\n",
        "space.yaml: a key appears twice in one mapping at line 2, column 1, but got 'lr'. Remove one of them (YAML would silently keep the last).",
    ),
    (
        "duplicate-inner-key",
        "lr: {type: float, low: 0.1, low: 1}\n",
        "space.yaml: a key appears twice in one mapping at line 1, column 29, but got 'low'. Remove one of them (YAML would silently keep the last).",
    ),
    (
        "python-object-tag",
        "lr: !!python/object/apply:os.system ['echo hi']\n",
        "space.yaml: YAML tags that build objects are not allowed at line 1, column 5, but got 'tag:yaml.org,2002:python/object/apply:os.system'. Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
    ),
    (
        "python-name-tag",
        "lr: !!python/name:os.system\n",
        "space.yaml: YAML tags that build objects are not allowed at line 1, column 5, but got 'tag:yaml.org,2002:python/name:os.system'. Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
    ),
    (
        "local-tag",
        "lr: !Ref foo\n",
        "space.yaml: YAML tags that build objects are not allowed at line 1, column 5, but got '!Ref'. Remove the tag: a spec holds plain data (mappings, lists, strings, numbers, true/false, null).",
    ),
    (
        "int-beyond-4300-digits",
        "lr: " + "9" * 5000 + "\n",
        "space.yaml: cannot read a YAML value as int at line 1, column 5, but got '9999999999999999999999999999999999999...99999999999999999999999999999999999999'. Quote it to make it a string, or write a valid int.",
    ),
    (
        "impossible-date",
        "lr: 2024-13-45\n",
        "space.yaml: cannot read a YAML value as timestamp at line 1, column 5, but got '2024-13-45'. Quote it to make it a string, or write a valid timestamp.",
    ),
    (
        "bad-int-tag",
        "lr: !!int abc\n",
        "space.yaml: cannot read a YAML value as int at line 1, column 5, but got 'abc'. Quote it to make it a string, or write a valid int.",
    ),
    (
        "bad-bool-tag",
        "lr: !!bool maybe\n",
        "space.yaml: cannot read a YAML value as bool at line 1, column 5, but got 'maybe'. Quote it to make it a string, or write a valid bool.",
    ),
    (
        "bad-timestamp-tag",
        "lr: !!timestamp nope\n",
        "space.yaml: cannot read a YAML value as timestamp at line 1, column 5, but got 'nope'. Quote it to make it a string, or write a valid timestamp.",
    ),
    (
        "map-tag-on-scalar",
        "lr: !!map abc\n",
        "space.yaml: the YAML is malformed at line 1, column 5, but got expected a mapping node, but found scalar. Fix the YAML syntax.",
    ),
    (
        "control-character",
        "lr: \x07\n",
        "space.yaml: the file holds a character YAML does not allow, but got U+0007 at offset 4. Remove it; a spec is printable UTF-8 text.",
    ),
    (
        "nul-byte",
        "lr: 1\x00\n",
        "space.yaml: the file must be text, but got a NUL byte at offset 5. Pass a YAML text file.",
    ),
    (
        "unclosed-flow-mapping",
        "lr: {type: float\n",
        "space.yaml: the YAML is malformed at line 2, column 1, but got expected ',' or '}', but got '<stream end>'. Fix the YAML syntax.",
    ),
    (
        "tab-indentation",
        "lr:\n\t- 1\n",
        "space.yaml: the YAML is malformed at line 2, column 1, but got found character '\\t' that cannot start any token. Fix the YAML syntax.",
    ),
    (
        "list-as-key",
        "? [a, b]\n: 1\n",
        "space.yaml: the YAML is malformed at line 1, column 3, but got found unhashable key. Fix the YAML syntax.",
    ),
    (
        "two-documents",
        "a: 1\n---\nb: 2\n",
        "space.yaml: a spec holds one YAML document at line 2, column 1, but got a second one after ---. Remove the --- line.",
    ),
    (
        "undefined-alias",
        "a: *x\n",
        "space.yaml: the YAML is malformed at line 1, column 4, but got found undefined alias 'x'. Fix the YAML syntax.",
    ),
    (
        "duplicate-anchor",
        "a: &x 1\nb: &x 2\n",
        "space.yaml: YAML anchors must be unique at line 2, column 4, but got found duplicate anchor 'x'. Rename one of the anchors.",
    ),
    (
        "utf16",
        "a: 1".encode("utf-16"),
        "space.yaml: the file must be UTF-8 text, but got undecodable byte 0xff at offset 0. Save it as UTF-8 YAML.",
    ),
    (
        "latin1",
        "a: é\n".encode("latin-1"),
        "space.yaml: the file must be UTF-8 text, but got undecodable byte 0xe9 at offset 3. Save it as UTF-8 YAML.",
    ),
    (
        "too-large",
        "#" * 1_000_001,
        "space.yaml: the document is too large, but got 1000001 characters. Keep specs under 1000000 characters.",
    ),
    (
        "nested-flow",
        "[" * 10_000,
        "space.yaml: the document is nested too deeply at line 1, column 65, but got more than 64 levels. Flatten it; a spec needs only a few levels.",
    ),
    (
        "nested-flow-spaced",
        "[ " * 10_000,
        "space.yaml: the document is nested too deeply at line 1, column 129, but got more than 64 levels. Flatten it; a spec needs only a few levels.",
    ),
    (
        "nested-block",
        "- " * 10_000 + "x",
        "space.yaml: the document is nested too deeply at line 1, column 129, but got more than 64 levels. Flatten it; a spec needs only a few levels.",
    ),
    (
        "nested-through-aliases",
        "a: &a " + "[" * 60 + "1" + "]" * 60 + "\nb: " + "[" * 10 + "*a" + "]" * 10 + "\n",
        "space.yaml: the document is nested too deeply, but got more than 64 levels. Flatten it; a spec needs only a few levels.",
    ),
    (
        "recursive-alias",
        "a: &a [*a]\n",
        "space.yaml: the document contains itself through a YAML alias, but got a recursive alias. Remove the alias that points back into its own parent.",
    ),
    (
        "billion-laughs",
        "a: &a [x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "space.yaml: the document expands to too many values through YAML aliases, but got more than 1000000 values. Write the values out instead of repeating aliases of aliases.",
    ),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in LOADER_ERRORS], ids=[c[0] for c in LOADER_ERRORS])
def test_loader_refuses_with_a_position(text: str | bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        load_yaml(text, where="space.yaml")
    assert str(info.value) == message


def test_merge_keys_are_not_duplicates() -> None:
    data = load_yaml("base: &b {type: int, low: 1, high: 4}\nunits: {<<: *b, high: 8}\n")
    assert data["units"] == {"type": "int", "low": 1, "high": 8}


def test_a_shared_alias_is_fine() -> None:
    data = load_yaml("acts: &acts [relu, tanh]\na: {type: choice, values: *acts}\nb: {type: choice, values: *acts}\n")
    assert data["a"]["values"] == data["b"]["values"] == ["relu", "tanh"]


def test_a_bom_is_accepted() -> None:
    assert load_yaml(b"\xef\xbb\xbfa: 1") == {"a": 1}


# (id, parameter body, the exact message for a parameter named "units")
PARAM_DICT_ERRORS: list[tuple[str, Any, str]] = [
    (
        "typo-with-suggestion",
        {"type": "int", "low": 1, "hihg": 4},
        "units: unknown key, but got 'hihg'. Did you mean 'high'? Known keys: type, when, per_layer, low, high, step, log, grid.",
    ),
    (
        "key-of-another-kind",
        {"type": "int", "low": 1, "high": 4, "values": [1]},
        "units: unknown key, but got 'values'. Known keys: type, when, per_layer, low, high, step, log, grid.",
    ),
    ("non-string-key", {"type": "bool", 1: 2}, "units: unknown key, but got 1. Known keys: type, when, per_layer."),
    (
        "type-typo",
        {"type": "integr", "low": 1},
        "units.type: `type` must be one of int, float, choice, bool, fixed, but got 'integr'. Did you mean 'int'?",
    ),
    # Issue 8: one spelling per kind, the README's. Other spellings were accepted silently before.
    *(
        (
            f"undocumented-type-{word}",
            {"type": word, "low": 1, "high": 4},
            f"units.type: `type` must be one of int, float, choice, bool, fixed, but got {word!r}. Did you mean {kind!r}?",
        )
        for word, kind in [
            ("integer", "int"),
            ("INT", "int"),
            ("Int", "int"),
            ("FLOAT", "float"),
            ("categorical", "choice"),
            ("Choice", "choice"),
            ("boolean", "bool"),
            ("const", "fixed"),
            ("constant", "fixed"),
            (" int", "int"),
        ]
    ),
    (
        "no-type",
        {"low": 1},
        "units.type: `type` must be one of int, float, choice, bool, fixed, but got nothing. Add e.g. `type: float`.",
    ),
    (
        "type-not-a-string",
        {"type": 3},
        "units.type: `type` must be one of int, float, choice, bool, fixed, but got 3. Add e.g. `type: float`.",
    ),
    ("missing-high", {"type": "int", "low": 1}, "units: an int parameter needs `high`, but got nothing. Add `high:`."),
    ("missing-values", {"type": "choice"}, "units: a choice parameter needs `values`, but got nothing. Add `values:`."),
    (
        "bad-step",
        {"type": "int", "low": 1, "high": 10, "step": 4},
        "units.step: `step` must divide `high - low` so that both bounds are reachable, but got low=1, high=10, step=4. Use high=9 or another step.",
    ),
    (
        "inverted-bounds",
        {"type": "float", "low": 1, "high": 0},
        "units: `low <= high` must hold, but got low=1.0, high=0.0. Swap the bounds.",
    ),
    (
        "log-not-bool",
        {"type": "float", "low": 1, "high": 2, "log": "yes"},
        "units.log: `log` must be true or false, but got 'yes'. Write log: true or log: false.",
    ),
    (
        "when-a-string",
        {"type": "int", "low": 1, "high": 10, "when": "x"},
        """units.when: `when` must map a parent parameter to the value(s) that activate this one, but got 'x'. Write e.g. when={"optimizer": ["sgd", "rmsprop"]}.""",
    ),
    (
        "a-date",
        __import__("datetime").date(2020, 1, 1),
        "units: a parameter must be a mapping with a `type` (or a list of choices, or a fixed value), but got datetime.date(2020, 1, 1). Write e.g. {type: int, low: 1, high: 4}.",
    ),
    (
        "nan-shorthand",
        float("nan"),
        "units: a parameter must be a mapping with a `type` (or a list of choices, or a fixed value), but got nan. Write e.g. {type: int, low: 1, high: 4}.",
    ),
    (
        "empty-list-shorthand",
        [],
        "units.values: a choice needs at least one value, but got []. List the values, or use a fixed parameter.",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [(b, m) for _, b, m in PARAM_DICT_ERRORS], ids=[c[0] for c in PARAM_DICT_ERRORS]
)
def test_param_dict_errors_name_the_parameter(body: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        param_from_dict("units", body)
    assert str(info.value) == message


def test_from_yaml_prefixes_the_path() -> None:
    with pytest.raises(SchemaError, match=re.escape("space.units: unknown key, but got 'hihg'. Did you mean 'high'?")):
        Space.from_yaml("units: {type: int, low: 1, hihg: 4}")


@pytest.mark.parametrize(
    ("text", "space"),
    [
        ("a: [relu, tanh]", Space(a=Choice(["relu", "tanh"]))),
        ("a: 3", Space(a=Fixed(3))),
        ("a: null", Space(a=Fixed(None))),
        ("a: {type: choice, values: [1, 2]}", Space(a=Choice([1, 2]))),
        ("a: {type: int, low: 1, high: 2}", Space(a=Int(1, 2))),
        (
            "a: {type: bool}\nb: {type: fixed, value: x, when: {a: true}}",
            Space(a=Bool(), b=Fixed("x", when={"a": True})),
        ),
        ("a: {type: int, low: 1, high: 4, when: null, per_layer: null, grid: [1, 4]}", Space(a=Int(1, 4, grid=(1, 4)))),
        ("space:\n  lr: {type: float, low: 1e-4, high: 1e-1, log: true}", Space(lr=Float(1e-4, 1e-1, log=True))),
    ],
    ids=[
        "list-is-choice",
        "scalar-is-fixed",
        "null-is-fixed",
        "choice",
        "int",
        "bool-and-fixed",
        "nulls",
        "space-wrapper",
    ],
)
def test_from_yaml_forms(text: str, space: Space) -> None:
    assert Space.from_yaml(text) == space


@pytest.mark.parametrize(
    ("text", "word", "kind"),
    [
        # Issue 8: these were read as choice/int/bool/fixed although the README names one spelling per kind.
        ("a: {type: categorical, values: [1, 2]}", "categorical", "choice"),
        ("a: {type: Integer, low: 1, high: 2}", "Integer", "int"),
        ("a: {type: INT, low: 1, high: 2}", "INT", "int"),
        ("a: {type: boolean}", "boolean", "bool"),
        ("a: {type: const, value: x}", "const", "fixed"),
    ],
)
def test_from_yaml_accepts_only_the_documented_type_names(text: str, word: str, kind: str) -> None:
    message = (
        f"space.a.type: `type` must be one of int, float, choice, bool, fixed, but got {word!r}. Did you mean {kind!r}?"
    )
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        Space.from_yaml(text)
    assert str(info.value) == message


def test_from_yaml_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n")
    assert Space.from_yaml(path) == Space(lr=Float(1e-4, 0.1, log=True))
    path.write_text("lr: {type: float, low: 1, high: 0}\n")
    with pytest.raises(
        SchemaError, match=re.escape(f"{path}.lr: `low <= high` must hold, but got low=1.0, high=0.0. Swap the bounds.")
    ):
        Space.from_yaml(path)
    missing = tmp_path / "nope.yaml"
    with pytest.raises(
        SchemaError,
        match=re.escape(f"{missing}: cannot read the space file, but got No such file or directory. Check the path."),
    ):
        Space.from_yaml(missing)
    with pytest.raises(
        SchemaError, match=re.escape(f"{tmp_path}: cannot read the space file, but got Is a directory. Check the path.")
    ):
        Space.from_yaml(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "space: the document is empty, but got nothing. Add parameters."),
        ("# only a comment\n", "space: the document is empty, but got nothing. Add parameters."),
        (
            "[1, 2]",
            "space: a space must be a mapping of parameter names to definitions, but got list. Write e.g. `lr: {type: float, low: 1e-4, high: 0.1, log: true}`.",
        ),
        ("{}", "space: a space needs at least one parameter, but got {}. Add parameters or use a preset."),
        ("1: {type: bool}", "space: parameter names must be strings, but got 1. Quote the name."),
        (
            "my lr: {type: bool}",
            "space: parameter names must start with a letter or '_' and use letters, digits, '_', '.', '-', but got 'my lr'. Rename it ('/' is reserved for per-layer copies).",
        ),
    ],
)
def test_from_yaml_refuses_documents_that_are_no_space(text: str, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)) as info:
        Space.from_yaml(text)
    assert str(info.value) == message
