"""Plugin loading and the registry of everything plugins register.

Plugins come from three places, in this order: the built-in modules, the
``toolkit`` entry-point group of installed packages, and module files named
in a recipe. Every name is recorded with the source that registered it.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pluggy
import pydantic

from toolkit import hookspecs
from toolkit.errors import PluginLoadError, RecipeError
from toolkit.kinds import KINDS

BUILTIN_PLUGINS = (
    "toolkit.plugins.separators.none",
    "toolkit.plugins.separators.spleeter",
    "toolkit.plugins.features.mel",
    "toolkit.plugins.features.speaker",
    "toolkit.plugins.features.musicnn",
    "toolkit.plugins.augmenters.oversample",
    "toolkit.plugins.augmenters.masks",
    "toolkit.plugins.augmenters.mixup",
    "toolkit.plugins.augmenters.shift",
    "toolkit.plugins.backbones.resnet",
    "toolkit.plugins.backbones.timm_models",
    "toolkit.plugins.backbones.head",
)
"""Modules of the built-in plugins, registered like any other plugin."""

ENTRY_POINT_GROUP = "toolkit"
LOAD_PLUGINS_ENV = "TOOLKIT_LOAD_PLUGINS"
"""Comma-separated distributions whose entry points load; empty means none."""
TRACE_PLUGINS_ENV = "TOOLKIT_TRACE_PLUGINS"
"""Set (not ``0``) to print every hook call and its result to stderr."""


@dataclass(frozen=True)
class Entry:
    """One registered plugin: what it is called, how it is built, where it came from.

    ``source_version`` is the version of the source that registered it (a
    distribution's version, a plugin file's digest, ``builtin``); ``version`` is
    the plugin's own, as given to ``register`` (``"1"`` by default): a separator's
    or feature extractor's enters the cache keys of its output, so it changes
    whenever the output does. The other stage fields are what the engine needs to
    know before building a plugin: ``input_sample_rate`` (``None``: the data's
    rate) and ``input_channels`` of a separator, and a backbone's ``streams``.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[pydantic.BaseModel]
    description: str
    source: str
    source_version: str
    input_sample_rate: int | None = None
    input_channels: int = 1
    version: str = "1"
    streams: str = "stack"
    """A backbone's way with several feature streams: ``stack`` (as channels) or ``concat``."""


PLUGIN_SCAN_BYTES = 1_000_000
"""Plugin files larger than this are not read when looking for a name's register call."""


def plugin_file_hint(name: str, loaded: Iterable[str] = (), folder: Path | None = None) -> str:
    """How to load the plugin file in ``folder`` (the current one) that provides ``name``.

    That is ``NAME.py``, else a ``*.py`` file whose text calls ``register("NAME"``
    (read, never imported). Files already ``loaded`` (plugin sources) are not
    named. Returns ``""`` when there is none, else ``"; found FILE in the
    current folder: ..."`` to append to an unknown-name error.
    """
    folder = Path.cwd() if folder is None else folder
    skip = {Path(source).resolve() for source in loaded if source.endswith(".py")}
    call = re.compile(rf"""\bregister\(\s*["']{re.escape(name)}["']""")

    def provides(path: Path) -> bool:
        if path.name == f"{name}.py":
            return True
        try:
            if path.stat().st_size > PLUGIN_SCAN_BYTES:
                return False
            return call.search(path.read_text(encoding="utf-8", errors="replace")) is not None
        except OSError:
            return False

    try:
        files = sorted(folder.glob("*.py"), key=lambda p: (p.name != f"{name}.py", p.name))
    except OSError:
        return ""
    for path in files:
        if path.is_file() and path.resolve() not in skip and provides(path):
            return (
                f"; found {path.name} in the current folder: to load it, add"
                f" plugins: [{path.name}] to the recipe, or --set plugins=[{path.name}]"
            )
    return ""


