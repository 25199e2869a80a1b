"""Plugin file templates for ``toolkit new KIND NAME``."""

from __future__ import annotations

import keyword
from pathlib import Path

from toolkit.errors import ToolkitError

_HEADER = '''"""{title}: a toolkit plugin. Name this file under `plugins:` in a recipe."""

from __future__ import annotations

'''

TEMPLATES = {
    "backbone": _HEADER
    + '''from collections import OrderedDict
from typing import TYPE_CHECKING

from toolkit import hookimpl

if TYPE_CHECKING:
    from torch import nn


def {name}(num_classes: int, in_channels: int, width: int = 32) -> nn.Module:
    """Maps spectrograms [B, in_channels, F, T] to logits [B, num_classes]."""
    # torch is imported here, when a run builds the network, not at the top of the
    # file: `toolkit plugins` and recipe checks import this file and stay fast.
    # A network with a forward() of its own: put its nn.Module class in a module
    # of its own and import that here.
    from torch import nn

    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            ),
            head=nn.Linear(width, num_classes),
        )
    )


@hookimpl
def register_backbones(register):
    register("{name}", {name}, description="{title}")

# In a recipe:  model: {{backbone: {{name: {name}, width: 32}}}}
''',
    "feature": _HEADER
    + '''from typing import TYPE_CHECKING

from toolkit import FeatureExtractor, hookimpl

if TYPE_CHECKING:
    import torch


class {cls}(FeatureExtractor):
    """Maps mono waves [B, T] to features [B, 1, F, T']."""

    def __init__(self, frame: int = 512) -> None:
        self.frame = frame

    def extract(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        # torch is imported here, not at the top of the file: `toolkit plugins`
        # and recipe checks import this file and stay fast.
        import torch

        frames = waves[:, : waves.shape[1] // self.frame * self.frame]
        frames = frames.reshape(waves.shape[0], -1, self.frame)
        spectrum = torch.fft.rfft(frames).abs().clamp_min(1e-6).log()
        return spectrum.transpose(1, 2).unsqueeze(1)


@hookimpl
def register_feature_extractors(register):
    # version enters the feature cache key: bump it when the output changes.
    register("{name}", {cls}, version="1", description="{title}")

# In a recipe:  features: {{name: {name}, frame: 512}}
''',
    "augmenter": _HEADER
    + '''import numpy as np

from toolkit import DatasetAugmenter, hookimpl


class {cls}(DatasetAugmenter):
    """Adds one noisy copy of every training example."""

    def __init__(self, scale: float = 0.1) -> None:
        self.scale = scale

    def expand(self, features, labels, rng: np.random.Generator):
        noise = rng.normal(0.0, self.scale, size=features.shape).astype(features.dtype)
        return features + noise, labels.copy()


@hookimpl
def register_augmenters(register):
    register("{name}", {cls}, description="{title}")

# In a recipe:  augmenters: [{{name: {name}, scale: 0.1}}]
''',
    "separator": _HEADER
    + '''import numpy as np

from toolkit import Separator, hookimpl


class {cls}(Separator):
    """Keeps the mixture's mid channel."""

    def separate(self, waves: np.ndarray) -> np.ndarray:
        return waves.mean(axis=1, keepdims=True)


@hookimpl
def register_separators(register):
    # What the engine feeds it: clips at input_sample_rate (None: the data's rate)
    # with input_channels channels. version enters the stem cache key: bump it
    # when the output changes.
    register(
        "{name}",
        {cls},
        input_sample_rate=None,
        input_channels=2,
        version="1",
        description="{title}",
    )

# In a recipe:  separator: {{name: {name}}}
''',
}
"""A runnable starting point per plugin kind, keyed by the kind's singular name.

Each imports only numpy and the toolkit at its top; torch is imported where the
plugin is built or run, so listing plugins stays fast (as the built-ins do)."""


def new_plugin(kind: str, name: str, directory: Path = Path(".")) -> Path:
    """Write a plugin file for ``kind`` registering ``name``; never overwrites."""
    if kind not in TEMPLATES:
        raise ToolkitError(f"unknown plugin kind {kind!r}; choose one of {', '.join(TEMPLATES)}")
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ToolkitError(f"plugin name {name!r} must be a Python identifier, e.g. my_net")
    path = Path(directory) / f"{name}.py"
    if path.exists():
        raise ToolkitError(f"{path} already exists; pick another name or remove it")
    cls = "".join(part.title() for part in name.split("_")) or "Plugin"
    title = f"{kind} {name}"
    path.write_text(TEMPLATES[kind].format(name=name, cls=cls, title=title))
    return path
