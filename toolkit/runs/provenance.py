"""What a trained model's leaderboard row records so that it can be run again.

The resolved recipe (relative paths made absolute), the metric that chose
its best epoch, the plugins it used with their sources and versions, and the
versions of Python and of the libraries that compute its numbers.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from toolkit.recipe.keypaths import get_path, set_path
from toolkit.recipe.schema import PATH_KEYS, Recipe
from toolkit.registry.table import Registry

LIBRARIES = ("toolkit", "torch", "torchaudio", "timm", "numpy")
"""Distributions whose versions a row records (Python's is recorded too)."""


def library_versions() -> dict[str, str]:
    """Python's version and each of :data:`LIBRARIES`' installed versions."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def used_plugins(recipe: Recipe, registry: Registry) -> dict[str, dict[str, str]]:
    """``kind/name`` -> source and version of every plugin the recipe uses."""
    specs: list[tuple[str, dict[str, Any]]] = [
        ("separators", recipe.separator),
        *(("feature_extractors", block) for block in recipe.feature_streams),
        ("backbones", recipe.model.backbone),
        *(("augmenters", spec) for spec in recipe.augmenters),
    ]
    used = {}
    for kind, spec in specs:
        entry = registry.get_info(kind, spec["name"])
        used[f"{kind}/{entry.name}"] = {
            "source": entry.source,
            "source_version": entry.source_version,
            "version": entry.version,
        }
    return used


def absolute_recipe(recipe: Recipe, cwd: Path | None = None) -> dict[str, Any]:
    """The resolved recipe as a mapping whose relative paths are made absolute from ``cwd``
    (a recipe read by :func:`toolkit.recipe.loading.load_recipe` has none left)."""
    base = Path(cwd or os.getcwd())
    data = recipe.model_dump(mode="json")
    for key in PATH_KEYS:
        value = get_path(data, key)
        if value is not None:
            set_path(data, key, str((base / value).resolve()))
    data["plugins"] = [str((base / p).resolve()) for p in data.get("plugins", [])]
    return data


def model_provenance(
    recipe: Recipe, registry: Registry, metric: str, model_dir: Path
) -> dict[str, Any]:
    """What a model's row records to be reproduced (see the module docstring)."""
    return {
        "recipe": absolute_recipe(recipe),
        "metric": metric,
        "dir": str(Path(model_dir).resolve()),
        "plugins": used_plugins(recipe, registry),
        "versions": library_versions(),
    }


def version_changes(recorded: dict[str, str]) -> list[str]:
    """``name a -> b`` for each recorded library whose installed version differs now."""
    now = library_versions()
    return [
        f"{name} {old} -> {now.get(name, 'not installed')}"
        for name, old in recorded.items()
        if now.get(name, "not installed") != old
    ]
