"""The run spec file: model builder, data, space (or presets + overrides), metric, budget, policies.

Standard library (+ PyYAML) only, so ``tunebridge check`` never imports torch. One module per idea:
:mod:`._parse` (the document, :func:`load_spec`), :mod:`._runspec` (:class:`RunSpec`), :mod:`._objectives`
(the one metric/mode check), :mod:`._space` (``space:``), :mod:`._run` (the run sections) and
:mod:`._cli` (``lightning_cli:``), :mod:`._hydra` (``hydra:``; :mod:`._hydra_search` and :mod:`._hydra_sweep` read a
hydra-optuna-sweeper config).
"""

from __future__ import annotations

from tunebridge._vocab import BUILTIN_DATA, BUILTIN_MODELS, SEARCH_ALGORITHMS
from tunebridge.spec._cli import LightningCliSpec as LightningCliSpec  # for lightning/_cli_config (typing only)
from tunebridge.spec._hydra import HydraSpec as HydraSpec  # for lightning/_hydra_config (typing only)
from tunebridge.spec._hydra_search import SweeperSearch as SweeperSearch
from tunebridge.spec._hydra_search import read_sweeper as read_sweeper  # `tunebridge import hydra-sweeper`
from tunebridge.spec._objectives import objectives
from tunebridge.spec._parse import load_spec
from tunebridge.spec._parse import parse_spec as parse_spec  # a parsed document (tests, tools)
from tunebridge.spec._run import RunSections as RunSections
from tunebridge.spec._run import parse_run_sections as parse_run_sections  # `tunebridge run --fuse`
from tunebridge.spec._runspec import RunSpec
from tunebridge.spec._space import space_from_spec

__all__ = ["BUILTIN_DATA", "BUILTIN_MODELS", "SEARCH", "RunSpec", "load_spec", "objectives", "space_from_spec"]

SEARCH = SEARCH_ALGORITHMS  # the spec's name for it (tunebridge._vocab is the one definition)
