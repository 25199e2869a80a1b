"""One registered plugin, as the registry keeps it and the engine builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic


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
