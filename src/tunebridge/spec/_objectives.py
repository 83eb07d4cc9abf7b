"""A run's objectives: metric names and their min/max modes, checked once for spec files, tune() and workers."""

from __future__ import annotations

from tunebridge._vocab import MODES
from tunebridge.errors import SchemaError, show

__all__ = ["NOTHING", "objectives"]

#: Stands for a key the spec does not have (the error then says "nothing", not "None").
NOTHING = object()


def objectives(metric: object, mode: object = "min") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The one check of a run's objectives (spec files, :func:`tunebridge.tune` and workers alike).

    Args:
        metric: A metric name or a list of unique names (several make a multi-objective study).
        mode: ``min`` or ``max``, one for all metrics or one per metric.

    Returns:
        ``(metrics, modes)``, one mode per metric.

    Raises:
        SchemaError: No metric, an empty or repeated name, or a mode that is not min/max per metric.

    Example:
        >>> objectives(["val_loss", "n_params"], "min")
        (('val_loss', 'n_params'), ('min', 'min'))
    """
    metrics = [metric] if isinstance(metric, str) else metric
    if not isinstance(metrics, (list, tuple)) or not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise SchemaError(
            "`metric` must name the validation metric to optimise (or list several)",
            path="metric",
            value="nothing" if metric is NOTHING else show(metric),
            fix="Write e.g. metric: val_acc.",
        )
    modes = [mode] * len(metrics) if isinstance(mode, str) else mode
    if not isinstance(modes, (list, tuple)) or len(modes) != len(metrics) or any(m not in MODES for m in modes):
        raise SchemaError(
            "`mode` must be min or max, one per metric",
            path="mode",
            value="nothing" if mode is NOTHING else show(mode),
            fix="Write e.g. mode: max, or [min, min] for two metrics.",
        )
    if len(set(metrics)) != len(metrics):
        raise SchemaError("metrics must be unique", path="metric", value=show(metrics), fix="Remove the repeated name.")
    return tuple(metrics), tuple(modes)
