"""``python -m tunebridge`` keeps the exit code the CLI chose after a handled Ctrl-C.

CPython marks a ``KeyboardInterrupt`` that passed through ``exec`` of a string and, under
``python -m``, kills the process with SIGINT at exit; CI saw ``tunebridge run`` exit -2 instead of
130 when Ctrl-C landed inside such code during a trial. These run the real interpreter on a tiny
module, with a real SIGINT.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BODY = """
import sys
from tunebridge.cli._module import run_as_module

def body():
    try:
        print("ready", flush=True)
        exec("import time\\ntime.sleep(60)")  # the interrupt lands inside generated code
    except KeyboardInterrupt:
        if {handled}:
            print("stopped", flush=True)
            sys.exit(130)
        raise

run_as_module(body)
"""


def _default_sigint() -> None:
    """In the child: Ctrl-C as a terminal sends it (a suite started in the background runs with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(tmp_path: Path, *, handled: bool) -> tuple[int, str]:
    (tmp_path / "entry.py").write_text(BODY.format(handled=handled))
    proc = subprocess.Popen(
        [sys.executable, "-m", "entry"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


def test_a_handled_ctrl_c_inside_generated_code_exits_with_the_clis_code(tmp_path: Path) -> None:
    code, output = _interrupt(tmp_path, handled=True)
    assert "stopped" in output
    assert code == 130, output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signal exit status")
def test_an_unhandled_ctrl_c_still_ends_the_process_by_sigint(tmp_path: Path) -> None:
    code, output = _interrupt(tmp_path, handled=False)
    assert code == -signal.SIGINT, output
    assert "KeyboardInterrupt" in output
