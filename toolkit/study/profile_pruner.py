"""Pruning within a profile: a trial is compared only with the trials of its own profile.

Profiles differ in how fast they learn (a head on cached embeddings against a CNN
from scratch), so a median over every trial would stop a slow family for being
slow. :class:`ProfilePruner` gives each profile a pruner of its own and shows it a
study whose trials are that profile's alone (:class:`ProfileTrials`, a view of the
storage), whatever the pruner reads of the study (its trials, Hyperband's
brackets).
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from toolkit.study.profiles import PROFILE


class ProfileTrials(BaseStorage):
    """A study storage as one profile sees it: every call goes to ``storage``, but the
    trials listed are the profile's alone."""

    def __init__(self, storage: BaseStorage, profile: str) -> None:
        self._storage = storage
        self._profile = profile

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """The study's trials of this profile."""
        trials = self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        return [t for t in trials if t.params.get(PROFILE) == self._profile]


def _delegated(name: str) -> Callable[..., Any]:
    def method(self: ProfileTrials, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._storage, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"The storage's ``{name}``."
    return method


for _name in BaseStorage.__abstractmethods__ - {"get_all_trials"}:
    setattr(ProfileTrials, _name, _delegated(_name))
ProfileTrials.__abstractmethods__ = frozenset()  # every abstract method is delegated above


class ProfilePruner(BasePruner):
    """A pruner per profile (made by ``make``), each seeing only its profile's trials; a trial
    without a profile is judged among the whole study."""

    def __init__(self, make: Callable[[], BasePruner]) -> None:
        self._make = make
        self._pruners: dict[str | None, BasePruner] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether the trial stops now, judged among its profile's trials."""
        profile = trial.params.get(PROFILE)
        key = profile if isinstance(profile, str) else None
        if key not in self._pruners:
            self._pruners[key] = self._make()
        if key is None:
            return self._pruners[key].prune(study, trial)
        view = optuna.Study(
            study_name=study.study_name,
            storage=ProfileTrials(study._storage, key),
            sampler=study.sampler,
            pruner=self._pruners[key],
        )
        return self._pruners[key].prune(view, trial)
