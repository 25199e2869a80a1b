"""The baseline trials: the recipe's own values (with profiles: each profile as written),
queued as a new study's first trials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from toolkit.recipe.schema import Recipe
from toolkit.study.handle import StudyHandle
from toolkit.study.profiles import PROFILE, baseline_params
from toolkit.study.space import recipe_values


def enqueue_baseline(
    handle: StudyHandle, recipe: Recipe, profiles: Mapping[str, Recipe] | None = None
) -> dict[str, Any] | None:
    """Queue the recipe's own values as the first trial of a new study (``search.baseline``);
    with ``profiles`` (each profile's recipe as written), one such trial per profile.

    So the study starts from the hand-tuned recipe (each hand-tuned profile) and
    its best trial is never worse than it. A baseline trial that failed (its
    worker killed) is queued again. Returns the queued values (with profiles:
    the Optuna parameters of each, by profile), or ``None``.
    """
    search = handle.settings.search
    if not search.baseline:
        return None
    trials = handle.trials()
    baselines = [t for t in trials if t.user_attrs.get("baseline")]
    if trials and not baselines:
        return None  # a study begun without its baseline stays so
    if profiles:
        return _enqueue_profiles(handle, baselines, profiles) or None
    if not search.space or _settled(baselines):
        return None  # nothing to fix; or queued, running or finished
    values = recipe_values(recipe, search.space)
    if not values:
        return None
    handle.study.enqueue_trial(values, user_attrs={"baseline": True})
    return values


def _enqueue_profiles(
    handle: StudyHandle, baselines: list[FrozenTrial], profiles: Mapping[str, Recipe]
) -> dict[str, Any]:
    """Queue each profile's baseline that is not queued, running or finished."""
    queued: dict[str, Any] = {}
    search = handle.settings.search
    for name, recipe in profiles.items():
        own = [t for t in baselines if t.user_attrs.get(PROFILE) == name]
        if _settled(own):
            continue
        params = baseline_params(name, recipe, search.profiles[name])
        handle.study.enqueue_trial(params, user_attrs={"baseline": True, PROFILE: name})
        queued[name] = params
    return queued


def _settled(baselines: list[FrozenTrial]) -> bool:
    """Whether one of these baseline trials is queued, running or finished."""
    return any(t.state != TrialState.FAIL for t in baselines)
