"""The ``register`` call each plugin's hook is given: what it records, and what it refuses.

A registration names a factory; its parameters come from a pydantic model
(``params=``) or the factory's signature. The stage keywords each kind may pass
(:data:`STAGE_FIELDS`) tell the engine what it needs before building the
plugin; misuse is a one-line :class:`~toolkit.errors.PluginLoadError`.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import pydantic

from toolkit.errors import PluginLoadError
from toolkit.registry.table import Entry, Registry
from toolkit.training.fusion import MODES
from toolkit.wording import singular


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


ENGINE_CONTEXT = {"backbones": ("num_classes", "in_channels", "layout")}
"""Factory arguments the engine supplies, never the recipe (``layout`` only to a factory
that names it: see :func:`toolkit.registry.hookspecs.register_backbones`)."""


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


def make_register(
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
        """Record ``factory`` under ``name`` for this kind (see
        :mod:`toolkit.registry.hookspecs`)."""
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
    "streams": (lambda v: v in MODES, "'stack', 'concat' or 'pack'"),
}


def _doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""
