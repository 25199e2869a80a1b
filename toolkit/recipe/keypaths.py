"""Dotted key paths into a recipe mapping (``train.optimizer.lr``, ``augmenters.2.alpha``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.errors import RecipeError


def set_path(
    raw: dict[str, Any], path: Sequence[str], value: Any, label: str | None = None
) -> None:
    """Set ``value`` at a dotted key path, creating mappings on the way; list items by index.

    ``label`` starts error messages (default: ``--set KEY``).
    """
    label = label or f"--set {'.'.join(path)}"
    node: Any = raw
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise RecipeError(
                    f"{label}: {where}: the recipe's list has no item {part} (it has {len(node)})"
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise RecipeError(f"{label}: {where} is not a mapping in the recipe")


def get_path(raw: Mapping[str, Any], path: Sequence[str], default: Any = None) -> Any:
    """The value at a dotted key path (list items by index), or ``default`` where it is missing."""
    node: Any = raw
    for part in path:
        if isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node
