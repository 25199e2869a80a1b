"""Loading plugins: hooks called through pluggy, sources attributed, tracing, cheap listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.errors import PluginLoadError
from toolkit.registry import load_plugins

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
        "from toolkit.registry import load_plugins\n"
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
