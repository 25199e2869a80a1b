"""Loading plugins: hooks called through pluggy, sources attributed, tracing, cheap listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.demo import DemoCompetition
from toolkit.errors import PluginLoadError, RecipeError
from toolkit.registry.loader import load_plugins
from toolkit.registry.scaffold import new_plugin

HEADER = "from toolkit import hookimpl\n\ndef make(size: int = 1): ...\n\n"


def write_plugin(path: Path, body: str) -> Path:
    """A plugin file made of ``body`` after the hookimpl import."""
    path.write_text(HEADER + body)
    return path


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c CODE`` in a real subprocess, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TOOLKIT_LOAD_PLUGINS": "", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_listing_plugins_imports_no_torch() -> None:
    result = python(
        "import sys\n"
        "from toolkit.registry.loader import load_plugins\n"
        "registry = load_plugins([])\n"
        "assert registry.is_registered('backbones', 'resnet18')\n"
        "print(sorted(m for m in ('torch', 'torchaudio', 'timm') if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_trace_plugins_prints_hook_calls_to_stderr() -> None:
    cli = [sys.executable, "-m", "toolkit", "plugins", "--json"]
    env = {**os.environ, "TOOLKIT_LOAD_PLUGINS": ""}
    plain = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=300)
    traced = subprocess.run(
        cli, env={**env, "TOOLKIT_TRACE_PLUGINS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert traced.returncode == 0, traced.stderr
    assert json.loads(traced.stdout) == json.loads(plain.stdout)
    assert plain.stderr == ""
    for kind in ("separators", "feature_extractors", "augmenters", "backbones"):
        assert f"register_{kind} [hook]" in traced.stderr
        assert f"finish register_{kind} -->" in traced.stderr
    assert "backbone 'resnet18' from builtin [register]" in traced.stderr


def test_a_wrapper_hookimpl_runs_and_registers(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path / "wrap.py",
        "def late(num_classes, in_channels, depth: int = 2): ...\n"
        "@hookimpl(wrapper=True)\n"
        "def register_backbones(register):\n"
        "    result = yield\n"
        "    register('late', late)\n"
        "    return result\n",
    )
    registry = load_plugins([plugin])
    entry = registry.get_info("backbones", "late")
    assert entry.source == str(plugin)
    assert list(entry.params.model_fields) == ["depth"]
    assert registry.is_registered("backbones", "resnet18")


@pytest.mark.parametrize("first", ["a.py", "b.py"])
def test_tryfirst_decides_which_plugin_registers_first(tmp_path: Path, first: str) -> None:
    for name in ("a.py", "b.py"):
        marker = "@hookimpl(tryfirst=True)" if name == first else "@hookimpl"
        write_plugin(
            tmp_path / name,
            f"{marker}\ndef register_augmenters(register):\n    register('same', make)\n",
        )
    second = "b.py" if first == "a.py" else "a.py"
    with pytest.raises(PluginLoadError) as caught:
        load_plugins([tmp_path / "a.py", tmp_path / "b.py"])
    message = str(caught.value)
    assert message.index(first) < message.index(second), message


def test_register_through_a_helper_is_attributed_to_its_plugin(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path / "helper.py",
        "def add_all(register):\n"
        "    for name in ('one', 'two'):\n"
        "        register(name, make)\n"
        "@hookimpl\n"
        "def register_augmenters(register):\n"
        "    add_all(register)\n",
    )
    registry = load_plugins([plugin])
    assert registry.get_info("augmenters", "one").source == str(plugin)
    assert registry.get_info("augmenters", "two").source == str(plugin)


def test_register_kept_for_later_is_refused(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path / "keep.py",
        "KEPT = []\n@hookimpl\ndef register_augmenters(register):\n    KEPT.append(register)\n",
    )
    load_plugins([plugin])
    (module,) = [m for n, m in sys.modules.items() if n.startswith("toolkit_local_plugin_keep_")]
    with pytest.raises(PluginLoadError, match=r"outside a register_\* hook"):
        module.KEPT[0]("stale", module.make)


def test_a_failing_hook_names_its_plugin(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path / "broken.py",
        "@hookimpl\ndef register_backbones(register):\n    raise ValueError('no luck')\n",
    )
    with pytest.raises(PluginLoadError) as caught:
        load_plugins([plugin])
    assert str(caught.value) == (f"plugin {plugin}: register_backbones failed: ValueError: no luck")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "@hookimpl\ndef register_backbones(register):\n"
            "    register('net', make, input_channels=2)\n",
            "backbone 'net': register() takes no input_channels for backbones",
        ),
        (
            "@hookimpl\ndef register_augmenters(register):\n"
            "    register('aug', make, streams='concat')\n",
            "augmenter 'aug': register() takes no streams for augmenters",
        ),
        (
            "@hookimpl\ndef register_feature_extractors(register):\n"
            "    register('feat', make, input_sample_rate=8000)\n",
            "feature_extractor 'feat': register() takes no input_sample_rate for "
            "feature_extractors (only separators: input_sample_rate, input_channels, version; "
            "feature_extractors: version; augmenters: version; backbones: streams, version)",
        ),
        (
            "@hookimpl\ndef register_separators(register):\n"
            "    register('sep', make, input_channels=0)\n",
            "separator 'sep': input_channels must be a positive int, got 0",
        ),
        (
            "@hookimpl\ndef register_feature_extractors(register):\n"
            "    register('feat', make, version=2)\n",
            "feature_extractor 'feat': version must be a non-empty string, got 2",
        ),
        (
            "class Stereo:\n    input_sample_rate = 44100\n\n"
            "@hookimpl\ndef register_separators(register):\n    register('sep', Stereo)\n",
            "separator 'sep': its factory sets input_sample_rate = 44100, but the engine reads "
            "input_sample_rate from the registration (None); pass "
            "register('sep', ..., input_sample_rate=44100)",
        ),
    ],
)
def test_misused_stage_keywords_are_load_errors(tmp_path: Path, body: str, expected: str) -> None:
    plugin = write_plugin(tmp_path / "stage.py", body)
    with pytest.raises(PluginLoadError) as caught:
        load_plugins([plugin])
    assert str(caught.value).startswith(f"plugin {plugin}: {expected}")


def test_stage_keywords_are_recorded_on_the_entry(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path / "stages.py",
        "class Stereo:\n    input_channels = 2\n\n"
        "@hookimpl\ndef register_separators(register):\n"
        "    register('stereo', Stereo, input_sample_rate=32000, input_channels=2, version='b')\n"
        "    register('plain', make)\n"
        "@hookimpl\ndef register_feature_extractors(register):\n"
        "    register('feat', make, version='7')\n",
    )
    registry = load_plugins([plugin])
    stereo = registry.get_info("separators", "stereo")
    assert (stereo.input_sample_rate, stereo.input_channels, stereo.version) == (
        32000,
        2,
        "b",
    )
    plain = registry.get_info("separators", "plain")
    assert (plain.input_sample_rate, plain.input_channels, plain.version) == (None, 1, "1")
    assert registry.get_info("feature_extractors", "feat").version == "7"
    spleeter = registry.get_info("separators", "spleeter")
    assert (spleeter.input_sample_rate, spleeter.input_channels) == (44100, 2)


def test_scaffolded_separator_and_feature_declare_their_stage_fields(tmp_path: Path) -> None:
    files = [new_plugin("separator", "mid", tmp_path), new_plugin("feature", "spec", tmp_path)]
    registry = load_plugins(files)
    mid = registry.get_info("separators", "mid")
    assert (mid.input_sample_rate, mid.input_channels, mid.version) == (None, 2, "1")
    assert registry.get_info("feature_extractors", "spec").version == "1"
    stereo = np.stack([np.linspace(-1, 1, 800, dtype=np.float32), np.zeros(800, np.float32)])
    stem = registry.create("separators", {"name": "mid"}, "separator").separate(stereo[None])
    np.testing.assert_allclose(stem, stereo.mean(axis=0, keepdims=True)[None])


SCAFFOLDED_USE = """
import sys
from pathlib import Path

