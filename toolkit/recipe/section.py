"""What every recipe section shares: unknown keys are errors; a plugin block is a mapping."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

PluginSpec = dict[str, Any]
"""A plugin block as written: a mapping with a ``name``, checked by the plugin it names."""


class Strict(BaseModel):
    """Base of every recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
