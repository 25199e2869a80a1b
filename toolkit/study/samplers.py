"""How trials choose their values (seeded per trial) and how they are pruned."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from toolkit.recipe.search import Pruner, Sampler


class TrialSeededSampler(BaseSampler):
    """A sampler rebuilt for every trial with ``seed + trial number``.

    Each worker process holds its own sampler; seeding per trial keeps a
    trial's random draws the same whichever worker runs it and makes workers
    (and a resumed run) draw differently from each other. The model-based part
    of TPE reads the finished trials from the storage as usual.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Reseed for this trial, then let the inner sampler prepare."""
        self._inner = self._make(self._seed + trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        """Delegated to the inner sampler."""
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, optuna.distributions.BaseDistribution],
    ) -> dict[str, Any]:
        """Delegated to the inner sampler."""
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: optuna.distributions.BaseDistribution,
    ) -> Any:
        """Delegated to the inner sampler."""
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Delegated to the inner sampler."""
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Delegated to the inner sampler."""
        self._inner.reseed_rng()


def build_sampler(spec: Sampler) -> BaseSampler:
    """The recipe's sampler (TPE or random), seeded per trial."""
    if spec.name == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), spec.seed)

    def tpe(seed: int) -> BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.n_startup_trials)

    return TrialSeededSampler(tpe, spec.seed)


def build_pruner(
    spec: Pruner, max_epochs: int, profiles: bool = False
) -> optuna.pruners.BasePruner:
    """The recipe's pruner; Hyperband's largest budget is the most epochs a trial can run. With
    ``profiles``, one per profile, comparing a trial with its own profile's trials."""
    if profiles:
        from toolkit.study.profile_pruner import ProfilePruner

        return ProfilePruner(lambda: build_pruner(spec, max_epochs))
    if spec.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
        )
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource,
            max_resource=max(max_epochs, spec.min_resource),
            reduction_factor=spec.reduction_factor,
        )
    return optuna.pruners.NopPruner()
