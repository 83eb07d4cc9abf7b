"""``ray: {max_failures: N}``: how often Ray retries a failed trial (a lost node) before it is recorded failed.

The real node loss is tested on a two-node cluster in tests/distributed/test_ray_cluster.py.
"""

from __future__ import annotations

import pytest

from tunebridge.backends.ray import RayOptions
from tunebridge.errors import SchemaError
from tunebridge.spec import parse_spec


@pytest.mark.parametrize(
    ("options", "retries"),
    [
        ({}, 0),  # a local Ray: a failure is the trial's own and would fail again
        ({"address": "auto"}, 3),  # a cluster: a lost node's trials run again
        ({"address": "ray://head:10001", "max_failures": 0}, 0),
        ({"max_failures": 2}, 2),
        ({"max_failures": -1}, -1),  # Ray's "retry forever"
    ],
)
def test_retries_default_by_where_ray_runs(options: dict[str, object], retries: int) -> None:
    assert RayOptions.from_dict(options).retries() == retries


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (-2, r"ray.max_failures: `max_failures` must be an integer >= -1, but got -2"),
        (1.5, r"`max_failures` must be an integer >= -1, but got 1.5"),
        (True, r"`max_failures` must be an integer >= -1, but got True"),
    ],
)
def test_max_failures_is_checked(value: object, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        RayOptions.from_dict({"max_failures": value})


def test_a_spec_takes_max_failures_in_its_ray_section() -> None:
    doc = {"model": "mlp", "data": "digits", "space": {"lr": [0.1]}, "metric": "val_acc", "mode": "max"}
    assert parse_spec({**doc, "ray": {"max_failures": 2}}).ray == {"max_failures": 2}
    with pytest.raises(SchemaError, match=r"ray: unknown key, but got 'max_failure'. Did you mean 'max_failures'\?"):
        parse_spec({**doc, "ray": {"max_failure": 2}})
