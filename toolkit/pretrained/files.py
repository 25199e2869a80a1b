"""Where pretrained files come from and where their converted copies are kept."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def package_dir(package: str) -> Path | None:
    """The installed folder of top-level ``package``, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def user_cache_dir(name: str, env: str) -> Path:
    """The cache folder ``name`` under the user cache (``$env`` overrides it)."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "toolkit" / name
