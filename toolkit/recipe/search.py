"""The recipe's search section: an Optuna study over recipe variations, its space of
distributions, its sampler and pruner, and its profiles (model families)."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from toolkit.metrics import DEFAULT_METRIC, get_metric
from toolkit.recipe.section import PluginSpec, Strict


class Range(Strict):
    """A numeric search range: integers when ``low`` and ``high`` are (or ``type: int``)."""

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = Field(None, gt=0)
    type: Literal["int", "float"] | None = None

    @model_validator(mode="after")
    def _check(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("choose one of log and step")
        if self.is_int and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an int range needs whole low and high (got {self.low}, {self.high})")
        return self

    @property
    def is_int(self) -> bool:
        """Whether values are integers."""
        if self.type is not None:
            return self.type == "int"
        bounds = (self.low, self.high, *(() if self.step is None else (self.step,)))
        return all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)


class Choices(Strict):
    """A categorical search dimension: one of ``choices`` (strings, numbers, booleans, null)."""

    choices: list[bool | int | float | str | None] = Field(min_length=1)


def _distribution_tag(value: Any) -> str:
    if isinstance(value, Choices) or (isinstance(value, dict) and "choices" in value):
        return "choices"
    return "range"


Distribution = Annotated[
    Annotated[Range, Tag("range")] | Annotated[Choices, Tag("choices")],
    Discriminator(_distribution_tag),
]
"""One dimension of the search space: ``{low, high, log, step}`` or ``{choices: [...]}``."""


def _checked_space(value: Any) -> Any:
    """Each distribution of a space checked, a one-line message naming its key."""
    if not isinstance(value, dict):
        return value
    return {str(key): _distribution(str(key), dist) for key, dist in value.items()}


Space = Annotated[dict[str, Distribution], BeforeValidator(_checked_space)]
"""A search space: key -> distribution (``search.space``, a profile's ``space``)."""


class Sampler(Strict):
    """How trials choose their parameters (seeded: trial N draws with seed + N)."""

    name: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    n_startup_trials: int = Field(10, ge=0, description="tpe: random trials before modelling")


class Pruner(Strict):
    """How unpromising trials are stopped early, on their per-epoch validation metric."""

    name: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="median: finished trials before pruning")
    n_warmup_steps: int = Field(0, ge=0, description="median: epochs before a trial can stop")
    min_resource: int = Field(1, ge=1, description="hyperband: fewest epochs of a trial")
    reduction_factor: int = Field(3, ge=2, description="hyperband: keep 1 trial in this many")


PROFILE_NAME = r"^[A-Za-z0-9_-]+$"
"""A profile's name: letters, digits, ``_`` and ``-`` (its parameters are ``NAME:KEY``)."""


class Profile(Strict):
    """A model family of a study: a partial recipe its trials start from, and its own space.

    Its sections replace or complete the recipe's (see :mod:`toolkit.study.profiles`): a
    mapping with a ``name`` (a plugin block, an optimizer) or a list replaces the recipe's
    whole, another mapping (``train``, ``model``) is merged into it key by key.
    """

    separator: PluginSpec | None = None
    features: PluginSpec | list[PluginSpec] | None = None
    augmenters: list[PluginSpec] | None = None
    model: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    predict: dict[str, Any] | None = None
    space: Space = Field(default_factory=dict)
    share: float = Field(
        1.0, gt=0, description="search.budget: shares: its relative share of the study's time"
    )
    seeds: int | None = Field(
        None, ge=0, description="models per chosen trial of this profile (default ensemble.seeds)"
    )


class Search(Strict):
    """An Optuna study over recipe variations: every trial is the recipe with ``space`` applied
    (with ``profiles``: one profile's recipe with its own space applied)."""

    n_trials: int = Field(20, ge=1, description="complete + pruned trials to reach")
    timeout: float | None = Field(None, gt=0, description="seconds; no new trial after this")
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    metric: str = Field(DEFAULT_METRIC, description="a name from toolkit.metrics.METRICS")
    study_name: str | None = Field(None, min_length=1, description="default: the recipe name")
    storage: str | None = Field(None, description="Optuna RDB URL; default: RUN_DIR/study.db")
    space: Space = Field(default_factory=dict)
    baseline: bool = Field(
        True,
        description="trial 0 runs the recipe's own values of the space (with profiles: a "
        "first trial per profile, the profile as written)",
    )
    profiles: dict[str, Profile] = Field(default_factory=dict)
    """Model families (name -> partial recipe and space): each trial draws one, then its values;
    ``null`` leaves a profile out (``--set search.profiles.NAME=null``)."""
    budget: Literal["sampler", "shares", "improvement"] = Field(
        "sampler",
        description="how trials are shared among profiles: the sampler draws each trial's "
        "profile; shares: the profile furthest below its share of the time spent; improvement: "
        "the profile whose best improved most per second lately, none below half its share",
    )

    overrun: Literal["skip", "allow"] = Field(
        "skip",
        description="skip: no trial starts that its kind's trials say would end more than 10% "
        "of search.timeout past it (with profiles, another profile that fits instead; none: "
        "the study ends); allow: trials start until the timeout",
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        """A metric of the table, or an error naming the closest one."""
        get_metric(value)
        return value

    @field_validator("profiles", mode="before")
    @classmethod
    def _profiles(cls, value: Any, info: ValidationInfo) -> Any:
        """Profiles set to null left out; names checked; at least one left when any was named;
        no shared space (each profile has its own: a shared one would fit unlike models)."""
        if not isinstance(value, dict):
            return value
        if value and info.data.get("space"):
            raise PydanticCustomError(
                "profiles",
                "with profiles, each has its own space: move search.space into "
                "search.profiles.NAME.space",
            )
        kept = {str(name): p for name, p in value.items() if p is not None}
        for name in kept:
            if not re.fullmatch(PROFILE_NAME, name):
                raise PydanticCustomError(
                    "profile_name",
                    f"{name!r}: a profile's name is letters, digits, '_' and '-'",
                )
        if value and not kept:
            raise PydanticCustomError(
                "profiles", "every profile is null; keep one, or remove search.profiles"
            )
        return kept

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: str, info: ValidationInfo) -> str:
        """Shares and improvement divide the trials among profiles: there must be some (not
        said again when the profiles themselves are wrong)."""
        if value != "sampler" and "profiles" in info.data and not info.data["profiles"]:
            raise PydanticCustomError(
                "budget", f"{value} divides the trials among search.profiles; name some"
            )
        return value


def _distribution(key: str, value: Any) -> Range | Choices:
    """A space entry as a :class:`Range` or :class:`Choices`, or a one-line error."""
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "distribution", f"{key}: expected {{low, high}} or {{choices: [...]}}, got {value!r}"
        )
    model: type[Range] | type[Choices] = Choices if "choices" in value else Range
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        field = ".".join(str(part) for part in err["loc"])
        if err["loc"][:1] == ("choices",) and len(err["loc"]) > 1:
            message = (
                f"choices[{err['loc'][1]}]: a choice must be a string, number, boolean or null, "
                f"got {err['input']!r}"
            )
        elif err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, list(model.model_fields), n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else f"use {', '.join(model.model_fields)}"
            )
            message = f"unknown key {field!r}; {hint}"
        else:
            message = f"{field + ': ' if field else ''}{err['msg'].removeprefix('Value error, ')}"
        raise PydanticCustomError("distribution", f"{key}: {message}") from None
