"""``python -m tunebridge`` runs the CLI."""

from tunebridge.cli import main
from tunebridge.cli._module import run_as_module

run_as_module(main)