@dataclass
class Registry:
    """Every registered plugin, by kind and name.

    A plugin block is validated once, here: :meth:`validate` remembers the
    parameters model of each block it has checked, under the block as given and
    under its resolved form (what :meth:`resolve` returns and the recipe keeps).
    :meth:`create` builds from that model, so a block the recipe validated is not
    checked again when it is built; only a block never seen is validated, once.
    Blocks are remembered by their canonical JSON, and only when that JSON says
    exactly what the block holds (no tuples, paths or non-string keys).
    """

    entries: dict[str, dict[str, Entry]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    _validated: dict[str, pydantic.BaseModel] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def list_names(self, kind: str, pattern: str = "*") -> list[str]:
        """Names registered for ``kind`` matching the fnmatch ``pattern``, sorted."""
        return sorted(n for n in self._kind(kind) if fnmatch(n, pattern))

    def is_registered(self, kind: str, name: str) -> bool:
        """Whether ``name`` is registered for ``kind``."""
        return name in self._kind(kind)

    def get_info(self, kind: str, name: str, key: str | None = None) -> Entry:
        """The entry of ``name``; an unknown name raises with the closest names."""
        entries = self._kind(kind)
        if name not in entries:
            close = difflib.get_close_matches(str(name), list(entries), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            where = f"{key}: " if key else ""
            loaded = {
                e.source for kind_entries in self.entries.values() for e in kind_entries.values()
            }
            here = plugin_file_hint(str(name), loaded)
            raise RecipeError(
                f"{where}unknown {singular(kind)} {name!r}; {hint}"
                f"registered: {', '.join(sorted(entries)) or 'none'}{here}"
            )
        return entries[name]

    def validate(self, kind: str, spec: dict[str, Any], key: str) -> pydantic.BaseModel:
        """The parameters of a recipe block ``{name: ..., **params}``, checked by its plugin.

        A bad block raises a :class:`RecipeError` naming ``key``. The model returned
        is shared by every later use of the same block: do not modify it.
        """
        memo_key = _memo_key(kind, spec)
        if memo_key is not None and memo_key in self._validated:
            return self._validated[memo_key]
        params = dict(spec)
        name = params.pop("name", None)
        if name is None:
            raise RecipeError(f"{key}: missing 'name' (one of {', '.join(self.list_names(kind))})")
        entry = self.get_info(kind, name, key)
        try:
            model = entry.params.model_validate(params)
        except pydantic.ValidationError as exc:
            raise RecipeError(format_validation_error(exc, key, entry.params)) from None
        for memo in (memo_key, _memo_key(kind, _resolved(name, model))):
            if memo is not None:
                self._validated[memo] = model
        return model

    def resolve(self, kind: str, spec: dict[str, Any], key: str) -> dict[str, Any]:
        """The block as the resolved recipe keeps it: its name and every parameter, as JSON."""
        return _resolved(spec.get("name"), self.validate(kind, spec, key))

    def create(self, kind: str, spec: dict[str, Any], key: str = "", **context: Any) -> Any:
        """Build the plugin a recipe block names, from its validated parameters.

        ``context`` holds the arguments the engine supplies (e.g. ``num_classes``).
        """
        params = self.validate(kind, spec, key)
        entry = self.get_info(kind, spec["name"], key)
        return entry.factory(**context, **params.model_dump())

    def _kind(self, kind: str) -> dict[str, Entry]:
        if kind not in self.entries:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        return self.entries[kind]


def _resolved(name: Any, params: pydantic.BaseModel) -> dict[str, Any]:
    """A block's name and validated parameters, as JSON values."""
    return {"name": name, **params.model_dump(mode="json")}


def _memo_key(kind: str, spec: Any) -> str | None:
    """``kind`` and the canonical JSON of ``spec``; ``None`` when JSON cannot say it exactly."""
    try:
        text = json.dumps(spec, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return f"{kind}:{text}" if json.loads(text) == spec else None


def singular(kind: str) -> str:
    """'backbones' -> 'backbone', for messages."""
    return kind[:-1] if kind.endswith("s") else kind


def format_validation_error(
    exc: pydantic.ValidationError, prefix: str, model: type[pydantic.BaseModel] | None = None
) -> str:
    """One line per problem: key path, what was expected, what was given."""
    lines = []
    for err in exc.errors():
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        owner = _model_at(model, err["loc"][:-1]) if model is not None else None
        if err["type"] == "extra_forbidden" and owner is not None:
            field_name = str(err["loc"][-1])
            close = difflib.get_close_matches(field_name, list(owner.model_fields), n=1)
            valid = ", ".join(owner.model_fields) or "none"
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {valid}"
            lines.append(f"{path}: unknown key; {hint}")
        elif err["type"] == "value_error" and not err["loc"]:
            # A check across parameters: its message names the values itself.
            lines.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            given = err.get("input")
            missing = err["type"] == "value_error" and given is None  # a value the key needs
            lines.append(f"{path}: {message}" if missing else f"{path}: {message} (got {given!r})")
    return "; ".join(lines)


def _model_at(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> type | None:
    """The nested pydantic model a validation error location points into, if any."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, pydantic.BaseModel)),
            None,
        )
        if current is None:
            return None
    return current if isinstance(current, type) else None


def params_from_signature(factory: Callable[..., Any], context: Iterable[str]) -> type:
    """A pydantic model of the factory's keyword parameters, minus engine-given ones."""
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(factory).parameters.items():
        if pname in context or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, default)
    return pydantic.create_model(
        f"{getattr(factory, '__name__', 'Plugin')}Params",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


ENGINE_CONTEXT = {"backbones": ("num_classes", "in_channels")}
"""Factory arguments the engine supplies, never the recipe."""

STAGE_FIELDS = {
    "separators": ("input_sample_rate", "input_channels", "version"),
    "feature_extractors": ("version",),
    "augmenters": ("version",),
    "backbones": ("streams", "version"),
}
"""``register`` keywords each kind may pass: what the engine needs to know of the plugin."""


class _Unset(enum.Enum):
    """The default of a ``register`` keyword, told apart from every value a plugin may give."""

    UNSET = "unset"


UNSET = _Unset.UNSET


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
            raise PluginLoadError(f"error importing plugin {source}: {_short(exc)}") from exc
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
        raise PluginLoadError(f"error importing {source}: {_short(exc)}") from exc


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
        raise PluginLoadError(f"error importing plugin file {path}: {_short(exc)}") from exc
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
            register, close = _make_register(registry, kind, source, version, trace)
            try:
                call(register=register)
            except (PluginLoadError, RecipeError):
                raise
            except Exception as exc:  # noqa: BLE001
                raise PluginLoadError(
                    f"plugin {source}: {hook_name} failed: {_short(exc)}"
                ) from exc
            finally:
                close()
    return registry


def _make_register(
    registry: Registry, kind: str, source: str, source_version: str, trace: Callable[..., None]
) -> tuple[Callable[..., None], Callable[[], None]]:
    """The ``register`` function one plugin's hook is given, and what closes it afterwards."""
    open_ = [True]

    def register(
        name: str,
        factory: Callable[..., Any],
        *,
        params: type[pydantic.BaseModel] | None = None,
        description: str = "",
        input_sample_rate: int | None | _Unset = UNSET,
        input_channels: int | _Unset = UNSET,
        version: str | _Unset = UNSET,
        streams: str | _Unset = UNSET,
    ) -> None:
        """Record ``factory`` under ``name`` for this kind (see :mod:`toolkit.hookspecs`)."""
        if not open_[0]:
            raise PluginLoadError(
                f"plugin {source}: register() was called outside a register_* hook"
            )
        if not isinstance(name, str) or not name:
            raise PluginLoadError(f"plugin {source}: {singular(kind)} name must be a string")
        if not callable(factory):
            raise PluginLoadError(f"plugin {source}: factory of {name!r} is not callable")
        existing = registry.entries[kind].get(name)
        if existing is not None:
            raise PluginLoadError(
                f"{singular(kind)} {name!r} is registered twice: by {existing.source} "
                f"and by {source}; rename one, or remove one of the plugins"
            )
        given = {
            "input_sample_rate": input_sample_rate,
            "input_channels": input_channels,
            "version": version,
            "streams": streams,
        }
        stage = _stage_fields(kind, name, factory, source, given)
        model = params or params_from_signature(factory, ENGINE_CONTEXT.get(kind, ()))
        registry.entries[kind][name] = Entry(
            kind,
            name,
            factory,
            model,
            description or _doc_line(factory),
            source,
            source_version,
            **stage,
        )
        trace(f"{singular(kind)} {name!r} from {source}")

    def close() -> None:
        open_[0] = False

    return register, close


def _stage_fields(
    kind: str, name: str, factory: Callable[..., Any], source: str, given: dict[str, Any]
) -> dict[str, Any]:
    """The :class:`Entry` fields a registration's stage keywords set; misuse is a PluginLoadError.

    A factory still carrying one of its kind's stage fields as an attribute that
    disagrees with the registration is refused: the engine no longer reads the
    attribute, and going on with another value would silently change what the
    plugin is fed or which cached output it reuses.
    """
    allowed = STAGE_FIELDS.get(kind, ())
    where = f"plugin {source}: {singular(kind)} {name!r}"
    wrong = [key for key, value in given.items() if value is not UNSET and key not in allowed]
    if wrong:
        takers = "; ".join(f"{k}: {', '.join(v)}" for k, v in STAGE_FIELDS.items())
        raise PluginLoadError(
            f"{where}: register() takes no {', '.join(wrong)} for {kind} (only {takers})"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(Entry)}
    declared = {k: v for k, v in given.items() if v is not UNSET}
    for keyword in allowed:
        value = declared.get(keyword, defaults[keyword])
        accepts, expected = _STAGE_CHECKS[keyword]
        if not accepts(value):
            raise PluginLoadError(f"{where}: {keyword} must be {expected}, got {value!r}")
        attribute = getattr(factory, keyword, value)
        if attribute != value:
            raise PluginLoadError(
                f"{where}: its factory sets {keyword} = {attribute!r}, but the engine reads "
                f"{keyword} from the registration ({value!r}); pass "
                f"register({name!r}, ..., {keyword}={attribute!r})"
            )
    return declared


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_STAGE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "input_sample_rate": (lambda v: v is None or (_is_int(v) and v >= 1), "a positive int or None"),
    "input_channels": (lambda v: _is_int(v) and v >= 1, "a positive int"),
    "version": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "streams": (lambda v: v in ("stack", "concat"), "'stack' or 'concat'"),
}


def _doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
