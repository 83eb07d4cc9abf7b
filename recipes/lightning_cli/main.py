"""The lightning_cli recipe's entry point: `python main.py fit --config base.yaml` (tunebridge not needed).

After `tunebridge run lightning_cli`, the best trial runs unchanged with
`python main.py fit --config tunebridge-runs/lightning-cli/best_config.yaml`.
"""

from __future__ import annotations

from digits_cli_model import DigitsClassifier, DigitsData  # next to this file (python puts its folder first)
from lightning.pytorch.cli import LightningCLI


def cli_main() -> None:
    LightningCLI(DigitsClassifier, DigitsData, subclass_mode_model=True, subclass_mode_data=True)


if __name__ == "__main__":
    cli_main()
