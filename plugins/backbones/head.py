"""The ``head`` backbone: a small classifier for embeddings of pretrained models.

For feature streams that are embeddings per window (``musicnn``, ``speaker``):
it pools each clip's windows (mean, max or attention) and classifies the pooled
vector with an MLP (``hidden: 0`` is a plain linear model). Several streams
reach it pooled and concatenated (its registration says ``streams="concat"``).
Weight decay is the optimizer's (``train.optimizer.weight_decay``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pydantic
from pydantic import Field

from toolkit import hookimpl

if TYPE_CHECKING:
    from toolkit.plugins.backbones.head_net import EmbeddingHead


class HeadParams(pydantic.BaseModel):
    """Recipe settings of ``head``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    pooling: Literal["mean", "max", "attention"] = Field(
        "mean", description="how a clip's windows are pooled"
    )
    hidden: int = Field(256, ge=0, description="hidden units of the MLP; 0: a linear model")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout before the last layer")


def head(
    num_classes: int,
    in_channels: int,
    pooling: str = "mean",
    hidden: int = 256,
    dropout: float = 0.2,
) -> EmbeddingHead:
    """An embedding head for ``num_classes`` classes (its input size is found lazily)."""
    from toolkit.plugins.backbones.head_net import EmbeddingHead

    del in_channels  # pooled per window and flattened: the channels are part of the vector
    return EmbeddingHead(num_classes, pooling=pooling, hidden=hidden, dropout=dropout)


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    """Register ``head``."""
    register(
        "head",
        head,
        params=HeadParams,
        streams="concat",
        version="1",
        description="pooling over windows + MLP, for pretrained embeddings (fuses streams)",
    )
