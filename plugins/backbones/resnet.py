"""The ``resnet18`` and ``resnet10`` backbones: our own ResNet for spectrograms.

The classic ImageNet layout (He et al., 2015): a 7x7 stride-2 stem and max
pool, four stages of basic blocks with 1x, 2x, 4x and 8x ``width`` channels,
global average pooling, optional dropout and a linear classifier. The input
may have any channel count (one for a mel spectrogram, as in the report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import Field

from toolkit import hookimpl

if TYPE_CHECKING:
    from toolkit.plugins.backbones.resnet_net import ResNet


class ResNetParams(pydantic.BaseModel):
    """Recipe settings of ``resnet18`` / ``resnet10``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    width: int = Field(64, ge=1, description="channels of the first stage (64 in the paper)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
    zero_init_residual: bool = Field(
        False, description="start each block's last batch-norm at zero (identity blocks)"
    )


def resnet18(
    num_classes: int,
    in_channels: int,
    width: int = 64,
    dropout: float = 0.0,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; about 11.2M parameters at width 64."""
    from toolkit.plugins.backbones.resnet_net import ResNet  # noqa: PLC0415 - torch, lazily

    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, dropout, zero_init_residual)


def resnet10(
    num_classes: int,
    in_channels: int,
    width: int = 64,
    dropout: float = 0.0,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-10: basic blocks [1, 1, 1, 1]; a lighter sibling of ResNet-18."""
    from toolkit.plugins.backbones.resnet_net import ResNet  # noqa: PLC0415

    return ResNet((1, 1, 1, 1), num_classes, in_channels, width, dropout, zero_init_residual)


def __getattr__(name: str) -> Any:
    """``ResNet`` and ``BasicBlock``, imported (with torch) on first use."""
    if name in ("ResNet", "BasicBlock"):
        from toolkit.plugins.backbones import resnet_net  # noqa: PLC0415

        return getattr(resnet_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    """Register ``resnet18`` and ``resnet10``."""
    register(
        "resnet18",
        resnet18,
        params=ResNetParams,
        version="1",
        description="own ResNet-18 (basic blocks 2-2-2-2), any input channel count",
    )
    register(
        "resnet10",
        resnet10,
        params=ResNetParams,
        version="1",
        description="own ResNet-10 (basic blocks 1-1-1-1), any input channel count",
    )
