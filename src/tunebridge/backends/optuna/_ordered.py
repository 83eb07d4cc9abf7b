"""Ordered choices: stored as their values, sampled over their index.

An ordered ``Choice`` is stored in the study as ``CategoricalDistribution(values)``, so
``trial.params``, optuna-dashboard and Optuna's plots show the value (32, not 0). A categorical has
no order for a model-based sampler, so :class:`OrderedChoices` wraps one and shows it every ordered
choice as ``IntDistribution(0, n - 1)`` over the index: in the search space, in the trials it reads
(through :class:`_IndexView`) and in what it returns, converted back to values on the way out.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from tunebridge.schema import Choice, Scalar, Space

__all__ = ["ORDER_AWARE", "OrderedChoices", "WrappedSampler", "ordered_values", "with_order"]

# Samplers that model a numeric axis, and so learn from an ordered choice's order when given its index.
# Random, grid and brute-force sampling ignore order; a user's own sampler class is given the values.
ORDER_AWARE: tuple[type[BaseSampler], ...] = (
    optuna.samplers.TPESampler,
    optuna.samplers.GPSampler,
    optuna.samplers.CmaEsSampler,
    optuna.samplers.QMCSampler,
    optuna.samplers.NSGAIISampler,
    optuna.samplers.NSGAIIISampler,
)


def ordered_values(space: Space) -> dict[str, tuple[Scalar, ...]]:
    """The values of each ordered choice of a space, by parameter name (per-layer copies share it)."""
    return {name: p.values for name, p in space.items() if isinstance(p, Choice) and p.ordered}


def with_order(sampler: BaseSampler, space: Space) -> BaseSampler:
    """``sampler`` wrapped in :class:`OrderedChoices` where it models order and the space has ordered choices."""
    ordered = ordered_values(space)
    if not ordered or isinstance(sampler, OrderedChoices) or not isinstance(sampler, ORDER_AWARE):
        return sampler
    return OrderedChoices(sampler, ordered)


class WrappedSampler(BaseSampler):
    """A sampler around another one (``inner``): every call passes through to it unless a subclass says otherwise."""

    def __init__(self, sampler: BaseSampler) -> None:
        self.inner = sampler

    def __str__(self) -> str:
        return str(self.inner)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class OrderedChoices(WrappedSampler):
    """A model-based sampler that sees each ordered choice as ``IntDistribution(0, n - 1)`` over its index.

    The study stores the values (a ``CategoricalDistribution``); the inner sampler models the index,
    so TPE, GP, CMA-ES, QMC and NSGA-II learn that 64 lies between 32 and 128.

    Args:
        sampler: The sampler that draws (TPE, GP, ...); ``before_trial``, ``after_trial`` and
            ``reseed_rng`` pass through to it unchanged.
        ordered: The values of each ordered choice by parameter name; per-layer copies
            (``units/0``) belong to their parameter (``units``).
    """

    def __init__(self, sampler: BaseSampler, ordered: Mapping[str, Sequence[Scalar]]) -> None:
        super().__init__(sampler)
        self.ordered = {name: tuple(values) for name, values in ordered.items()}

    def __str__(self) -> str:
        return f"OrderedChoices({self.inner})"

    def stored(self, key: str, dist: BaseDistribution) -> CategoricalDistribution | None:
        """``dist`` when it is the stored form of one of the ordered choices, else None."""
        values = self.ordered.get(key.split("/", 1)[0])
        if values is None or not isinstance(dist, CategoricalDistribution) or dist.choices != values:
            return None
        return dist

    def index_trial(self, trial: FrozenTrial) -> FrozenTrial:
        """A copy of ``trial`` with each ordered choice as its index (the trial itself when it has none)."""
        stored = {k: c for k, d in trial.distributions.items() if (c := self.stored(k, d)) is not None}
        if not stored:
            return trial
        params, dists = dict(trial.params), dict(trial.distributions)
        for key, dist in stored.items():
            params[key] = int(dist.to_internal_repr(params[key]))
            dists[key] = _index_distribution(dist)
        out = copy.copy(trial)
        out.params, out.distributions = params, dists
        return out

    def _inner_space(
        self, space: Mapping[str, BaseDistribution]
    ) -> tuple[dict[str, BaseDistribution], dict[str, CategoricalDistribution]]:
        stored = {k: c for k, d in space.items() if (c := self.stored(k, d)) is not None}
        return {k: _index_distribution(stored[k]) if k in stored else d for k, d in space.items()}, stored

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self.inner.infer_relative_search_space(_view(study, self), self.index_trial(trial))
        out = dict(space)
        for key, dist in space.items():
            values = self.ordered.get(key.split("/", 1)[0])
            # The study's own distribution comes back, or Trial refuses the relative value for it.
            if values is not None and isinstance(dist, IntDistribution):
                out[key] = CategoricalDistribution(values)
        return out

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        inner, stored = self._inner_space(search_space)
        drawn = self.inner.sample_relative(_view(study, self), self.index_trial(trial), inner)
        return {k: stored[k].to_external_repr(int(v)) if k in stored else v for k, v in drawn.items()}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        view, frozen = _view(study, self), self.index_trial(trial)
        stored = self.stored(param_name, param_distribution)
        if stored is None:
            return self.inner.sample_independent(view, frozen, param_name, param_distribution)
        index = self.inner.sample_independent(view, frozen, param_name, _index_distribution(stored))
        return stored.to_external_repr(int(index))


def _index_distribution(dist: CategoricalDistribution) -> IntDistribution:
    return IntDistribution(0, len(dist.choices) - 1)


def _view(study: optuna.Study, sampler: OrderedChoices) -> Any:
    return _IndexView(study, sampler)


class _IndexView:
    """The study as the inner sampler reads it: every trial's ordered choices as indices.

    Optuna's samplers read trials through ``study._get_trials`` (TPE, GP, CMA-ES, QMC, NSGA-II and
    the search-space helpers) and write only system attributes; everything else is the study's own.
    Checked against optuna 5.1.0; ``tests/backends/test_optuna_internals.py`` fails when a sampler reads
    the study another way.
    """

    def __init__(self, study: optuna.Study, sampler: OrderedChoices) -> None:
        self._study = study
        self._sampler = sampler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [self._sampler.index_trial(t) for t in trials]

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states, use_cache=False)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()
