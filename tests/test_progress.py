"""The study's progress display: plain lines without a terminal, the running trial on a terminal,
counts of the whole study after a resume, and ``NO_COLOR``."""

from __future__ import annotations

import io
import re
import sys
from functools import partial

import pytest

from tunebridge import tune
from tunebridge._progress import StudyProgress
from tunebridge.lightning.builtin import build_builtin
from tunebridge.schema import Float, Space

COLOR = re.compile(r"\x1b\[(3\d|9\d|38;)")  # an ANSI foreground colour


class Terminal(io.StringIO):
    """stderr as a terminal would be (rich then draws the bar in place)."""

    def isatty(self) -> bool:
        return True


def test_without_a_terminal_one_plain_line_per_finished_trial(capsys: pytest.CaptureFixture[str]) -> None:
    counts = {"complete": 2, "pruned": 1, "failed": 0}  # a resumed study: what it holds already
    with StudyProgress(5, mode="max", done=3, counts=counts, metric="val_acc") as bar:
        bar.running(3, 1, 10, 0.5)  # not printed: a log gets a line per trial, not per epoch
        bar.update("complete", 0.91, number=3)
        bar.update("pruned", None, number=4)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert re.fullmatch(
        r"tuning 4/5 ✓3 ✂1 ✗0 best 0\.91 elapsed 0:00:0\d eta 0:00:0\d \| trial 3 complete \(val_acc 0\.91\)", lines[0]
    )
    assert lines[1].startswith("tuning 5/5 ✓3 ✂2 ✗0 best 0.91") and lines[1].endswith("| trial 4 pruned")
    assert "\x1b[" not in err


@pytest.mark.parametrize("no_color", [False, True])
def test_a_terminal_shows_the_running_trial_and_honours_no_color(
    no_color: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with StudyProgress(4, mode="min", metric="val_loss") as bar:
        bar.update("complete", 0.5, number=0)
        bar.running(1, 3, 20, 0.25)
    out = term.getvalue()
    assert "running: trial 1, epoch 3/20, val_loss 0.25" in out and "1/4" in out and "best 0.5" in out
    assert bool(COLOR.search(out)) is not no_color


def test_tune_names_the_running_trial_epoch_by_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setenv("NO_COLOR", "1")
    tune(
        partial(build_builtin, "mlp", "wine", max_epochs=2, seed=0),
        Space(lr=Float(1e-3, 1e-1, log=True)),
        metric="val_loss",
        mode="min",
        trials=2,
        max_epochs=2,
        search="random",
        seed=0,
        trainer={"accelerator": "cpu"},
        run={"progress": True},
    )
    out = term.getvalue()
    for number in (0, 1):
        assert re.search(rf"running: trial {number}, epoch 2/2, val_loss \d", out), out[-3000:]
    assert "2/2" in out
