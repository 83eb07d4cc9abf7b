"""``tunebridge.results.load_best(best.yaml)`` returns the trained module in a new process, as a user runs it:
``tunebridge run`` from its own folder, then a fresh interpreter elsewhere that knows only best.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tunebridge.cli._recipes import BUNDLED
from tunebridge.results import load_best

PROJECT = Path(__file__).parent / "user_project" / "my_project.py"
RECIPES = BUNDLED  # the package tunebridge.recipes: recipes/ at the top of this clone

BUILTIN = """\
study: builtin
model: mlp
data: digits
space:
  n_layers: {type: fixed, value: 1}
  units: {type: fixed, value: 16}
  lr: {type: float, low: 0.001, high: 0.01, log: true}
metric: val_acc
mode: max
"""
USER = """\
study: user
builder: my_project:build
space:
  lr: {type: choice, values: [0.05, 0.2]}
  hidden: {type: choice, values: [8, 16]}
metric: val_loss
mode: min
"""
COMMON = "max_epochs: 1\nsearch: random\ntrials: 2\nseed: 0\nthreads: 1\naccelerator: cpu\n"

# Loads the module and checks it is the trained one: the weights of the kept checkpoint, the best config's shape.
LOAD = textwrap.dedent("""\
    import sys, torch, yaml
    from tunebridge.results import load_best
    module = load_best(sys.argv[1])
    best = yaml.safe_load(open(sys.argv[1]))
    state = torch.load(best["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items()), "not the kept weights"
    print(type(module).__name__, sum(p.numel() for p in module.parameters()))
""")


def _run_and_load(spec: Path, study: str, cwd: Path) -> str:
    env = {**os.environ, "TB_LIGHTNING": "lightning.pytorch", "OMP_NUM_THREADS": "1"}
    ran = subprocess.run(
        [sys.executable, "-m", "tunebridge", "run", str(spec), "--no-progress"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    best_yaml = cwd / "tunebridge-runs" / study / "best.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    assert best["module_class"] and best["checkpoint"]
    elsewhere = cwd.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD, str(best_yaml)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    return loaded.stdout.strip()


@pytest.mark.slow
def test_a_built_in_model_loads_from_best_yaml_in_a_new_process(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "spec.yaml").write_text(BUILTIN + COMMON)
    assert _run_and_load(tmp_path / "run" / "spec.yaml", "builtin", tmp_path / "run").startswith("MLPClassifier")


@pytest.mark.slow
def test_a_users_module_loads_from_best_yaml_in_a_new_process(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT, project / "my_project.py")
    (project / "spec.yaml").write_text(USER + COMMON)
    out = _run_and_load(project / "spec.yaml", "user", project)
    assert out.startswith("Classifier")
    best = yaml.safe_load((project / "tunebridge-runs" / "user" / "best.yaml").read_text())
    assert best["module_class"] == "my_project:Classifier" and best["import_path"] == str(project.resolve())


@pytest.mark.slow
def test_a_lightning_cli_project_loads_from_best_yaml_in_a_new_process(tmp_path: Path) -> None:
    project = tmp_path / "cli"
    shutil.copytree(RECIPES / "lightning_cli", project)
    spec = (project / "spec.yaml").read_text()
    spec = spec.replace("max_epochs: 6", "max_epochs: 1").replace("trials: 8", "trials: 2")
    (project / "spec.yaml").write_text(spec + "threads: 1\naccelerator: cpu\n")
    assert _run_and_load(project / "spec.yaml", "lightning-cli", project).startswith("DigitsClassifier")


def test_a_best_yaml_without_a_kept_checkpoint_says_so(tmp_path: Path) -> None:
    (tmp_path / "best.yaml").write_text("study: s\nvalue: 1.0\ncheckpoint: null\n")
    with pytest.raises(FileNotFoundError, match="names no kept checkpoint"):
        load_best(tmp_path / "best.yaml")
    (tmp_path / "best.yaml").write_text("study: s\ncheckpoint: x.ckpt\nmodule_class: __main__:Net\n")
    with pytest.raises(
        ImportError, match=r"cannot be imported in another process; use tunebridge\.results\.load_checkpoint"
    ):
        load_best(tmp_path / "best.yaml")
