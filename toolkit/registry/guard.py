"""A plugin's failure named by the plugin: its kind, its name and the file it came from.

The registry builds every plugin through :func:`build`. An exception raised by
the plugin's factory, or later by one of the methods the engine calls on what
it built (:data:`GUARDED_METHODS`), becomes a :class:`PluginError` naming the
plugin, with the original exception as its cause. The methods are guarded on
the object's class, once per plugin class (a subclass with the same name and
no extra state), so each call costs one ``try`` and nothing is looked up.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ToolkitError, error_line
from toolkit.wording import singular

if TYPE_CHECKING:
    from toolkit.registry.entry import Entry

GUARDED_METHODS = {
    "separators": ("separate",),
    "feature_extractors": ("extract",),
    "augmenters": ("expand", "__call__", "views", "set_layout"),
    "backbones": ("forward", "parameter_groups", "on_epoch_start"),
}
"""The methods of each kind's objects that the engine calls (see :mod:`toolkit.registry.kinds`)."""

PASSED_THROUGH_MODULES = ("torch._dynamo", "torch._inductor")
"""Exceptions from these modules are torch.compile's, not the plugin's: they pass as they are
(:func:`toolkit.devices.compile_errors` names ``train.compile`` for them)."""


class PluginError(ToolkitError):
    """Code of a plugin raised: the message names the plugin, its kind and its file.

    It exits 1, not 2: it is a bug in the plugin, not in the user's input.
    """

    exit_code = 1


def build(entry: Entry, **arguments: Any) -> Any:
    """The plugin ``entry`` makes from ``arguments``, its failures named by the plugin."""
    try:
        built = entry.factory(**arguments)
    except Exception as exc:
        if _passes(exc):
            raise
        raise plugin_error(entry, exc) from exc
    return guard(built, entry)


def guard(built: Any, entry: Entry) -> Any:
    """``built``, its engine-called methods turned into ones whose failures name ``entry``.

    An object whose class cannot be subclassed or swapped (not a class of Python code,
    a metaclass that needs arguments) is returned as it is.
    """
    cls = type(built)
    if getattr(cls, "_toolkit_plugin", None) is not None:  # guarded already (e.g. a shared one)
        return built
    methods = tuple(m for m in GUARDED_METHODS.get(entry.kind, ()) if _method(cls, m))
    if not methods:
        return built
    key = (cls, entry.kind, entry.name, entry.source)
    try:
        if key not in _GUARDED:
            _GUARDED[key] = _guarded_class(cls, entry, methods)
        built.__class__ = _GUARDED[key]
    except TypeError:
        return built
    return built


_GUARDED: dict[tuple[type, str, str, str], type] = {}
"""The guarded class of each plugin class, by the plugin that built it."""


def _method(cls: type, name: str) -> Callable[..., Any] | None:
    """The plain function ``cls`` (or a base) defines as method ``name``; ``None`` for none
    (the metaclass's ``__call__`` is not one) or a static, class or built-in method."""
    for klass in cls.__mro__:
        if name in vars(klass):
            found = vars(klass)[name]
            return found if inspect.isfunction(found) else None
    return None


def _guarded_class(cls: type, entry: Entry, methods: tuple[str, ...]) -> type:
    """A subclass of ``cls`` that looks like it (name, module, doc) and adds no state,
    whose ``methods`` raise a :class:`PluginError` naming ``entry``."""
    namespace: dict[str, Any] = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__slots__": (),
        "_toolkit_plugin": entry,
    }
    for name in methods:
        namespace[name] = _guarded_method(_method(cls, name), entry)  # type: ignore[arg-type]
    return type(cls)(cls.__name__, (cls,), namespace)


def _guarded_method(method: Callable[..., Any], entry: Entry) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if _passes(exc):
                raise
            raise plugin_error(entry, exc) from exc

    return guarded


def _passes(exc: Exception) -> bool:
    """Whether ``exc`` goes on as it is: it already says what to do (a :class:`ToolkitError`,
    a plugin's own or another plugin's), or it is a full disk or torch.compile's."""
    from toolkit.disk import is_disk_full

    module = type(exc).__module__
    return (
        isinstance(exc, ToolkitError)
        or module.startswith(PASSED_THROUGH_MODULES)
        or is_disk_full(exc)
    )


def plugin_error(entry: Entry, exc: BaseException) -> PluginError:
    """``exc``, raised by the code of plugin ``entry``, as one line naming the plugin."""
    kind = singular(entry.kind).replace("_", " ")
    reason = error_line(exc, typed=type(exc) not in PLAIN_TYPES)  # a plain type reads alone
    return PluginError(f"{kind} plugin {entry.name!r} ({plugin_location(entry)}) failed: {reason}")


PLAIN_TYPES = (RuntimeError, ValueError, TypeError, Exception)
"""Exception types whose message reads alone; any other type is named before its message."""



def plugin_location(entry: Entry) -> str:
    """Where plugin ``entry`` came from: its file as the recipe names it, else its source
    (``built-in``, a distribution's entry point) and the file that defines its factory."""
    if entry.source.endswith(".py"):
        return entry.source
    origin = "built-in" if entry.source == "builtin" else entry.source
    file = _defining_file(entry.factory)
    return f"{origin}, {file}" if file else origin


def _defining_file(factory: Callable[..., Any]) -> str | None:
    """The file of the module that defines ``factory``, shown from the current folder when
    inside it."""
    module = sys.modules.get(getattr(factory, "__module__", None) or "")
    try:
        name = inspect.getsourcefile(factory) or getattr(module, "__file__", None)
    except TypeError:  # a callable object or a partial: its module's file
        name = getattr(module, "__file__", None)
    if not name:
        return None
    path = Path(name)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
