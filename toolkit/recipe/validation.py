"""A recipe mapping validated: every plugin block checked by its plugin, then the schema.

Engine sections are checked by :mod:`toolkit.recipe.schema`'s pydantic models; plugin
blocks (``separator``, ``features``, ``augmenters``, ``model.backbone``,
``predict.tta``) by the plugin each names, which fills in its defaults.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic

from toolkit.errors import RecipeError, error_at
from toolkit.recipe.class_keys import ClassKeyed, model_class_keys
from toolkit.recipe.keypaths import get_path, set_path
from toolkit.recipe.schema import (
    FEATURE_ENGINE_KEYS,
    FEATURE_INPUTS,
    Recipe,
    plugin_params,
    stream_label,
)
from toolkit.registry.kinds import TestTimeAugmenter
from toolkit.registry.table import Registry, format_validation_error

PLUGIN_BLOCKS = (
    ("separators", ("separator",)),
    ("feature_extractors", ("features",)),
    ("backbones", ("model", "backbone")),
)
"""Recipe blocks that name a single plugin, by kind and key path (``features`` may be a list)."""


def resolve_plugin_blocks(raw: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """Validate every plugin block against its plugin and fill in parameter defaults."""
    resolved = copy.deepcopy(raw)
    for kind, path in PLUGIN_BLOCKS:
        spec = get_path(resolved, path)
        if spec is None:
            continue
        key = ".".join(path)
        if kind == "feature_extractors":
            streams = spec if isinstance(spec, list) else None
            if streams is not None and not streams:
                raise RecipeError(f"{key}: an empty list; name one feature block or more")
            blocks = [
                _resolve_feature_block(registry, block, f"{key}[{i}]" if streams else key)
                for i, block in enumerate(streams if streams is not None else [spec])
            ]
            set_path(resolved, path, blocks if streams is not None else blocks[0])
        else:
            set_path(resolved, path, _resolve_spec(registry, kind, spec, key))
    augmenters = resolved.get("augmenters") or []
    resolved["augmenters"] = [
        _resolve_spec(registry, "augmenters", spec, f"augmenters[{i}]")
        for i, spec in enumerate(augmenters)
    ]
    predict = resolved.get("predict")
    if isinstance(predict, dict) and isinstance(predict.get("tta"), list):
        predict["tta"] = [
            _resolve_spec(registry, "augmenters", spec, f"predict.tta[{i}]")
            for i, spec in enumerate(predict["tta"])
        ]
        for i, spec in enumerate(predict["tta"]):
            _check_test_time(registry, spec["name"], f"predict.tta[{i}]")
    return resolved


def _check_test_time(registry: Registry, name: str, key: str) -> None:
    """A RecipeError when plugin ``name`` is a class, but no test-time augmenter."""
    factory = registry.get_info("augmenters", name, key).factory
    if isinstance(factory, type) and not issubclass(factory, TestTimeAugmenter):
        raise RecipeError(
            f"{key}: plugin {name!r} is not a TestTimeAugmenter "
            "(a training augmenter belongs under augmenters:)"
        )


def _resolve_feature_block(registry: Registry, spec: Any, key: str) -> dict[str, Any]:
    """A feature block resolved by its plugin, with its engine keys checked and kept."""
    if not isinstance(spec, dict) or not any(k in spec for k in FEATURE_ENGINE_KEYS):
        return _resolve_spec(registry, "feature_extractors", spec, key)
    engine = {k: spec[k] for k in FEATURE_ENGINE_KEYS if k in spec}
    if "input" in engine and engine["input"] not in FEATURE_INPUTS:
        raise RecipeError(
            f"{key}.input: {engine['input']!r} is not one of {', '.join(FEATURE_INPUTS)} "
            "(the separator's output, or the decoded clip)"
        )
    if "enabled" in engine and not isinstance(engine["enabled"], bool):
        raise RecipeError(f"{key}.enabled: expected true or false, got {engine['enabled']!r}")
    return {**_resolve_spec(registry, "feature_extractors", plugin_params(spec), key), **engine}


def _resolve_spec(registry: Registry, kind: str, spec: Any, key: str) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise RecipeError(f"{key}: expected a mapping with a 'name', got {spec!r}")
    return registry.resolve(kind, spec, key)


def stream_mode(recipe: Recipe, registry: Registry) -> str:
    """How the backbone takes the feature streams (its ``streams``); unlike streams it stacks
    as channels are a RecipeError."""
    entry = registry.get_info("backbones", recipe.model.backbone["name"], "model.backbone")
    streams = recipe.feature_streams
    if not streams:
        raise RecipeError("features: every stream is enabled: false; enable one")
    if entry.streams == "stack" and len(streams) > 1:
        settings = {json.dumps(plugin_params(b), sort_keys=True, default=str) for b in streams}
        if len(settings) > 1:
            names = ", ".join(stream_label(b) for b in streams)
            raise RecipeError(
                f"features: the streams {names} differ in plugin or settings, so their shapes "
                f"differ; backbone {entry.name!r} stacks streams as channels of one map: give "
                "them one plugin and settings, or use an embedding head (model.backbone: "
                "{name: head}) that pools and concatenates them"
            )
    return entry.streams


def check_packed_augmenters(recipe: Recipe, registry: Registry) -> None:
    """A backbone that takes its streams packed gets no augmenter that works along a feature
    map's axes (it would cut across the streams): a RecipeError naming it otherwise."""
    backbone = recipe.model.backbone["name"]
    if registry.get_info("backbones", backbone, "model.backbone").streams != "pack":
        return
    blocks = [(f"augmenters[{i}]", s) for i, s in enumerate(recipe.augmenters)]
    blocks += [(f"predict.tta[{i}]", s) for i, s in enumerate(recipe.predict.tta)]
    for key, spec in blocks:
        factory = registry.get_info("augmenters", spec["name"], key).factory
        if getattr(factory, "along_axes", False):
            raise RecipeError(
                f"{key}: {spec['name']!r} works along a feature map's axes, but backbone "
                f"{backbone!r} takes its streams packed (flattened side by side), where it "
                "would cut across them; remove it (waveform augmenters: gain, time_roll, remix)"
            )