import numpy as np

from toolkit.registry.loader import load_plugins

files = [Path(p) for p in sys.argv[1:]]
registry = load_plugins(files)
print("torch imported by loading:", "torch" in sys.modules)
net = registry.create(
    "backbones", {"name": "my_net", "width": 8}, "model.backbone", num_classes=3, in_channels=1
)
import torch

print("logits:", tuple(net(torch.zeros(2, 1, 16, 20)).shape))
features = registry.create("feature_extractors", {"name": "my_feature"}, "features")
print("features:", tuple(features.extract(torch.zeros(2, 4096), 16000).shape))
noisy = registry.create("augmenters", {"name": "my_noise"}, "augmenters[0]")
x, y = noisy.expand(np.zeros((5, 1, 4, 4), np.float32), np.arange(5), np.random.default_rng(0))
print("augmented:", x.shape, y.tolist())
mid = registry.create("separators", {"name": "my_mid"}, "separator")
print("stem:", mid.separate(np.ones((1, 2, 100), np.float32)).shape)
"""


def test_every_scaffold_imports_no_torch_until_its_plugin_is_built(tmp_path: Path) -> None:
    kinds = {"backbone": "my_net", "feature": "my_feature", "augmenter": "my_noise"}
    files = [new_plugin(kind, name, tmp_path) for kind, name in kinds.items()]
    files.append(new_plugin("separator", "my_mid", tmp_path))
    for path in files:  # heavy imports sit inside the plugin, as the README advises
        assert "\nimport torch" not in path.read_text()
        assert "\nfrom torch" not in path.read_text()
    result = subprocess.run(
        [sys.executable, "-c", SCAFFOLDED_USE, *map(str, files)],
        env={**os.environ, "TOOLKIT_LOAD_PLUGINS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "torch imported by loading: False",
        "logits: (2, 3)",
        "features: (2, 1, 257, 8)",
        "augmented: (5, 1, 4, 4) [0, 1, 2, 3, 4]",  # the copies to append
        "stem: (1, 1, 100)",
    ]


def test_unknown_name_says_how_to_load_the_plugin_file_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    builtins = load_plugins([])
    with pytest.raises(RecipeError) as nothing_here:
        builtins.get_info("backbones", "mynet", "model.backbone")
    assert "plugins:" not in str(nothing_here.value)

    new_plugin("backbone", "mynet", tmp_path)
    with pytest.raises(RecipeError) as named_after_it:
        builtins.get_info("backbones", "mynet", "model.backbone")
    message = str(named_after_it.value)
    assert message.startswith("model.backbone: unknown backbone 'mynet'; ")
    assert message.endswith(
        "found mynet.py in the current folder: to load it, add plugins: [mynet.py] to the"
        " recipe, or --set plugins=[mynet.py]"
    )
    # a file of another name is found by its register call, read and not imported
    (tmp_path / "mynet.py").unlink()
    body = "raise SystemExit('imported')\nregister(\n  'deepnet', make)\n"
    write_plugin(tmp_path / "nets.py", body)
    with pytest.raises(RecipeError, match=r"found nets\.py .* --set plugins=\[nets\.py\]$"):
        builtins.get_info("backbones", "deepnet")
    with pytest.raises(RecipeError) as other:
        builtins.get_info("backbones", "othernet")
    assert "nets.py" not in str(other.value)
    # a file already loaded is not offered again
    loaded = load_plugins([new_plugin("backbone", "smallnet", tmp_path)])
    with pytest.raises(RecipeError) as still_unknown:
        loaded.get_info("backbones", "smallnet2")
    assert "smallnet.py" not in str(still_unknown.value)


@pytest.mark.slow
def test_run_with_an_unloaded_plugin_name_says_how_to_load_it(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    assert run_cli("new", "backbone", "mynet", cwd=tmp_path).returncode == 0
    recipe = write_recipe(tmp_path, tiny_competition.root)
    unknown = run_cli("run", recipe, "--set", "model.backbone.name=mynet", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1, unknown.stderr
    assert "unknown backbone 'mynet'" in unknown.stderr
    assert "add plugins: [mynet.py] to the recipe, or --set plugins=[mynet.py]" in unknown.stderr
    loaded = run_cli(
        "run",
        recipe,
        *("--set", "model.backbone.name=mynet", "--set", "plugins=[mynet.py]"),
        *("--set", "train.epochs=1", "--no-report", "--output", tmp_path / "run"),
        cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "submission:" in loaded.stdout
