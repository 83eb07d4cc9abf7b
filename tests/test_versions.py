"""The installed versions are inside the ranges tunebridge declares: the CI check that we test what we claim.

``pyproject.toml`` caps each library tunebridge is built around (optuna, optuna-integration, Ray,
Lightning, torch, scikit-learn) at the newest version tested. These tests read tunebridge's
requirements as installed (``importlib.metadata.requires``) and check every installed distribution
it requires, the installed extras' ones included, against its range. A newer library in CI then
fails here, naming the package, its version and the range, instead of somewhere deep in a backend.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> list[str]:
    return importlib.metadata.metadata("tunebridge").get_all("Provides-Extra") or []


def applies(req: Requirement, extras: list[str]) -> bool:
    """Whether ``req`` is a requirement of this interpreter: unconditional, or of one of ``extras``."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in ["", *extras])


def outside_range(req: Requirement, installed: str) -> str | None:
    """Why ``installed`` (the version of ``req.name`` installed here) breaks ``req``, or None when it is inside."""
    if req.specifier.contains(Version(installed), prereleases=True):
        return None
    return (
        f"{req.name} {installed} is installed, outside tunebridge's declared range {req.name}{req.specifier}. "
        f"Install a version inside it, or test tunebridge with {installed} and move the range in pyproject.toml."
    )


def _requirements() -> list[Requirement]:
    extras = _extras()
    reqs = [Requirement(r) for r in importlib.metadata.requires("tunebridge") or []]
    return [r for r in reqs if canonicalize_name(r.name) != "tunebridge" and applies(r, extras)]


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_installed_version_is_inside_the_declared_range(req: Requirement) -> None:
    installed = _installed(req.name)
    if installed is None:
        # A core requirement is always installed with tunebridge; an extra's may be left out.
        assert req.marker is not None, f"{req.name} is required by tunebridge ({req}) but not installed."
        pytest.skip(f"{req.name} (the extra of {req}) is not installed")
    problem = outside_range(req, installed)
    assert problem is None, problem


@pytest.mark.parametrize(
    ("req", "installed", "expected"),
    [
        ("optuna>=4.0,<5.2", "5.1.0", None),
        ("torch>=2.3,<2.14", "2.13.0+cpu", None),  # a local build of a tested release
        ("ray[tune]>=2.40,<2.61", "2.60.1rc1", None),  # a release candidate of a tested minor version
        (
            "optuna>=4.0,<5.2",
            "5.2.0",
            "optuna 5.2.0 is installed, outside tunebridge's declared range optuna<5.2,>=4.0. Install a version "
            "inside it, or test tunebridge with 5.2.0 and move the range in pyproject.toml.",
        ),
        (
            'ray[tune]>=2.40,<2.61; extra == "ray"',
            "2.39.0",
            "ray 2.39.0 is installed, outside tunebridge's declared range ray<2.61,>=2.40. Install a version "
            "inside it, or test tunebridge with 2.39.0 and move the range in pyproject.toml.",
        ),
    ],
)
def test_outside_range_names_the_package_the_version_and_the_range(
    req: str, installed: str, expected: str | None
) -> None:
    assert outside_range(Requirement(req), installed) == expected


@pytest.mark.parametrize(
    ("req", "extras", "expected"),
    [
        ("optuna>=4.0", [], True),
        ('redis>=5.0; extra == "redis"', ["redis"], True),
        ('redis>=5.0; extra == "redis"', ["ray"], False),
        ('tomli>=2; python_version < "3.0"', [], False),
    ],
)
def test_which_requirements_apply(req: str, extras: list[str], expected: bool) -> None:
    assert applies(Requirement(req), extras) is expected


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from Python 3.11")
def test_the_installed_requirements_are_those_of_pyproject() -> None:
    # The check above reads the installed metadata: after editing pyproject.toml, reinstall (pip install -e .).
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r) for r in project["dependencies"]}
    for extra, reqs in project["optional-dependencies"].items():
        declared |= {Requirement(f'{r}; extra == "{extra}"') for r in reqs}
    installed = {Requirement(r) for r in importlib.metadata.requires("tunebridge") or []}

    def key(r: Requirement) -> tuple[str, str, frozenset[str], str]:
        return canonicalize_name(r.name), str(r.specifier), frozenset(r.extras), str(r.marker or "")

    stale = sorted({key(r) for r in declared} ^ {key(r) for r in installed})
    assert not stale, f"tunebridge's installed metadata differs from pyproject.toml: {stale}; run pip install -e ."