def _check_grouping(recipe: Recipe, registry: Registry) -> None:
    """``split.group_by: voice`` has a separated voice and the speaker encoder to compare."""
    split = recipe.split
    if split.groups != "auto" or "voice" not in split.group_by:
        return
    if recipe.separator["name"] == "none":
        raise RecipeError("split.group_by: voice needs a separated voice; set separator.name")
    if not registry.is_registered("feature_extractors", "speaker"):
        raise RecipeError(
            "split.group_by: voice needs the speaker feature extractor; install resemblyzer's "
            "weights (see docs/speaker.md) or group by song only"
        )


def validate_recipe(
    raw: dict[str, Any], registry: Registry, source: Path | str | None = None
) -> Recipe:
    """The typed recipe of a raw mapping, plugin blocks included; errors name ``source``."""
    try:
        resolved = resolve_plugin_blocks(raw, registry)
        recipe = Recipe.model_validate(resolved)
        stream_mode(recipe, registry)
        check_packed_augmenters(recipe, registry)
        _check_semi_supervised(recipe)
        _check_grouping(recipe, registry)
        return recipe
    except RecipeError as exc:
        raise RecipeError(error_at(source, exc)) from None
    except pydantic.ValidationError as exc:
        raise RecipeError(error_at(source, format_validation_error(exc, "", Recipe))) from None


def _check_semi_supervised(recipe: Recipe) -> None:
    """Pseudo-labels: a plain run's own round needs a single split, a study's round (after
    its ensemble) works with folds but not with refits; a RecipeError otherwise."""
    if recipe.semi_supervised is None:
        return
    study = recipe.search is not None or recipe.ensemble is not None
    if not study and recipe.split.folds > 1:
        raise RecipeError(
            "semi_supervised: a plain run's pseudo-label round needs a single split; set "
            "split.folds: 1, or add a search: or ensemble: section (a study's round follows "
            "its ensemble and works with folds)"
        )
    if recipe.ensemble is not None and recipe.ensemble.refit:
        raise RecipeError(
            "semi_supervised: pseudo-labelled models are not refit on every clip; set "
            "ensemble.refit: false or remove semi_supervised"
        )


def plugin_blocks(sections: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """Each plugin block of a recipe's (or a profile's) sections as ``(kind, key, block)``;
    feature blocks without the engine's keys."""
    separator = sections.get("separator")
    if separator is not None:
        yield "separators", f"{prefix}separator", separator
    features = sections.get("features")
    if isinstance(features, list):
        for i, block in enumerate(features):
            yield "feature_extractors", f"{prefix}features[{i}]", _engine_free(block)
    elif features is not None:
        yield "feature_extractors", f"{prefix}features", _engine_free(features)
    backbone = get_path(sections, ("model", "backbone"))
    if backbone is not None:
        yield "backbones", f"{prefix}model.backbone", backbone
    for i, spec in enumerate(sections.get("augmenters") or []):
        yield "augmenters", f"{prefix}augmenters[{i}]", spec
    for i, spec in enumerate(get_path(sections, ("predict", "tta")) or []):
        yield "augmenters", f"{prefix}predict.tta[{i}]", spec


def _engine_free(block: Any) -> Any:
    return plugin_params(block) if isinstance(block, dict) else block


def class_keyed_settings(recipe: Recipe, registry: Registry) -> list[ClassKeyed]:
    """Every setting of the recipe that names classes (``data.class_names``, a plugin's
    :data:`~toolkit.recipe.class_keys.ClassMap` parameters, its search profiles' too), by key
    path."""
    found = list(model_class_keys(recipe.data, "data"))
    sections: list[tuple[str, Mapping[str, Any]]] = [("", recipe.model_dump())]
    if recipe.search is not None:
        sections += [
            (f"search.profiles.{name}.", profile.model_dump())
            for name, profile in recipe.search.profiles.items()
        ]
    for prefix, section in sections:
        for kind, key, block in plugin_blocks(section, prefix):
            spec = {"name": block} if isinstance(block, str) else block
            found += model_class_keys(registry.validate(kind, spec, key), key)
    return found
