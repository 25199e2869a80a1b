"""The search space of a recipe: dotted recipe keys mapped to distributions.

A key is any recipe path (``train.optimizer.lr``), a plugin parameter
(``model.backbone.width``, ``augmenters.2.alpha``) or a plugin choice
(``model.backbone.name``). A trial's values are applied to the raw recipe
mapping, plugin choices first: switching a block to another plugin keeps only
the parameters the new plugin accepts (the rest of its parameters take their
defaults), and a parameter key whose block's plugin does not take it is not
sampled in that trial (Optuna's define-by-run, conditional spaces).

Keys under ``data``, ``split``, ``cache``, ``output``, ``search``, ``ensemble``,
``name`` and ``plugins`` are refused: every trial must see the same clips, the
same split and write to the same run, so that their validation predictions are
comparable and can be ensembled.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from toolkit.errors import RecipeError
from toolkit.recipe.keypaths import get_path, set_path
from toolkit.recipe.schema import FEATURE_ENGINE_KEYS, Model, Recipe
from toolkit.recipe.search import Choices, Distribution, Range
from toolkit.recipe.validation import PLUGIN_BLOCKS, validate_recipe
from toolkit.registry.table import Registry

FORBIDDEN_SECTIONS = ("name", "plugins", "data", "split", "cache", "output", "search", "ensemble")
"""Top-level recipe keys a search may not vary."""

_SINGLE_BLOCKS: dict[tuple[str, ...], str] = {path: kind for kind, path in PLUGIN_BLOCKS}
_DEFAULT_PLUGINS: dict[tuple[str, ...], str] = {
    ("separator",): str(
        Recipe.model_fields["separator"].get_default(call_default_factory=True)["name"]
    ),
    ("features",): str(
        Recipe.model_fields["features"].get_default(call_default_factory=True)["name"]
    ),
    ("model", "backbone"): str(Model().backbone["name"]),
}


class SuggestsValues(Protocol):
    """The part of ``optuna.Trial`` the space needs (so tests can pass a stand-in)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class SpaceKey:
    """A parsed search key: its path, and the plugin block it falls in, if any."""

    key: str
    path: tuple[str, ...]
    block: tuple[str, ...] | None = None
    kind: str | None = None
    param: str | None = None

    @property
    def is_choice(self) -> bool:
        """Whether the key picks the block's plugin (``model.backbone.name``)."""
        return self.block is not None and self.param == "name"


def parse_key(key: str) -> SpaceKey:
    """Split a dotted key and find its plugin block; refuse keys that break comparability."""
    parts = tuple(key.split("."))
    if not key or any(not p for p in parts):
        raise RecipeError(
            f"search.space: {key!r} is not a dotted recipe key like train.optimizer.lr"
        )
    if parts[0] in FORBIDDEN_SECTIONS:
        raise RecipeError(
            f"search.space: {key}: keys under {parts[0]}.* cannot be searched: every trial "
            "must share the data, split and run so their validation predictions compare"
        )
    if parts[0] == "features" and len(parts) > 1 and parts[1].isdigit():  # one of several streams
        param = parts[2] if len(parts) > 2 else "name"
        return SpaceKey(key, parts, parts[:2], "feature_extractors", param)
    for block, kind in _SINGLE_BLOCKS.items():
        if parts[: len(block)] == block:
            param = parts[len(block)] if len(parts) > len(block) else "name"
            return SpaceKey(key, parts, block, kind, param)
    if parts[0] == "augmenters":
        if len(parts) < 2 or not parts[1].isdigit():
            raise RecipeError(
                f"search.space: {key}: name an augmenter by its position, e.g. augmenters.0.copies"
            )
        param = parts[2] if len(parts) > 2 else "name"
        return SpaceKey(key, parts, parts[:2], "augmenters", param)
    return SpaceKey(key, parts)


def parse_space(space: Mapping[str, Distribution]) -> list[tuple[SpaceKey, Distribution]]:
    """Parsed keys with their distributions: plugin choices first, then in recipe order."""
    parsed = [(parse_key(key), dist) for key, dist in space.items()]
    return [p for p in parsed if p[0].is_choice] + [p for p in parsed if not p[0].is_choice]


