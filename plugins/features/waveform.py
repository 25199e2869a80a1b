"""The ``waveform`` feature extractor: the clip's audio itself, for networks trained end to end.

Its cached output is the stream's stem (the separator's output, or the decoded
clip with ``input: mixture``) as ``[B, 1, 1, T]`` at ``sample_rate`` (16 kHz, the
rate of the pretrained networks), so a fine-tuned backbone cuts it into its own
windows, and batch augmenters (gain, shift, another clip's accompaniment) work on
the continuous clip. Stems are cached as float16, and so are features: the
waveform is the stem, stored again without further loss (float16 keeps about 66 dB
of signal to rounding noise; see docs/finetune.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pydantic
from pydantic import Field

from toolkit import FeatureExtractor, hookimpl
from toolkit.registry.kinds import mono_batch

if TYPE_CHECKING:
    import torch


class WaveformParams(pydantic.BaseModel):
    """Settings of the ``waveform`` extractor."""

    model_config = pydantic.ConfigDict(extra="forbid")

    sample_rate: int = Field(
        16000, ge=1000, description="rate of the cached waveform in Hz (the networks take 16000)"
    )


class Waveform(FeatureExtractor):
    """Each clip's samples as a ``[1, 1, T]`` map, resampled to ``sample_rate``."""

    def __init__(self, sample_rate: int = 16000) -> None:
        """Keep the rate the waveform is given at."""
        self.sample_rate = sample_rate

    def extract(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Return float32 ``[B, 1, 1, T']`` of float32 ``[B, T]`` waves at ``sample_rate``."""
        import torchaudio  # noqa: PLC0415 - heavy: imported when features are computed

        waves = mono_batch(waves)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if sample_rate != self.sample_rate:
            waves = torchaudio.functional.resample(waves, int(sample_rate), self.sample_rate)
        return waves[:, None, None, :].contiguous()


@hookimpl
def register_feature_extractors(register):  # type: ignore[no-untyped-def]
    """Register ``waveform``."""
    register(
        "waveform",
        Waveform,
        params=WaveformParams,
        version="1",
        description="the stem's (or mixture's) samples as [1, 1, T], for end-to-end training",
    )
