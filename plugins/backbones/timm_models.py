"""The ``timm`` backbone: any timm architecture by name, randomly initialised.

``{name: timm, model: resnet34}`` builds ``timm.create_model("resnet34",
pretrained=False, in_chans=C, num_classes=K)``. Nothing is ever downloaded.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import Field

from toolkit import hookimpl

if TYPE_CHECKING:
    from torch import nn

RESERVED_KWARGS = frozenset(
    {
        "model_name",
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "checkpoint_path",
        "cache_dir",
        "in_chans",
        "num_classes",
        "drop_rate",
    }
)
"""``timm.create_model`` arguments the recipe's ``kwargs`` may not set."""


@lru_cache(maxsize=1)
def available_models() -> frozenset[str]:
    """Names of every architecture timm can build."""
    import timm  # noqa: PLC0415 - heavy: imported when a timm model is named, not when listing

    return frozenset(timm.list_models())


def check_model_name(model: str) -> str:
    """Return ``model`` if timm knows it (a ``.tag`` suffix allowed), else raise ValueError."""
    architecture = model.split(".", 1)[0]
    if architecture in available_models():
        return model
    close = difflib.get_close_matches(architecture, sorted(available_models()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown timm model {model!r}{hint} (see timm.list_models())")


class TimmParams(pydantic.BaseModel):
    """Recipe settings of the ``timm`` backbone."""

    model_config = pydantic.ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="a timm architecture name, e.g. resnet34")
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="further keyword arguments of timm.create_model"
    )

    @pydantic.field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return check_model_name(value)

    @pydantic.field_validator("kwargs")
    @classmethod
    def _no_reserved_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(RESERVED_KWARGS.intersection(value))
        if bad:
            raise ValueError(f"kwargs may not set {', '.join(bad)} (set by the toolkit)")
        return value


def timm_backbone(
    num_classes: int,
    in_channels: int,
    model: str,
    drop_rate: float = 0.0,
    kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Build timm's ``model`` for ``in_channels`` inputs and ``num_classes`` outputs, untrained.

    The parameters come validated by :class:`TimmParams` (the model name is known
    to timm, ``kwargs`` sets nothing the toolkit sets).
    """
    import timm  # noqa: PLC0415

    return timm.create_model(
        model,
        pretrained=False,
        in_chans=in_channels,
        num_classes=num_classes,
        drop_rate=drop_rate,
        **(kwargs or {}),
    )


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    """Register ``timm``."""
    register(
        "timm",
        timm_backbone,
        params=TimmParams,
        version="1",
        description="any timm architecture by name (model: ...), never pretrained",
    )
