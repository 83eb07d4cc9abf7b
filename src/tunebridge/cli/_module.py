"""``python -m tunebridge``: the CLI, with the exit code it chose even after a handled Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["run_as_module"]


def run_as_module(main: Callable[[], object]) -> None:
    """Run ``main`` as a ``python -m`` entry point whose handled interrupts keep their exit code.

    CPython (seen on 3.11 and 3.12) remembers a ``KeyboardInterrupt`` that passed through any
    ``exec`` of a string -- code that libraries generate at run time -- and, under ``python -m``
    only, kills the process with SIGINT at exit even though the interrupt was caught and the CLI
    exits 130: the shell then sees "killed by SIGINT" and the message's exit code is lost.
    Evaluating one string clears that flag; an interrupt that really escapes sets it again on its
    way out, so an unhandled Ctrl-C still ends the process the way a shell expects.
    """
    try:
        main()
    finally:
        exec("pass")  # a constant string: resets the interpreter's flag, see above
