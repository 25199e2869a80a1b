"""Reading a recipe file: its YAML, ``--set`` overrides, its paths, its plugins, validation.

Relative paths in a recipe file are taken from its *project folder*: the
recipe's own folder, or that folder's parent when it is called ``recipes``
(so ``recipes/demo.yaml`` reads ``data/demo`` beside ``recipes/``), whatever
the current directory. The defaults (``runs/.cache``, ``runs/leaderboard.db``,
``runs/NAME``) are placed there too. Paths given on the command line
(``--set data.root=...``, ``--output``) are taken from the current directory,
as a shell user expects. A ``--set data.root`` naming another folder than the
recipe's own (without ``--output``) runs into ``runs/NAME-FOLDER``. The loaded recipe holds
every path absolute.

This module imports no torch (unless a ``device`` key names a device other than
``auto`` or ``cpu``, to check this machine has it): a mistake in a recipe is
reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import RecipeError, error_at, error_line
from toolkit.recipe.keypaths import get_path, set_path
from toolkit.recipe.schema import PATH_KEYS, Cache, DemoData, Output, Recipe
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry

RECIPES_FOLDER = "recipes"
"""A recipe in a folder of this name takes its paths from the folder above."""

RUNS = "runs"
"""The folder of run directories, in the project folder."""


@dataclass
class LoadedRecipe:
    """A validated recipe with the plugin registry it was checked against."""

    recipe: Recipe
    registry: Registry
    path: Path
    raw: dict[str, Any]
    """The mapping that was validated: overrides applied, paths absolute."""


def project_folder(recipe_path: Path | str) -> Path:
    """Where a recipe file's relative paths start (see the module docstring)."""
    folder = Path(recipe_path).resolve().parent
    return folder.parent if folder.name == RECIPES_FOLDER else folder


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The raw mapping of a recipe file; unreadable or non-mapping YAML is a RecipeError."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or error_line(exc)
        raise RecipeError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {kind}")
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-parsed value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=0.01")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def plugin_files(raw: dict[str, Any], recipe_path: Path) -> list[Path]:
    """The recipe's ``plugins:`` files: a relative one beside the recipe, else in its
    project folder."""
    files = raw.get("plugins") or []
    if not isinstance(files, list):
        raise RecipeError(f"{recipe_path}: plugins: expected a list of module files")
    found = []
    for entry in files:
        path = Path(str(entry)).expanduser()
        if not path.is_absolute():
            beside = Path(recipe_path).parent / path
            path = beside if beside.exists() else project_folder(recipe_path) / path
        found.append(path)
    return found


def _absolute(raw: dict[str, Any], base: Path, keys: Sequence[tuple[str, ...]]) -> None:
    """Make the relative paths at ``keys`` of ``raw`` absolute from ``base`` (in place)."""
    for key in keys:
        value = get_path(raw, key)
        if isinstance(value, str | Path) and str(value):
            path = Path(value).expanduser()
            set_path(raw, key, str(path if path.is_absolute() else (base / path).absolute()))


def _place_defaults(raw: dict[str, Any], base: Path) -> None:
    """The cache, leaderboard and run folder, when the recipe leaves them out, in ``base``."""
    defaults = {
        ("cache", "dir"): Cache.model_fields["dir"].default,
        ("output", "leaderboard"): Output.model_fields["leaderboard"].default,
    }
    if isinstance(raw.get("name"), str):
        defaults["output", "dir"] = Path(RUNS) / raw["name"]
    if isinstance(get_path(raw, ("data", "demo")), dict):
        defaults["data", "demo", "folder"] = DemoData.model_fields["folder"].default
    for key, default in defaults.items():
        section = raw.get(key[0])
        if section is None or (isinstance(section, dict) and get_path(raw, key) is None):
            set_path(raw, key, str(base / default))


def _own_root(raw: dict[str, Any], base: Path) -> str | None:
    """The competition folder the recipe file itself names: ``data.root``, else its demo's."""
    root = get_path(raw, ("data", "root"))
    if root is None and isinstance(get_path(raw, ("data", "demo")), dict):
        folder = get_path(raw, ("data", "demo", "folder"))
        root = folder if folder is not None else base / DemoData.model_fields["folder"].default
    return None if root is None else str(Path(str(root)).absolute())


