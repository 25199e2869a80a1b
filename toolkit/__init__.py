"""toolkit: a plugin-based AutoML toolkit for audio-classification competitions."""

from __future__ import annotations

from typing import Any

from toolkit.errors import (
    DataError,
    ModelError,
    PluginLoadError,
    RecipeError,
    RunInterrupted,
    SearchError,
    ToolkitError,
)
from toolkit.recipe.class_keys import ClassMap
from toolkit.registry.hookspecs import hookimpl
from toolkit.registry.kinds import (
    BatchAugmenter,
    DatasetAugmenter,
    FeatureExtractor,
    Separator,
    TestTimeAugmenter,
)

__version__ = "0.1.0"

__all__ = [
    "BatchAugmenter",
    "ClassMap",
    "DataError",
    "DatasetAugmenter",
    "FeatureExtractor",
    "ModelError",
    "PluginLoadError",
    "RecipeError",
    "Run",
    "RunEstimate",
    "RunInterrupted",
    "SearchError",
    "Separator",
    "TestTimeAugmenter",
    "ToolkitError",
    "__version__",
    "hookimpl",
    "leaderboard",
    "load_run",
    "predict",
    "run",
]

_LAZY = {
    "predict": "toolkit.deploy.prediction",
    "run": "toolkit.api",
    "load_run": "toolkit.api",
    "Run": "toolkit.api",
    "RunEstimate": "toolkit.api",
}
"""Names imported on first use (from these modules), so that importing toolkit stays light.
``toolkit.leaderboard`` is the leaderboard package, which is callable: ``toolkit.leaderboard(
RUN_DIR_OR_DB)`` is :func:`toolkit.api.leaderboard`."""


def __getattr__(name: str) -> Any:
    """``toolkit.run``, ``load_run``, ``Run`` (:mod:`toolkit.api`), ``toolkit.predict``
    (:func:`toolkit.deploy.prediction.predict`) and ``toolkit.leaderboard``, imported on
    first use so that importing toolkit stays light."""
    import importlib

    if name == "leaderboard":
        return importlib.import_module("toolkit.leaderboard")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
