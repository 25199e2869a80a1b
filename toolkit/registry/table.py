"""The registry of everything plugins register: by kind and name, with where it came from.

Plugins are loaded into it by :mod:`toolkit.registry.loader`; what a plugin's
``register`` call may say is :mod:`toolkit.registry.registration`. A recipe's plugin
blocks are validated here, once each.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pydantic

from toolkit.errors import RecipeError
from toolkit.recipe.class_keys import class_indexed
from toolkit.registry.entry import Entry
from toolkit.registry.guard import build
from toolkit.registry.kinds import KINDS
from toolkit.wording import singular

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

    def create(
        self,
        kind: str,
        spec: dict[str, Any],
        key: str = "",
        *,
        classes: Sequence[str] | None = None,
        **context: Any,
    ) -> Any:
        """Build the plugin a recipe block names, from its validated parameters.

        ``context`` holds the arguments the engine supplies (e.g. ``num_classes``);
        ``classes`` the train CSV's sorted labels, by which the labels of its
        :data:`~toolkit.recipe.class_keys.ClassMap` parameters become class indices. What the
        plugin's code raises, building it or later in the methods the engine calls, is a
        :class:`~toolkit.registry.guard.PluginError` naming it.
        """
        params = self.validate(kind, spec, key)
        entry = self.get_info(kind, spec["name"], key)
        settings = class_indexed(type(params), params.model_dump(), classes)
        return build(entry, **context, **settings)

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
            whole = isinstance(given, dict)  # a section: its message says what is wrong in it
            plain = missing or whole
            lines.append(f"{path}: {message}" if plain else f"{path}: {message} (got {given!r})")
    return "; ".join(lines)


def _model_at(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> type | None:
    """The nested pydantic model a validation error location points into, if any."""
    current: Any = model
    keyed = False  # the part after a mapping of models is a key of it (a profile's name)
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        keyed = typing.get_origin(annotation) is dict
        candidates = [annotation, *typing.get_args(annotation)]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, pydantic.BaseModel)),
            None,
        )
        if current is None:
            return None
    return current if isinstance(current, type) else None
