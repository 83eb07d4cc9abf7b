"""The hydra recipe's entry point, as lightning-hydra-template's ``src/train.py`` (tunebridge not needed).

    python train.py                                    # one run of configs/train.yaml
    python train.py model.optimizer.lr=0.003 data.batch_size=32
    python train.py -m hparams_search=digits_optuna    # hydra-optuna-sweeper's search (if installed)

After `tunebridge run hydra`, the best trial runs with the command tunebridge prints (best_command.sh).
"""

from __future__ import annotations

from typing import Any

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig


def _instantiate_all(section: DictConfig | None) -> list[Any]:
    """Every ``_target_`` node of a callbacks or logger group (lightning-hydra-template's instantiate_callbacks)."""
    if not section:
        return []
    return [
        hydra.utils.instantiate(node)
        for node in section.values()
        if isinstance(node, DictConfig) and "_target_" in node
    ]


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")), logger=_instantiate_all(cfg.get("logger"))
    )
    trainer.fit(model=model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print("final metrics:", {k: round(v, 4) for k, v in sorted(metrics.items())})
    print("epochs trained:", trainer.current_epoch)
    # The value hydra-optuna-sweeper optimises (configs/hparams_search/digits_optuna.yaml names it).
    name = cfg.get("optimized_metric")
    return metrics[name] if name else None


if __name__ == "__main__":
    main()
