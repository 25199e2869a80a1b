"""Words for the messages: a count with its noun in agreement."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in agreement: ``1 model``, ``2 models``, ``0 models`` (``plural``
    for a noun not made plural by an ``s``: ``count(2, "copy", "copies")``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def singular(kind: str) -> str:
    """'backbones' -> 'backbone', for messages."""
    return kind[:-1] if kind.endswith("s") else kind
