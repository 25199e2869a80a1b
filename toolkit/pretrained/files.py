"""Where pretrained files come from and where their converted copies are kept."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any


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


def load_weights_safely(path: Path, error: type[Exception], what: str, missing_hint: str) -> Any:
    """A torch-saved weight file, unpickled without running code (``weights_only``).

    A missing or unreadable file raises ``error`` naming ``what`` and the file;
    ``missing_hint`` says how to get a missing one. Globals a file needs beyond
    tensors (numpy arrays, say) are allowed by the caller with
    ``torch.serialization.safe_globals``.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise error(f"{what} {path} not found: {missing_hint}") from None
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        text = str(exc).strip()
        reason = text.splitlines()[-1] if text else type(exc).__name__
        raise error(f"cannot read {what} {path} safely ({reason})") from None
