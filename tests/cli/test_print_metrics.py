"""``--print-metrics``: each epoch's metrics as ``name=value`` lines that Kubeflow Katib's StdOut collector reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunebridge.cli import app
from tunebridge.lightning._print_metrics import format_metrics

# Katib's default metrics filter (kubeflow/katib pkg/metricscollector/v1beta1/common/const.go, DefaultFilter):
# every `name=value` match on a line is one observation of `name`.
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def _katib_parse(text: str) -> list[tuple[str, float]]:
    """What Katib's collector keeps from stdout: (name, value) per match (a line without one is skipped)."""
    return [(m.group(1), float(m.group(2))) for line in text.splitlines() for m in KATIB_FILTER.finditer(line)]


@pytest.mark.parametrize(
    ("metrics", "lines"),
    [
        ({"val_acc": 0.91, "val_loss": 0.25}, ["epoch=3 val_acc=0.91", "epoch=3 val_loss=0.25"]),
        ({"val_loss": 1e-05}, ["epoch=3 val_loss=1e-05"]),
        ({"val_loss": float("nan"), "x": float("inf")}, []),  # Katib would misread these: not printed
    ],
)
def test_one_line_per_metric_per_epoch_in_katibs_format(metrics: dict[str, float], lines: list[str]) -> None:
    assert format_metrics(3, metrics) == lines
    for line, (name, value) in zip(lines, sorted(metrics.items())):
        assert _katib_parse(line) == [("epoch", 3.0), (name, pytest.approx(value))]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "worker"])
def test_run_and_worker_print_every_epoch(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = {
        "study": f"katib-{command}",
        "model": "mlp",
        "data": "digits",
        "space": {"lr": {"type": "float", "low": 0.01, "high": 0.05, "log": True}},
        "metric": "val_acc",
        "mode": "max",
        "max_epochs": 2,
        "trials": 1,
        "threads": 1,
    }
    Path("spec.yaml").write_text(yaml.safe_dump(spec))
    args = [command, "spec.yaml", "--print-metrics"] + (["--no-progress"] if command == "run" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout + result.stderr + repr(result.exception)
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch=")]
    assert {line.split()[0] for line in lines} == {"epoch=1", "epoch=2"}
    seen = _katib_parse("\n".join(lines))
    val_acc = [value for name, value in seen if name == "val_acc"]
    assert len(val_acc) == 2 and all(0 <= v <= 1 for v in val_acc)
    assert {name for name, _ in seen} >= {"epoch", "val_acc", "val_loss"}
