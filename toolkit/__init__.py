"""toolkit: a plugin-based AutoML toolkit for audio-classification competitions."""

from toolkit.hookspecs import hookimpl
from toolkit.kinds import (
    BatchAugmenter,
    DatasetAugmenter,
    FeatureExtractor,
    Separator,
    TestTimeAugmenter,
)

__version__ = "0.1.0"

__all__ = [
    "BatchAugmenter",
    "DatasetAugmenter",
    "FeatureExtractor",
    "Separator",
    "TestTimeAugmenter",
    "__version__",
    "hookimpl",
]
