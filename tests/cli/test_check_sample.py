"""``tunebridge check SPEC --sample N [--seed S]``: the configs a run would draw, readable at 80 columns."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.cli._recipes import BUNDLED
from tunebridge.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
MLP = BUNDLED / "digits_mlp.yaml"

TINY = textwrap.dedent("""\
    study: tiny
    model: mlp
    data: digits
    space:
      n_layers: {type: int, low: 1, high: 2}
      units: {type: choice, values: [16, 32], ordered: true, per_layer: n_layers}
      lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
    metric: val_acc
    mode: max
    search: random
    seed: 7
    """)
FLAT_RAY = textwrap.dedent("""\
    model: mlp
    data: digits
    space:
      lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
      batch_size: {type: choice, values: [32, 64, 128]}
      dropout: {type: float, low: 0.0, high: 0.5}
    metric: val_acc
    mode: max
    search: random
    backend: ray
    seed: 1
    """)


def check(*args: str, columns: int = 80) -> str:
    result = CliRunner().invoke(app, ["check", *args], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


def rows(out: str) -> list[str]:
    """The row numbers of the sample table, in order (``│ 3 │`` starts a config's first line)."""
    return re.findall(r"^│\s*(\d+) │", out.split("configs as search: random")[1], flags=re.MULTILINE)


def test_five_configs_of_the_mlp_recipe_fit_80_columns() -> None:
    out = check(str(MLP), "--sample", "5")
    assert "5 configs as search: random draws them (optuna, seed 0)" in out
    assert rows(out) == ["0", "1", "2", "3", "4"]
    too_wide = [line for line in out.splitlines() if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    assert "the spec searches with tpe, whose configs differ from these" in out
    assert out.rstrip().endswith("ok: the spec is valid")


def test_the_printed_values_are_the_spaces_sample() -> None:
    out = check(str(MLP), "--sample", "3")
    space = load_spec(MLP).space
    flat = re.sub(r"[│\s]+", " ", out)  # the wrapped key=value lines of each config, joined
    for config in space.sample(3, seed=0, backend="optuna"):
        first = f"n_layers={config['n_layers']} units/0={config['units/0']}"
        assert first in flat
        assert f"lr={config['lr']:.4g}" in flat  # 4 significant digits
        if "momentum" not in config:
            continue
        assert f"momentum={config['momentum']:.4g}" in flat


def test_same_seed_same_output_and_the_spec_seed_by_default() -> None:
    first = check(str(MLP), "--sample", "4", "--seed", "3")
    assert check(str(MLP), "--sample", "4", "--seed", "3") == first
    assert check(str(MLP), "--sample", "4", "--seed", "4") != first
    assert check(str(MLP), "--sample", "4") == check(str(MLP), "--sample", "4", "--seed", "0")  # the recipe's seed


def test_a_small_space_is_one_column_per_parameter_with_inactive_ones_empty(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    out = check(str(spec), "--sample", "6")
    assert "6 configs as search: random draws them (optuna, seed 7)" in out
    header = next(line for line in out.splitlines() if "n_layers" in line and "units/1" in line)
    assert [h.strip() for h in header.strip("┃").split("┃")] == ["#", "n_layers", "units/0", "units/1", "lr"]
    configs = load_spec(spec).space.sample(6, seed=7)
    table = out.split("(optuna, seed 7)")[1]
    lines = [line for line in table.splitlines() if re.match(r"^│\s*\d+ │", line)]
    assert len(lines) == 6
    for line, config in zip(lines, configs):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells[1:] == [
            str(config["n_layers"]),
            str(config["units/0"]),
            str(config.get("units/1", "")),
            f"{config['lr']:.4g}",
        ]
    assert "searches with" not in out  # the spec's search is random
    assert all(len(line) <= 80 for line in out.splitlines())


def test_no_sample_without_the_option_and_a_negative_one_is_refused() -> None:
    assert "configs as search: random" not in check(str(MLP))
    result = CliRunner().invoke(app, ["check", str(MLP), "--sample", "-1"], env={"COLUMNS": "80"})
    assert result.exit_code == 2
    assert "--sample" in result.output


def test_a_bad_seed_exits_2_naming_it() -> None:
    result = CliRunner().invoke(app, ["check", str(MLP), "--sample", "2", "--seed", "-3"], env={"COLUMNS": "80"})
    assert result.exit_code == 2
    assert "seed: `seed` must be an int in [0, 2**32 - 1] or None, but got -3" in result.stderr


def test_check_sample_imports_neither_torch_nor_ray() -> None:
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from tunebridge.cli import app
        r = CliRunner().invoke(app, ["check", {str(MLP)!r}, "--sample", "3"])
        assert r.exit_code == 0, r.output
        heavy = sorted(m for m in ("torch", "lightning", "ray") if m in sys.modules)
        assert not heavy, f"imported: {{heavy}}"
        print("light")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("light")


@pytest.mark.ray
def test_a_ray_spec_samples_with_rays_own_domains(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    spec = tmp_path / "flat.yaml"
    spec.write_text(FLAT_RAY)
    out = check(str(spec), "--sample", "4")
    assert "4 configs as search: random draws them (ray, seed 1)" in out
    space = load_spec(spec).space
    for config in space.sample(4, seed=1, backend="ray"):
        assert f"{config['lr']:.4g}" in out and f"{config['dropout']:.4g}" in out
    assert space.sample(4, seed=1, backend="ray") != space.sample(4, seed=1, backend="optuna")
