"""Profiles: model families of one study, each a partial recipe with a search space of its own.

A recipe's ``search.profiles`` names them. A trial first draws its profile (the
Optuna parameter ``profile``), then that profile's values, each under a name of
its own (``NAME:KEY``, e.g. ``cnn:train.optimizer.lr``), so the parameters of one
profile are never suggested for another's trial and the sampler models each
profile's space apart (Optuna's conditional, define-by-run spaces).

A profile's recipe is the recipe with the profile's sections laid over it: a
mapping with a ``name`` (a plugin block, an optimizer, a scheduler) or a list
(``features``, ``augmenters``) replaces the recipe's whole; another mapping
(``train``, ``model``, ``predict``) is merged into the recipe's key by key. The
data, split, cache, output, search and ensemble stay the recipe's, so every
profile's trials validate on the same clips and their predictions ensemble.

A trial's *values* are what made its recipe: ``{"profile": NAME, KEY: value, ...}``
with the space keys as the profile's space names them (:func:`values_of` reads them
back from a trial's Optuna parameters).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from toolkit.errors import RecipeError, error_at
from toolkit.recipe.schema import Recipe
from toolkit.recipe.search import Profile, Search
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.table import Registry
from toolkit.study.space import SuggestsValues, recipe_values, suggest, validate_space

PROFILE = "profile"
"""The Optuna parameter (and trial value) that names a trial's profile."""

SEPARATOR = ":"
"""Between a profile's name and a key of its space in an Optuna parameter's name."""

PROFILE_SECTIONS = ("separator", "features", "augmenters", "model", "train", "predict")
"""The recipe sections a profile may set."""


def param_name(profile: str, key: str) -> str:
    """The Optuna parameter of ``key`` in ``profile``'s space."""
    return f"{profile}{SEPARATOR}{key}"


def values_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's values from its Optuna parameters: with a profile, its keys without the
    profile's prefix (a study without profiles: the parameters as they are)."""
    profile = params.get(PROFILE)
    if not isinstance(profile, str):
        return dict(params)
    prefix = f"{profile}{SEPARATOR}"
    values: dict[str, Any] = {PROFILE: profile}
    for name, value in params.items():
        if name.startswith(prefix):
            values[name.removeprefix(prefix)] = value
    return values


def profile_of(values: Mapping[str, Any]) -> str | None:
    """The profile of a trial's values (or its row's parameters), if it has one."""
    profile = values.get(PROFILE)
    return profile if isinstance(profile, str) else None


def lay_over(base: Any, layer: Any) -> Any:
    """``layer`` laid over ``base``: mappings without a ``name`` merged key by key, anything
    else (a plugin block, a list, a value) replacing ``base``."""
    if isinstance(layer, Mapping) and isinstance(base, Mapping) and "name" not in layer:
        merged = dict(copy.deepcopy(base))
        for key, value in layer.items():
            merged[key] = lay_over(base.get(key), value)
        return merged
    return copy.deepcopy(layer)


def profile_raw(raw: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """The raw recipe of a profile: ``raw`` with the profile's sections laid over it."""
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    for section in PROFILE_SECTIONS:
        value = getattr(profile, section)
        if value is not None:  # given by the profile (a null inside a block is kept)
            out[section] = lay_over(out.get(section), value)
    return out


def without_profile(values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's values but its profile: the space keys to apply to its profile's recipe."""
    return {k: v for k, v in values.items() if k != PROFILE}


def base_raw(raw: Mapping[str, Any], search: Search, values: Mapping[str, Any]) -> dict[str, Any]:
    """The raw recipe a trial's values apply to: its profile's, or the recipe's own."""
    profile = profile_of(values)
    if profile is None:
        if search.profiles:
            raise RecipeError(f"trial values {dict(values)} name no profile of search.profiles")
        return dict(raw)
    if profile not in search.profiles:
        known = ", ".join(search.profiles) or "none"
        raise RecipeError(f"profile {profile!r} is not in search.profiles (profiles: {known})")
    return profile_raw(raw, search.profiles[profile])


class ProfileTrial:
    """A trial whose suggestions are named ``PROFILE:KEY``: one profile's part of a trial."""

    def __init__(self, trial: SuggestsValues, profile: str) -> None:
        self.trial = trial
        self.profile = profile

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """The inner trial's float, under the profile's name."""
        return self.trial.suggest_float(
            param_name(self.profile, name), low, high, step=step, log=log
        )

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """The inner trial's integer, under the profile's name."""
        return self.trial.suggest_int(param_name(self.profile, name), low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        """The inner trial's choice, under the profile's name."""
        return self.trial.suggest_categorical(param_name(self.profile, name), choices)


def draw_values(
    trial: SuggestsValues, search: Search, raw: Mapping[str, Any], registry: Registry
) -> dict[str, Any]:
    """A trial's values: with profiles, its profile first, then that profile's space alone."""
    if not search.profiles:
        return suggest(trial, search.space, raw, registry)
    name = str(trial.suggest_categorical(PROFILE, list(search.profiles)))
    profile = search.profiles[name]
    drawn = suggest(ProfileTrial(trial, name), profile.space, profile_raw(raw, profile), registry)
    return {PROFILE: name, **drawn}


def validate_profiles(
    raw: Mapping[str, Any], registry: Registry, search: Search
) -> dict[str, Recipe]:
    """Each profile's recipe as written, by name, its recipe and its space checked before any
    work: a RecipeError names the profile and the key."""
    recipes: dict[str, Recipe] = {}
    for name, profile in search.profiles.items():
        where = f"search.profiles.{name}"
        merged = profile_raw(raw, profile)
        try:
            recipes[name] = validate_recipe(merged, registry)
        except RecipeError as exc:
            raise RecipeError(error_at(where, exc)) from None
        try:
            validate_space(merged, registry, profile.space)
        except RecipeError as exc:
            raise RecipeError(f"{where}.space: {str(exc).removeprefix('search.space: ')}") from None
    return recipes


def baseline_params(name: str, recipe: Recipe, profile: Profile) -> dict[str, Any]:
    """The Optuna parameters that run ``profile`` as written: its name and its recipe's own
    value of each key of its space that the space can draw."""
    own = recipe_values(recipe, profile.space)
    return {PROFILE: name, **{param_name(name, key): value for key, value in own.items()}}
