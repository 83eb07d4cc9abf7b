"""The layout rules of CONTRIBUTING.md, checked: dependency direction, one home per list, module size."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from pathlib import Path

import pytest

import tunebridge
from tunebridge import _vocab

SRC = Path(tunebridge.__file__).parent
MODULES = sorted(SRC.rglob("*.py"))


_MODULE_PATH = re.compile(r"tunebridge(\.[A-Za-z_]\w*)+")


def _imports(path: Path) -> set[str]:
    """Absolute imports of a module: top-level, inside functions, and by name in a string.

    A string that is a dotted ``tunebridge.…`` module path (an ``importlib.import_module`` argument, a lazy
    import table) counts as an import of it; an f-string counts by its constant start
    (``f"tunebridge.backends.{name}._sample"`` imports ``tunebridge.backends``). A private submodule
    imported from its package (``from tunebridge.x import _y``) counts as ``tunebridge.x._y``.
    """
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_PATH.fullmatch(node.value):
            out.add(node.value)
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str) and head.value.startswith("tunebridge."):
                out.add(head.value.rstrip("."))
    return out


def test_imports_are_read_from_functions_and_strings(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "def f(name):\n"
        "    from tunebridge.backends.optuna import _queue\n"
        "    importlib.import_module('tunebridge.backends.ray._run')\n"
        "    return importlib.import_module(f'tunebridge.backends.{name}._sample')\n"
        "HOMES = {'x': 'tunebridge.lightning._seed', 'doc': 'see tunebridge.schema for more'}\n"
    )
    assert _imports(module) == {
        "importlib",
        "tunebridge.backends.optuna",
        "tunebridge.backends.optuna._queue",
        "tunebridge.backends.ray._run",
        "tunebridge.backends",
        "tunebridge.lightning._seed",
    }


def _rel(path: Path) -> str:
    return str(path.relative_to(SRC))


@pytest.mark.parametrize("path", [p for p in MODULES if _rel(p).startswith("backends")], ids=_rel)
def test_backends_never_import_lightning(path: Path) -> None:
    lightning = {m for m in _imports(path) if m.split(".")[0] in ("lightning", "pytorch_lightning", "torch")}
    lightning |= {m for m in _imports(path) if m.startswith("tunebridge.lightning")}
    assert not lightning, f"{_rel(path)} imports {sorted(lightning)}"


@pytest.mark.parametrize("path", [p for p in MODULES if _rel(p).startswith("schema")], ids=_rel)
def test_the_schema_is_standard_library_only(path: Path) -> None:
    allowed = {"tunebridge.errors", "tunebridge._vocab", "tunebridge._rules", "tunebridge._hints"}
    outside = {
        m
        for m in _imports(path)
        if m.split(".")[0] not in sys.stdlib_module_names
        and m != "__future__"
        and m not in allowed
        and not m.startswith("tunebridge.schema")
        and m != "yaml"  # PyYAML, a core dependency, imported inside the YAML codec's functions only
    }
    assert not outside, f"{_rel(path)} imports {sorted(outside)}"


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{_rel(path)} has {lines} lines: it holds two ideas (CONTRIBUTING.md)"


def _runtime_imports(path: Path) -> set[str]:
    """Modules a module loads when run: its imports (``from a import b`` counted as ``a.b`` too), not those
    under ``if TYPE_CHECKING:``."""
    out: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return out


@pytest.mark.parametrize("path", [p for p in MODULES if _rel(p).startswith("lightning")], ids=_rel)
def test_lightning_takes_its_vocabularies_from_vocab(path: Path) -> None:
    upper = {
        m for m in _runtime_imports(path) if m.split(".")[:2] in (["tunebridge", "spec"], ["tunebridge", "presets"])
    }
    assert not upper, f"{_rel(path)} imports {sorted(upper)}: read the lists from tunebridge._vocab"


def test_ray_option_keys_are_the_fields_of_ray_options() -> None:
    pytest.importorskip("ray.tune")
    from tunebridge.backends.ray import RayOptions

    assert tuple(f.name for f in dataclasses.fields(RayOptions)) == _vocab.RAY_OPTION_KEYS


def test_lists_have_one_definition() -> None:
    from tunebridge import presets, spec
    from tunebridge.backends.optuna import SEARCH_ALGORITHMS
    from tunebridge.lightning import _networks, _training, data

    assert spec.SEARCH is SEARCH_ALGORITHMS is _vocab.SEARCH_ALGORITHMS
    assert spec.BUILTIN_MODELS is data.MODEL_KINDS is _vocab.BUILTIN_MODELS
    assert spec.BUILTIN_DATA is _vocab.BUILTIN_DATA
    assert presets.ACTIVATIONS is _networks.ACTIVATIONS is _vocab.ACTIVATIONS
    assert presets.OPTIMIZERS is _training.OPTIMIZERS is _vocab.OPTIMIZERS
    assert presets.SCHEDULES is _training.SCHEDULES is _vocab.SCHEDULES


def test_did_you_mean_has_one_home() -> None:
    users = [_rel(p) for p in MODULES if "difflib" in _imports(p)]
    assert users == ["_hints.py"]


def test_atomic_writes_have_one_home() -> None:
    users = [_rel(p) for p in MODULES if "os.replace(" in p.read_text()]
    assert users == ["_atomic.py"], "write through tunebridge._atomic.write_atomically"


def test_sys_path_is_changed_in_one_place() -> None:
    changes = ("sys.path.insert(", "sys.path.append(", "sys.path.remove(")
    users = [_rel(p) for p in MODULES if any(c in p.read_text() for c in changes)]
    # A Ray worker takes the driver's sys.path (appended, never first): the one other place.
    assert users == ["_imports.py", "backends/ray/_trainable.py"], "use tunebridge._imports.search_first"


@pytest.mark.parametrize("path", [p for p in MODULES if _rel(p).startswith(("backends/ray", "fused"))], ids=_rel)
def test_ray_and_fused_use_only_the_optuna_backends_public_names(path: Path) -> None:
    private = {m for m in _imports(path) if m.startswith("tunebridge.backends.optuna._")}
    assert not private, f"{_rel(path)} imports {sorted(private)}: import them from tunebridge.backends.optuna"


@pytest.mark.parametrize("path", [p for p in MODULES if _rel(p).startswith(("backends", "fused"))], ids=_rel)
def test_backends_announce_progress_without_importing_the_bar(path: Path) -> None:
    bar = {m for m in _imports(path) if m.startswith("tunebridge._progress") or m.split(".")[0] == "rich"}
    assert not bar, f"{_rel(path)} imports {sorted(bar)}: tell StudyEvents (backends/_base.py) instead"


@pytest.mark.parametrize("name", ["_rules.py", "_hints.py", "_vocab.py"])
def test_the_rules_every_layer_shares_are_standard_library_only(name: str) -> None:
    outside = {
        m
        for m in _imports(SRC / name)
        if m.split(".")[0] not in sys.stdlib_module_names
        and m != "__future__"
        and m not in {"tunebridge.errors", "tunebridge._vocab", "tunebridge._hints"}
    }
    assert not outside, f"{name} imports {sorted(outside)}"
