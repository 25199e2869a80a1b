"""A plugin's crash names the plugin: its kind, its name and its file, in one line (exit 1).

Real plugin files in a temporary folder, loaded as a recipe's ``plugins:`` are:
a backbone whose layer has the wrong width and a feature extractor that raises,
run through ``toolkit run``; then each kind's failure when built and when the
engine calls it, in this process.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import one_error_line, run_cli, write_recipe
from toolkit import BatchAugmenter, DatasetAugmenter
from toolkit.demo import DemoCompetition
from toolkit.errors import DataError
from toolkit.registry.guard import PluginError
from toolkit.registry.loader import load_plugins

WRONG_WIDTH = """
from torch import nn

from toolkit import hookimpl


class MyNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 8))
        self.fc = nn.Linear(16, num_classes)  # the pooled map has in_channels * 32 values

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


@hookimpl
def register_backbones(register):
    register("mynet", MyNet)
"""

RAISING_EXTRACTOR = """
from toolkit import FeatureExtractor, hookimpl


class Bands(FeatureExtractor):
    def extract(self, waves, sample_rate):
        raise ValueError(f"no band table for {sample_rate} Hz")


@hookimpl
def register_feature_extractors(register):
    register("bands", Bands)
"""


def _run(tmp_path: Path, root: Path, plugin: str, text: str, replace: tuple[str, str]) -> str:
    """``toolkit run`` of the tiny recipe with the plugin file ``plugin`` (holding ``text``)
    loaded and one recipe line replaced; its one error line (exit 1)."""
    (tmp_path / plugin).write_text(text)
    recipe = write_recipe(tmp_path, root)
    body = recipe.read_text()
    assert replace[0] in body
    recipe.write_text(f"plugins: [{plugin}]\n" + body.replace(*replace))
    done = run_cli("run", recipe, "--output", tmp_path / "run", "--no-report", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    return one_error_line(done.stderr)


@pytest.mark.slow
def test_a_backbone_plugin_of_the_wrong_width_is_named_in_one_line(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    line = _run(
        tmp_path,
        tiny_competition.root,
        "my_nets.py",
        WRONG_WIDTH,
        ("{name: resnet18, width: 8}", "{name: mynet}"),
    )
    assert line.startswith(
        f"error: backbone plugin 'mynet' ({tmp_path / 'my_nets.py'}) failed: "
        "mat1 and mat2 shapes cannot be multiplied ("
    ), line
    log = re.search(r"\(traceback in (\S+)\)$", line)
    assert log is not None, line
    trace = Path(log[1]).read_text()
    assert f'File "{tmp_path / "my_nets.py"}", line 14, in forward' in trace  # self.fc(...)


@pytest.mark.slow
def test_a_feature_extractor_plugin_that_raises_is_named_in_one_line(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    line = _run(
        tmp_path,
        tiny_competition.root,
        "bands.py",
        RAISING_EXTRACTOR,
        (
            "features: {name: mel, n_fft: 512, hop_length: 256, n_mels: 32}",
            "features: {name: bands}",
        ),
    )
    assert line.startswith(
        f"error: feature extractor plugin 'bands' ({tmp_path / 'bands.py'}) failed: "
        "no band table for 16000 Hz (traceback in "
    ), line


EVERY_KIND = """
from torch import nn

from toolkit import BatchAugmenter, DatasetAugmenter, Separator, errors, hookimpl


class Unbuilt(Separator):
    def __init__(self):
        raise KeyError("weights")

    def separate(self, waves):
        return waves


class Picky(DatasetAugmenter):
    def expand(self, features, labels, rng):
        raise errors.DataError("picky: needs two classes")


class Broken(BatchAugmenter):
    def __call__(self, x, y, generator):
        return x[:, :, :, 99], y


@hookimpl
def register_separators(register):
    register("unbuilt", Unbuilt)


@hookimpl
def register_augmenters(register):
    register("picky", Picky)
    register("broken", Broken)


@hookimpl
def register_backbones(register):
    register("linear", lambda num_classes, in_channels: nn.Linear(4, num_classes))
"""


def test_each_kind_fails_naming_the_plugin_when_built_and_when_called(tmp_path: Path) -> None:
    plugin = tmp_path / "every_kind.py"
    plugin.write_text(EVERY_KIND)
    registry = load_plugins([plugin])
    where = f"({plugin})"
    with pytest.raises(PluginError) as built:
        registry.create("separators", {"name": "unbuilt"}, "separator")
    assert str(built.value) == f"separator plugin 'unbuilt' {where} failed: KeyError: 'weights'"
    assert isinstance(built.value.__cause__, KeyError)  # the traceback file shows the original

    broken = registry.create("augmenters", {"name": "broken"}, "augmenters[0]")
    assert isinstance(broken, BatchAugmenter) and type(broken).__name__ == "Broken"
    with pytest.raises(PluginError) as called:
        broken(torch.zeros(2, 1, 4, 4), torch.zeros(2, 3), torch.Generator())
    assert str(called.value) == (
        f"augmenter plugin 'broken' {where} failed: "
        "IndexError: index 99 is out of bounds for dimension 3 with size 4"
    )

    picky = registry.create("augmenters", {"name": "picky"}, "augmenters[0]")
    assert isinstance(picky, DatasetAugmenter) and not callable(picky)  # nothing added
    with pytest.raises(DataError, match="^picky: needs two classes$"):  # its own message, as is
        picky.expand(np.zeros((2, 1, 4, 4)), np.zeros(2), np.random.default_rng(0))

    net = registry.create("backbones", {"name": "linear"}, "", num_classes=3, in_channels=1)
    assert isinstance(net, torch.nn.Linear) and net(torch.zeros(2, 4)).shape == (2, 3)
    with pytest.raises(
        PluginError, match=rf"^backbone plugin 'linear' {re.escape(where)} failed: "
    ):
        net(torch.zeros(2, 5))  # mat1 and mat2 shapes cannot be multiplied

    builtin = registry.create("augmenters", {"name": "mixup", "alpha": 0.2}, "augmenters[1]")
    with pytest.raises(PluginError) as mixup:
        builtin(torch.zeros(2, 1, 4, 4), torch.zeros(3, 2), torch.Generator())
    assert str(mixup.value).startswith("augmenter plugin 'mixup' (built-in, ")
    assert "augmenters/mixup.py) failed: " in str(mixup.value)