def sample_values(dist: Distribution) -> list[Any]:
    """Representative values of a distribution for validation: its ends, or every choice."""
    if isinstance(dist, Choices):
        return list(dist.choices)
    if dist.is_int:
        return sorted({int(dist.low), int(dist.high)})
    return sorted({float(dist.low), float(dist.high)})


def suggest(
    trial: SuggestsValues,
    space: Mapping[str, Distribution],
    raw: Mapping[str, Any],
    registry: Registry,
) -> dict[str, Any]:
    """Draw a trial's values: plugin choices first, then the parameters their plugins take."""
    values: dict[str, Any] = {}
    parsed = parse_space(space)
    for skey, dist in parsed:
        if skey.is_choice:
            values[skey.key] = _suggest_one(trial, skey.key, dist)
    chosen = apply_values(raw, values, registry)
    for skey, dist in parsed:
        if not skey.is_choice and _applies(chosen, skey, registry):
            values[skey.key] = _suggest_one(trial, skey.key, dist)
    return values


def _suggest_one(trial: SuggestsValues, key: str, dist: Distribution) -> Any:
    if isinstance(dist, Choices):
        return trial.suggest_categorical(key, list(dist.choices))
    assert isinstance(dist, Range)
    if dist.is_int:
        step = 1 if dist.step is None else int(dist.step)
        return trial.suggest_int(key, int(dist.low), int(dist.high), step=step, log=dist.log)
    step_f = None if dist.step is None else float(dist.step)
    return trial.suggest_float(key, float(dist.low), float(dist.high), step=step_f, log=dist.log)


def apply_values(
    raw: Mapping[str, Any], values: Mapping[str, Any], registry: Registry
) -> dict[str, Any]:
    """A copy of the raw recipe with a trial's values set, plugin choices first.

    Choosing another plugin for a block keeps only the block's parameters the new
    plugin accepts; a parameter its block's plugin does not take is skipped.
    """
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    parsed = [parse_key(key) for key in values]
    for skey in parsed:
        if skey.is_choice:
            assert skey.block is not None and skey.kind is not None
            name = values[skey.key]
            old = _block(out, skey.block)
            accepted = _accepted(registry, skey.kind, name, skey.key)
            kept = {k: v for k, v in old.items() if k != "name" and k in accepted}
            set_path(out, skey.block, {"name": name, **kept}, f"search.space: {skey.key}")
    for skey in parsed:
        if skey.is_choice or not _applies(out, skey, registry):
            continue
        if skey.block is not None:
            set_path(out, skey.block, _block(out, skey.block), f"search.space: {skey.key}")
        set_path(out, skey.path, values[skey.key], f"search.space: {skey.key}")
    return out


def _applies(raw: Mapping[str, Any], skey: SpaceKey, registry: Registry) -> bool:
    """Whether a parameter key is taken by its block's current plugin (always, off blocks)."""
    if skey.block is None:
        return True
    assert skey.kind is not None and skey.param is not None
    name = _block(raw, skey.block)["name"]
    if not isinstance(name, str) or not registry.is_registered(skey.kind, name):
        return True  # let recipe validation name the unknown plugin
    return skey.param in _accepted(registry, skey.kind, name, skey.key)


def _accepted(registry: Registry, kind: str, name: Any, key: str) -> set[str]:
    if not isinstance(name, str):
        raise RecipeError(f"search.space: {key}: a plugin name must be a string, got {name!r}")
    accepted = set(registry.get_info(kind, name, f"search.space: {key}").params.model_fields)
    return accepted | set(FEATURE_ENGINE_KEYS) if kind == "feature_extractors" else accepted


def _block(raw: Mapping[str, Any], block: tuple[str, ...]) -> dict[str, Any]:
    """The plugin block at ``block`` as a mapping (a bare name becomes ``{name: ...}``)."""
    node = get_path(raw, block)
    if node is None:
        if block in _DEFAULT_PLUGINS:
            return {"name": _DEFAULT_PLUGINS[block]}
        section = block[0]
        items = raw.get(section)
        count = len(items) if isinstance(items, list) else 0
        raise RecipeError(
            f"search.space: {'.'.join(block)}: no such item; the recipe's {section} has {count} "
            f"({section}.0 to {section}.{count - 1})"
            if count
            else f"search.space: {'.'.join(block)}: the recipe has no list of {section}"
        )
    if isinstance(node, str):
        return {"name": node}
    if not isinstance(node, Mapping):
        raise RecipeError(f"search.space: {'.'.join(block)}: expected a plugin block mapping")
    return dict(node)


