"""The ``speaker`` feature extractor: resemblyzer's pretrained speaker embeddings per window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import Field

from toolkit import FeatureExtractor, hookimpl
from toolkit.registry.kinds import mono_batch

if TYPE_CHECKING:
    import torch


RESAMPLING: dict[str, Any] = {
    "resampling_method": "sinc_interp_kaiser",
    "lowpass_filter_width": 64,
    "rolloff": 0.96,
    "beta": 14.769656459379492,
}
"""torchaudio resampling closest to resemblyzer's (librosa's default, soxr "HQ"), as measured:
partial embeddings of 44.1 kHz clips within 2e-3 of resemblyzer's, 1e-2 less than with
torchaudio's default filter (bench/RESULTS.md)."""


class SpeakerParams(pydantic.BaseModel):
    """Settings of the ``speaker`` extractor, as written in a recipe's ``features`` block."""

    model_config = pydantic.ConfigDict(extra="forbid")

    window: float = Field(
        1.6,
        gt=0.0,
        le=30.0,
        description="seconds of audio per embedding (the encoder was trained on 1.6)",
    )
    rate: float = Field(
        1.3, gt=0.0, description="windows per second: the hop is 1/rate s, in 10 ms frames"
    )
    min_coverage: float = Field(
        0.75,
        gt=0.0,
        le=1.0,
        description="least fraction of a last, zero-padded window that must be audio to keep it",
    )
    normalize_volume: bool = Field(
        True, description="raise quieter clips to -30 dBFS RMS first, as resemblyzer does"
    )

    @pydantic.model_validator(mode="after")
    def _hop_fits_window(self) -> SpeakerParams:
        # torch is imported here, not when plugins are listed.
        from toolkit.pretrained.speaker import partial_starts, window_frames_of  # noqa: PLC0415

        partial_starts(0, window_frames_of(self.window), self.rate, self.min_coverage)
        return self


class SpeakerFeatures(FeatureExtractor):
    """Resemblyzer's speaker embeddings, one per window: ``[B, 1, 256, n_windows]``.

    Clips are resampled to 16 kHz; a clip shorter than one window is zero-padded
    to one. Windows follow resemblyzer's ``embed_utterance`` (see
    :func:`toolkit.pretrained.speaker.partial_starts`); each embedding is unit-norm.
    """

    def __init__(self, **settings: Any) -> None:
        """Load the pretrained encoder for the settings of :class:`SpeakerParams`."""
        from toolkit.pretrained.speaker import SpeakerEmbedder, window_frames_of  # noqa: PLC0415

        self.params = SpeakerParams.model_construct(**settings)
        p = self.params
        self.embedder = SpeakerEmbedder(
            window_frames_of(p.window), p.rate, p.min_coverage, p.normalize_volume
        )
        self._resamplers: dict[tuple[int, str], torch.nn.Module] = {}

    def resampler(self, sample_rate: int, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The module resampling ``sample_rate`` audio to the encoder's 16 kHz (built once)."""
        key = (int(sample_rate), str(device))
        if key not in self._resamplers:
            import torchaudio  # noqa: PLC0415

            from toolkit.pretrained.speaker import SAMPLE_RATE  # noqa: PLC0415

            if sample_rate <= 0:
                raise ValueError(f"sample_rate must be positive, got {sample_rate}")
            module = torchaudio.transforms.Resample(int(sample_rate), SAMPLE_RATE, **RESAMPLING)
            self._resamplers[key] = module.to(device)
        return self._resamplers[key]

    def extract(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Return float32 ``[B, 1, 256, n_windows]`` embeddings of float32 ``[B, T]`` waves."""
        import torch  # noqa: PLC0415

        waves = mono_batch(waves)
        with torch.no_grad():
            waves = self.resampler(sample_rate, waves.device)(waves)
            embeds = self.embedder.embed(waves)  # [B, n_windows, 256]
        return embeds.transpose(1, 2).unsqueeze(1).to(torch.float32).contiguous()


@hookimpl
def register_feature_extractors(register):  # type: ignore[no-untyped-def]
    """Register ``speaker``."""
    register(
        "speaker",
        SpeakerFeatures,
        params=SpeakerParams,
        version="1",
        description="resemblyzer's pretrained speaker embeddings (256-d) per 1.6 s window",
    )
