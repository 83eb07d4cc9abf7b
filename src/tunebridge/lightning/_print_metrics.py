"""``--print-metrics``: every epoch's validation metrics on stdout as ``name=value`` lines, for Kubeflow Katib.

Katib's StdOut metrics collector reads a trial's stdout with the default filter
``([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)`` (one ``name=value`` per match, any number per
line) and keeps the names an Experiment lists (``objectiveMetricName``, ``additionalMetricNames``).
So each epoch prints one line per metric, ``epoch=3 val_acc=0.91``: a Katib trial can run
``tunebridge run spec.yaml --trials 1 --print-metrics`` and read the same metric tunebridge tunes.

A Lightning callback added through the user-callback mechanism: the runner is not touched.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from tunebridge.lightning._callbacks import scalars

__all__ = ["format_metrics", "metrics_printer"]

_PACKAGES = ("lightning.pytorch", "pytorch_lightning")
_CLASSES: dict[tuple[type, ...], type] = {}


def format_metrics(epoch: int, metrics: dict[str, float]) -> list[str]:
    """The lines of one epoch: ``epoch=E name=value`` per finite metric, sorted by name.

    Example:
        >>> format_metrics(3, {"val_loss": 0.25, "val_acc": 0.91, "bad": float("nan")})
        ['epoch=3 val_acc=0.91', 'epoch=3 val_loss=0.25']
    """
    # Katib's filter reads no NaN/inf (and a wrong number is worse than none).
    return [f"epoch={epoch} {name}={value!r}" for name, value in sorted(metrics.items()) if math.isfinite(value)]


def _on_validation_end(self: Any, trainer: Any, pl_module: Any) -> None:
    if trainer.sanity_checking or not trainer.is_global_zero:
        return
    lines = format_metrics(int(trainer.current_epoch) + 1, scalars(trainer.callback_metrics))
    if lines:
        print("\n".join(lines), flush=True)  # stdout is what Katib's collector reads


def metrics_printer() -> Any:
    """A fresh printing callback (a factory for ``callbacks=``).

    Its class derives from the ``Callback`` of every Lightning package already imported (the
    trial's module has been built by then), so it runs under either one.
    """
    bases = tuple(sys.modules[name].Callback for name in _PACKAGES if name in sys.modules)
    if not bases:
        import lightning.pytorch

        bases = (lightning.pytorch.Callback,)
    if bases not in _CLASSES:
        _CLASSES[bases] = type("PrintMetrics", bases, {"on_validation_end": _on_validation_end})
    return _CLASSES[bases]()
