"""Plugin loading: built-in modules, installed packages' entry points, recipe files.

Plugins come from three places, in this order: the built-in modules, the
``toolkit`` entry-point group of installed packages, and module files named
in a recipe. Every name is recorded in a new :class:`~toolkit.registry.table.Registry`
with the source that registered it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pluggy

from toolkit.errors import PluginLoadError, RecipeError, error_line
from toolkit.registry import hookspecs
from toolkit.registry.kinds import KINDS
from toolkit.registry.registration import make_register
from toolkit.registry.table import Registry

BUILTIN_PLUGINS = (
    "toolkit.plugins.separators.none",
    "toolkit.plugins.separators.spleeter",
    "toolkit.plugins.features.mel",
    "toolkit.plugins.features.speaker",
    "toolkit.plugins.features.musicnn",
    "toolkit.plugins.features.waveform",
    "toolkit.plugins.augmenters.oversample",
    "toolkit.plugins.augmenters.masks",
    "toolkit.plugins.augmenters.mixup",
    "toolkit.plugins.augmenters.shift",
    "toolkit.plugins.augmenters.waveform",
    "toolkit.plugins.backbones.resnet",
    "toolkit.plugins.backbones.timm_models",
    "toolkit.plugins.backbones.head",
    "toolkit.plugins.backbones.finetune",
)
"""Modules of the built-in plugins, registered like any other plugin."""


ENTRY_POINT_GROUP = "toolkit"


LOAD_PLUGINS_ENV = "TOOLKIT_LOAD_PLUGINS"
"""Comma-separated distributions whose entry points load; empty means none."""


TRACE_PLUGINS_ENV = "TOOLKIT_TRACE_PLUGINS"
"""Set (not ``0``) to print every hook call and its result to stderr."""


def load_plugins(
    plugin_files: Iterable[Path] = (),
    *,
    blocked: Iterable[str] = (),
) -> Registry:
    """Load built-in, installed and file plugins into a new registry."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[int, tuple[str, str]] = {}
    blocked = set(blocked)
    for module_name in BUILTIN_PLUGINS:
        if module_name in blocked:
            continue
        module = _import(module_name, f"built-in plugin {module_name}")
        _register(pm, module, module_name, sources, ("builtin", "builtin"))
    for ep, dist_name, dist_version in _entry_points():
        source = f"{dist_name} (entry point {ep.name})"
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            reason = error_line(exc, typed=True)
            raise PluginLoadError(f"error importing plugin {source}: {reason}") from exc
        _register(pm, module, f"entrypoint:{dist_name}:{ep.name}", sources, (source, dist_version))
    for path in plugin_files:
        module, digest = _import_file(Path(path))
        _register(pm, module, str(Path(path).resolve()), sources, (str(path), digest))
    if os.environ.get(TRACE_PLUGINS_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return _collect(pm, sources)


def _import(module_name: str, source: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001
        raise PluginLoadError(f"error importing {source}: {error_line(exc, typed=True)}") from exc


def _import_file(path: Path) -> tuple[Any, str]:
    if not path.is_file():
        raise PluginLoadError(f"{path}: plugin file not found (check 'plugins:' in the recipe)")
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:12]
    module_name = f"toolkit_local_plugin_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name], digest
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        del sys.modules[module_name]
        reason = error_line(exc, typed=True)
        raise PluginLoadError(f"error importing plugin file {path}: {reason}") from exc
    return module, digest


def _entry_points() -> list[tuple[Any, str, str]]:
    wanted = os.environ.get(LOAD_PLUGINS_ENV)
    allowed = None if wanted is None else {d.strip() for d in wanted.split(",") if d.strip()}
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else "unknown"
        dist_version = dist.version if dist is not None else "unknown"
        if allowed is not None and dist_name not in allowed:
            continue
        found.append((ep, dist_name, dist_version))
    return found


def _register(
    pm: pluggy.PluginManager,
    module: Any,
    name: str,
    sources: dict[int, tuple[str, str]],
    source: tuple[str, str],
) -> None:
    try:
        pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"plugin {source[0]}: {exc}") from None
    sources[id(module)] = source
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
        bad = [n for n in dir(module) if n.startswith("register") and n not in hooks]
        close = difflib.get_close_matches(bad[0], hooks, n=1) if bad else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PluginLoadError(
            f"plugin {source[0]}: unknown hook {', '.join(bad) or exc}{hint}"
        ) from None


def _collect(pm: pluggy.PluginManager, sources: dict[int, tuple[str, str]]) -> Registry:
    """Call each plugin's ``register_<kind>`` hook through pluggy and record what it registers.

    Plugins are called in pluggy's order (``tryfirst``/``trylast`` apply), one at
    a time through a hook caller that holds just that plugin, so whatever it
    registers is attributed to its source, and tracing and wrappers work.
    """
    registry = Registry()
    plugins = pm.get_plugins()
    trace = pm.trace.root.get("register")
    for kind in KINDS:
        hook_name = f"register_{kind}"
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            source, version = sources[id(impl.plugin)]
            others = [p for p in plugins if p is not impl.plugin]
            call = pm.subset_hook_caller(hook_name, remove_plugins=others)
            register, close = make_register(registry, kind, source, version, trace)
            try:
                call(register=register)
            except (PluginLoadError, RecipeError):
                raise
            except Exception as exc:  # noqa: BLE001
                raise PluginLoadError(
                    f"plugin {source}: {hook_name} failed: {error_line(exc, typed=True)}"
                ) from exc
            finally:
                close()
    return registry

