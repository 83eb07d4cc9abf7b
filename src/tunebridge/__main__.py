"""``python -m tunebridge`` runs the CLI."""

from tunebridge.cli import main

main()
