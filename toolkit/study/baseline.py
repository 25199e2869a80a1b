"""The baseline trial: the recipe's own values, queued as a new study's first trial."""

from __future__ import annotations

from typing import Any

from optuna.trial import TrialState

from toolkit.recipe import Recipe
from toolkit.study.handle import StudyHandle
from toolkit.study.space import recipe_values


def enqueue_baseline(handle: StudyHandle, recipe: Recipe) -> dict[str, Any] | None:
    """Queue the recipe's own values as the first trial of a new study (``search.baseline``).

    So the study starts from the hand-tuned recipe and its best trial is never
    worse than it. A baseline trial that failed (its worker killed) is queued
    again. Returns the queued values, or ``None``.
    """
    search = handle.settings.search
    if not search.baseline or not search.space:
        return None
    trials = handle.trials()
    baselines = [t for t in trials if t.user_attrs.get("baseline")]
    if trials and not baselines:
        return None  # a study begun without its baseline stays so
    if any(t.state != TrialState.FAIL for t in baselines):
        return None  # queued, running or finished
    values = recipe_values(recipe, search.space)
    if not values:
        return None
    handle.study.enqueue_trial(values, user_attrs={"baseline": True})
    return values
