"""toolkit: a plugin-based AutoML toolkit for audio-classification competitions."""

from __future__ import annotations

from typing import Any

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
    "DatasetAugmenter",
    "FeatureExtractor",
    "Separator",
    "TestTimeAugmenter",
    "__version__",
    "hookimpl",
    "predict",
]


def __getattr__(name: str) -> Any:
    """``toolkit.predict`` (:func:`toolkit.deploy.prediction.predict`), imported on first use
    so that importing toolkit stays light."""
    if name == "predict":
        from toolkit.deploy.prediction import predict

        return predict
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
