"""The public API, pinned: adding or removing a name is a decision, not an accident."""

from __future__ import annotations

import pytest

import tunebridge
import tunebridge.options
import tunebridge.schema

PUBLIC = {
    tunebridge: [
        "Bool",
        "Choice",
        "ConversionError",
        "EarlyStoppingSpec",
        "Fixed",
        "Float",
        "Int",
        "MetricNotFoundError",
        "MissingDependencyError",
        "PruningSpec",
        "SchemaError",
        "Space",
        "SpecMismatchError",
        "TuneResult",
        "TunebridgeError",
        "__version__",
        "presets",
        "tune",
    ],
    tunebridge.schema: [
        "DEFAULT_MAX_GRID",
        "PRUNING_POLICIES",
        "Bool",
        "Choice",
        "EarlyStoppingSpec",
        "Fixed",
        "Float",
        "Int",
        "Param",
        "PruningSpec",
        "Scalar",
        "SchemaError",
        "Space",
        "is_json_scalar",
        "load_yaml",
        "same_value",
    ],
    # tune(trainer=..., run=...): the two option groups and the groups nested in RunOptions.
    tunebridge.options: [
        "Checkpoints",
        "ResumeOptions",
        "RunOptions",
        "StudyLimits",
        "TrainerOptions",
        "WorkerOptions",
    ],
}
LAZY = {"tune", "TuneResult"}  # imported on first use, so `import tunebridge` stays light


@pytest.mark.parametrize("module", list(PUBLIC), ids=lambda m: m.__name__)
def test_all_is_pinned(module: object) -> None:
    assert list(module.__all__) == PUBLIC[module]  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", list(PUBLIC), ids=lambda m: m.__name__)
def test_every_public_name_exists(module: object) -> None:
    for name in PUBLIC[module]:  # type: ignore[index]
        if name not in LAZY:
            assert getattr(module, name) is not None, name


def test_the_schema_objects_are_the_same_everywhere() -> None:
    assert tunebridge.Space is tunebridge.schema.Space and tunebridge.Int is tunebridge.schema.Int
    assert tunebridge.SchemaError is tunebridge.schema.SchemaError
    assert issubclass(tunebridge.SchemaError, (tunebridge.TunebridgeError, ValueError))


def test_unknown_attributes_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"module 'tunebridge' has no attribute 'nope'"):
        tunebridge.nope  # type: ignore[attr-defined]  # noqa: B018