def _key_output_by_data(raw: dict[str, Any], own_root: str | None, base: Path) -> None:
    """With ``--set data.root`` naming another folder than the recipe's own and no output
    given, the run folder is ``runs/NAME-FOLDER``: a run of other data lands beside the
    recipe's own runs, not on them."""
    root = get_path(raw, ("data", "root"))
    if root is None or get_path(raw, ("output", "dir")) is not None:
        return
    if not isinstance(raw.get("name"), str) or str(Path(str(root)).absolute()) == own_root:
        return
    set_path(raw, ["output", "dir"], str(base / RUNS / f"{raw['name']}-{Path(str(root)).name}"))


def _is_path_key(keys: Sequence[str]) -> bool:
    return tuple(keys) in PATH_KEYS


def _key_parts(text: str) -> list[str]:
    """``augmenters[2].alpha`` -> ``['augmenters', '2', 'alpha']``."""
    return [part for part in re.split(r"[.\[\]]+", text) if part]


def _blamed_override(message: str, overrides: Sequence[str]) -> str | None:
    """The ``--set`` text whose key the error at the start of ``message`` is about, if any."""
    where = _key_parts(message.split(":", 1)[0].split(" ")[0])
    for text in overrides:
        keys = _key_parts(text.partition("=")[0].strip())
        common = min(len(keys), len(where))
        if common and keys[:common] == where[:common]:
            return text
    return None


def load_recipe(
    path: Path | str, overrides: Sequence[str] = (), output: Path | None = None
) -> LoadedRecipe:
    """Read a recipe file, apply ``--set`` overrides (``a.b=c``) and ``--output``, make its
    paths absolute, load its plugins and validate everything.

    An error in an override's value names the override, not the file.
    """
    path = Path(path)
    raw = read_recipe_file(path)
    base = project_folder(path)
    _absolute(raw, base, PATH_KEYS)
    own_root = _own_root(raw, base)
    for text in overrides:
        keys, value = parse_override(text)
        set_path(raw, keys, value)
        if _is_path_key(keys):
            _absolute(raw, Path.cwd(), [tuple(keys)])
    if output is not None:
        set_path(raw, ["output", "dir"], str(Path(output).expanduser().absolute()))
    _key_output_by_data(raw, own_root, base)
    _place_defaults(raw, base)
    files = plugin_files(raw, path)
    if files:  # stored as found, so the resolved recipe loads them from any folder
        raw["plugins"] = [str(f.resolve()) for f in files]
    registry = load_plugins(files)
    try:
        recipe = validate_recipe(raw, registry)
    except RecipeError as exc:
        blamed = _blamed_override(str(exc), overrides)
        where = f"--set {blamed}" if blamed is not None else str(path)
        raise RecipeError(error_at(where, exc)) from None
    check_devices(raw, lambda key: f"use --set {key}=cpu")
    return LoadedRecipe(recipe, registry, path, raw)


def device_settings(raw: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``device`` key of a recipe mapping (``train.device``, a plugin block's, a
    profile's), by key path, with its value."""
    found: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "device" and isinstance(value, str):
                found.append((path, value))
            else:
                found += device_settings(value, path)
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            found += device_settings(value, f"{where}[{i}]")
    return found


def check_devices(raw: dict[str, Any], advice: Callable[[str], str]) -> None:
    """A one-line error, before any work, when a recipe's device setting names a device
    this machine does not have (``advice(key)`` says what to do instead)."""
    wanted = [(key, name) for key, name in device_settings(raw) if name not in ("auto", "cpu")]
    if not wanted:
        return
    from toolkit.devices import check_device  # torch: only for a device other than auto or cpu

    for key, name in wanted:
        check_device(name, key, advice(key))


def locations(recipe: Recipe) -> str:
    """Where a run reads and writes, in one line: its data, its cache and its output."""
    data = f"{recipe.data.root} (demo)" if recipe.data.demo is not None else recipe.data.root
    return f"data {data} · cache {recipe.cache.dir} · output {recipe.run_dir}"
