"""What every fine-tuned backbone takes (pydantic only, no torch): read by the backbones'
registration (:mod:`.finetune`) and by their network (:mod:`.finetune_net`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from toolkit.training.finetuning import FineTuneSettings


class HeadSettings(FineTuneSettings):
    """What every fine-tuned backbone takes: the schedule, the stream it reads, its head."""

    audio: Literal["separated", "mixture"] = Field(
        "separated", description="the waveform stream the network reads"
    )
    hidden: int = Field(256, ge=0, description="hidden units of the head's MLP; 0: linear")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout before the last layer")
