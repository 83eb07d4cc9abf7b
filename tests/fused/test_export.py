"""A fused member's checkpoint records the Lightning package its module's class derives from, and loads with it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from tunebridge.fused._export import save_member_checkpoint
from tunebridge.lightning.builtin import build_builtin

PROJECT = Path(__file__).parent.parent / "user_project" / "my_project.py"
PACKAGES = ["lightning.pytorch", "pytorch_lightning"]


def _project(package: str) -> ModuleType:
    """The user's project (tests/user_project) imported under ``package``: one module object per package."""
    name = f"my_project_{package.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    saved = os.environ.get("TB_LIGHTNING")
    os.environ["TB_LIGHTNING"] = package
    try:
        spec = importlib.util.spec_from_file_location(name, PROJECT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            os.environ.pop("TB_LIGHTNING", None)
        else:
            os.environ["TB_LIGHTNING"] = saved
    return module


def _user_module(package: str) -> Any:
    return _project(package).build({"lr": 0.1, "hidden": 8})[0]


def _builtin_module(package: str) -> Any:
    return build_builtin("mlp", "wine", {"n_layers": 1, "units/0": 8}, max_epochs=1, seed=0, namespace=package)[0]


@pytest.mark.parametrize("make", [_user_module, _builtin_module], ids=["user module", "built-in module"])
@pytest.mark.parametrize("package", PACKAGES)
def test_the_checkpoint_records_the_modules_own_package_and_loads_with_its_class(
    package: str, make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = make(package)
    pl = importlib.import_module(package)
    assert isinstance(module, pl.LightningModule)
    # A machine with the module's package alone: the other one cannot be imported.
    other = "lightning" if package == "pytorch_lightning" else "pytorch_lightning"
    monkeypatch.setitem(sys.modules, other, None)
    state = {k: v + 1.0 for k, v in module.state_dict().items()}  # not the module's own weights
    path = str(tmp_path / "member.ckpt")
    save_member_checkpoint(module, state, path, epoch=3)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["pytorch-lightning_version"] == pl.__version__
    assert checkpoint["epoch"] == 2
    loaded = type(module).load_from_checkpoint(path)
    assert type(loaded) is type(module)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_a_module_of_neither_package_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"Linear is not a LightningModule: derive it from lightning.pytorch"):
        save_member_checkpoint(torch.nn.Linear(2, 2), {}, str(tmp_path / "x.ckpt"), epoch=1)
