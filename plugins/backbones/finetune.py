"""The ``musicnn_finetune`` and ``speaker_finetune`` backbones: pretrained networks trained
end to end on the clip's waveform.

Each builds its ported network with the shipped weights (:mod:`toolkit.pretrained`)
as the body, reads the ``waveform`` feature stream (the separator's output, or the
mixture with ``audio: mixture``), cuts it into the network's windows and averages
their embeddings; a new head (the ``head`` backbone's MLP) classifies that
embedding concatenated with every other, non-waveform stream pooled over its
windows (frozen embeddings such as ``musicnn`` or ``speaker`` features). Streams
reach them packed (``streams: pack``). The head trains alone for ``head_epochs``,
then the body unfreezes at ``body_lr`` times the head's rate (see
:mod:`toolkit.training.finetuning`). See docs/finetune.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pydantic
from pydantic import Field

from toolkit import hookimpl
from toolkit.plugins.backbones.finetune_settings import HeadSettings

if TYPE_CHECKING:
    from toolkit.plugins.backbones.finetune_net import FineTuned
    from toolkit.training.fusion import Layout


class MusicnnFineTuneParams(HeadSettings):
    """Recipe settings of ``musicnn_finetune``."""

    model: Literal["MSD_musicnn", "MTT_musicnn"] = Field(
        "MSD_musicnn", description="pretrained weights: Million Song Dataset or MagnaTagATune"
    )
    embedding: Literal["penultimate", "pooled"] = Field(
        "penultimate",
        description="the dense layer's 200 values, or the 1506 max and mean pooled mid-end "
        "features (the back-end then unused)",
    )
    frozen_layers: int = Field(
        2,
        ge=0,
        le=6,
        description="layers from the input up that never train: input norm, front-end, "
        "mid-end 1-3, back-end (2: the front-end stays as pretrained)",
    )


class SpeakerFineTuneParams(HeadSettings):
    """Recipe settings of ``speaker_finetune``."""

    rate: float = Field(
        1.3, gt=0.0, description="1.6 s windows per second (resemblyzer's 1.3: 3 per 3 s clip)"
    )
    normalize_volume: bool = Field(
        True, description="raise quieter clips to -30 dBFS RMS first, as resemblyzer does"
    )
    frozen_layers: int = Field(
        0, ge=0, le=4, description="layers from the input up that never train: LSTM 1-3, linear"
    )

    @pydantic.model_validator(mode="after")
    def _hop_fits_window(self) -> SpeakerFineTuneParams:
        from toolkit.pretrained.speaker import partial_starts  # noqa: PLC0415

        partial_starts(0, rate=self.rate)
        return self


def musicnn_finetune(
    num_classes: int, in_channels: int, layout: Layout, **settings: Any
) -> FineTuned:
    """musicnn (front-end, mid-end, back-end) fine-tuned under a new head, built from the
    fields of :class:`MusicnnFineTuneParams` the registry validated."""
    from toolkit.plugins.backbones.finetune_net import FineTuned, MusicnnBody  # noqa: PLC0415

    del in_channels  # packed: the layout says where each stream lies
    params = MusicnnFineTuneParams.model_construct(**settings)
    body = MusicnnBody(params.model, params.embedding)
    return FineTuned(body, layout, num_classes, params, name="musicnn_finetune")


def speaker_finetune(
    num_classes: int, in_channels: int, layout: Layout, **settings: Any
) -> FineTuned:
    """Resemblyzer's speaker encoder (3 LSTM layers, linear) fine-tuned under a new head,
    built from the fields of :class:`SpeakerFineTuneParams` the registry validated."""
    from toolkit.plugins.backbones.finetune_net import FineTuned, SpeakerBody  # noqa: PLC0415

    del in_channels
    params = SpeakerFineTuneParams.model_construct(**settings)
    body = SpeakerBody(params.rate, params.normalize_volume)
    return FineTuned(body, layout, num_classes, params, name="speaker_finetune")


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    """Register ``musicnn_finetune`` and ``speaker_finetune``."""
    register(
        "musicnn_finetune",
        musicnn_finetune,
        params=MusicnnFineTuneParams,
        streams="pack",
        version="1",
        description="pretrained musicnn trained end to end on the waveform stream, new head "
        "(fuses frozen streams)",
    )
    register(
        "speaker_finetune",
        speaker_finetune,
        params=SpeakerFineTuneParams,
        streams="pack",
        version="1",
        description="pretrained speaker encoder trained end to end on the waveform stream, "
        "new head (fuses frozen streams)",
    )