def validate_space(
    raw: Mapping[str, Any], registry: Registry, space: Mapping[str, Distribution]
) -> None:
    """Check every key and value of the space against the recipe before any work.

    Each key is set to each representative value (range ends, every choice), with
    the block's plugin chosen among the searched ones that take the parameter,
    and the whole recipe is validated, so a typo names the key and the closest
    valid name.
    """
    parsed = parse_space(space)
    base: dict[str, Any] = {skey.key: sample_values(dist)[0] for skey, dist in parsed}
    choices = {skey.block: (skey, dist) for skey, dist in parsed if skey.is_choice}
    for skey, dist in parsed:
        values = dict(base)
        if not skey.is_choice and skey.block is not None:
            plugins = _candidate_plugins(raw, skey, choices, registry)
            taking = [
                p
                for p in plugins
                if skey.param in _accepted(registry, skey.kind or "", p, skey.key)
            ]
            if not taking:
                raise RecipeError(_unknown_param(skey, plugins, registry))
            if skey.block in choices:
                values[choices[skey.block][0].key] = taking[0]
        for value in sample_values(dist):
            values[skey.key] = value
            problem = _check(apply_values(raw, values, registry), registry)
            if problem is not None:
                where = "" if problem.startswith(skey.key) else f"{skey.key}={value!r}: "
                raise RecipeError(f"search.space: {where}{problem}")


def _candidate_plugins(
    raw: Mapping[str, Any],
    skey: SpaceKey,
    choices: Mapping[tuple[str, ...] | None, tuple[SpaceKey, Distribution]],
    registry: Registry,
) -> list[str]:
    if skey.block in choices:
        dist = choices[skey.block][1]
        names = [str(c) for c in sample_values(dist)]
    else:
        names = [str(_block(raw, skey.block or ())["name"])]
    for name in names:
        registry.get_info(skey.kind or "", name, f"search.space: {'.'.join(skey.block or ())}")
    return names


def _unknown_param(skey: SpaceKey, plugins: list[str], registry: Registry) -> str:
    known: dict[str, None] = {}
    for name in plugins:
        known.update(dict.fromkeys(_accepted(registry, skey.kind or "", name, skey.key)))
    close = difflib.get_close_matches(skey.param or "", list(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"parameters: {', '.join(sorted(known))}"
    takers = " or ".join(repr(p) for p in plugins)
    return f"search.space: {skey.key}: plugin {takers} takes no parameter {skey.param!r}; {hint}"


def _check(raw: dict[str, Any], registry: Registry) -> str | None:
    """The first validation problem of a raw recipe (as a trial's model: without its search,
    ensemble and pseudo-label round), or ``None``."""
    trial = {k: v for k, v in raw.items() if k not in ("search", "ensemble", "semi_supervised")}
    try:
        validate_recipe(trial, registry)
    except RecipeError as exc:
        return str(exc)
    return None


def recipe_values(recipe: Recipe, space: Mapping[str, Distribution]) -> dict[str, Any]:
    """The recipe's own value of each space key that its distribution can draw.

    Used to enqueue the recipe as written as a study's first trial. Keys whose
    value lies outside their distribution (or that the recipe's plugin does not
    take) are left out: the sampler draws them.
    """
    resolved = recipe.model_dump(mode="json")
    values: dict[str, Any] = {}
    for skey, dist in parse_space(space):
        path = skey.block if skey.is_choice and skey.block is not None else skey.path
        node = get_path(resolved, path, _MISSING)
        if skey.is_choice and isinstance(node, dict):
            node = node.get("name", _MISSING)
        if node is not _MISSING and _drawable(dist, node):
            values[skey.key] = node
    return values


_MISSING = object()


def _drawable(dist: Distribution, value: Any) -> bool:
    if isinstance(dist, Choices):
        return any(type(value) is type(c) and value == c for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if dist.is_int and not float(value).is_integer():
        return False
    if not dist.low <= value <= dist.high:
        return False
    if dist.step is not None:
        steps = (value - dist.low) / dist.step
        return abs(steps - round(steps)) < 1e-9
    return True
