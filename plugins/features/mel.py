"""The ``mel`` feature extractor: a torchaudio mel spectrogram in decibels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pydantic
from pydantic import Field

from toolkit import FeatureExtractor, hookimpl
from toolkit.registry.kinds import mono_batch

if TYPE_CHECKING:
    import torch


class MelParams(pydantic.BaseModel):
    """Settings of the ``mel`` extractor, as written in a recipe's ``features`` block."""

    model_config = pydantic.ConfigDict(extra="forbid")

    n_fft: int = Field(1024, ge=2, description="FFT size in samples")
    win_length: int | None = Field(
        None, ge=1, description="window length in samples; default n_fft"
    )
    hop_length: int = Field(512, ge=1, description="hop between frames in samples")
    f_min: float = Field(0.0, ge=0.0, description="lowest mel band edge in Hz")
    f_max: float | None = Field(
        None, gt=0.0, description="highest mel band edge in Hz; default sample_rate / 2"
    )
    pad: int = Field(0, ge=0, description="zero padding on both sides of each clip")
    n_mels: int = Field(128, ge=1, description="number of mel bands")
    power: float = Field(2.0, description="1.0 for magnitude, 2.0 for power spectrogram")
    normalized: bool = Field(False, description="normalize the STFT by the window's norm")
    center: bool = Field(True, description="pad so frames are centred on their hop")
    pad_mode: Literal["reflect", "constant", "replicate", "circular"] = Field(
        "reflect", description="padding mode when center is true"
    )
    norm: Literal["slaney"] | None = Field(None, description="mel filter-bank normalisation")
    mel_scale: Literal["htk", "slaney"] = Field("htk", description="mel scale formula")
    top_db: float | None = Field(
        80.0, gt=0.0, description="floor each clip at its max minus top_db dB; null: no floor"
    )
    normalize: bool = Field(
        False, description="standardise each clip's features to zero mean, unit variance"
    )

    @pydantic.field_validator("power")
    @classmethod
    def _power_is_one_or_two(cls, value: float) -> float:
        if value not in (1.0, 2.0):
            raise ValueError("power must be 1.0 (magnitude) or 2.0 (power)")
        return float(value)

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> MelParams:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        if self.f_max is not None and self.f_max <= self.f_min:
            raise ValueError(f"f_max {self.f_max} must exceed f_min {self.f_min}")
        return self


class MelFeatures(FeatureExtractor):
    """Log-mel spectrogram: ``MelSpectrogram`` then ``AmplitudeToDB``, one channel.

    Built from the keyword settings of :class:`MelParams`, as validated by the
    registry (the extractor does not check them again). The transform is
    created lazily for each sample rate and device it meets. ``top_db`` is
    applied per clip, so a clip's features never depend on its batch.
    """

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :class:`MelParams` the registry validated."""
        import torchaudio  # noqa: PLC0415 - heavy: imported when the extractor is built

        self.params = MelParams.model_construct(**settings)
        self._transforms: dict[tuple[int, str], torch.nn.Module] = {}
        self.to_db = torchaudio.transforms.AmplitudeToDB(
            stype="power" if self.params.power == 2.0 else "magnitude", top_db=self.params.top_db
        )

    def transform(self, sample_rate: int, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The mel-spectrogram module for ``sample_rate`` on ``device`` (built once)."""
        key = (int(sample_rate), str(device))
        if key not in self._transforms:
            import torchaudio  # noqa: PLC0415

            p = self.params
            if sample_rate <= 0:
                raise ValueError(f"sample_rate must be positive, got {sample_rate}")
            nyquist = sample_rate / 2
            if p.f_max is not None and p.f_max > nyquist:
                raise ValueError(
                    f"f_max {p.f_max} Hz is above the Nyquist frequency {nyquist} Hz "
                    f"of sample_rate {sample_rate}"
                )
            if p.f_max is None and p.f_min >= nyquist:  # f_max > f_min is checked in MelParams
                raise ValueError(f"f_min {p.f_min} Hz must be below f_max / Nyquist")
            mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=int(sample_rate),
                n_fft=p.n_fft,
                win_length=p.win_length,
                hop_length=p.hop_length,
                f_min=p.f_min,
                f_max=p.f_max,
                pad=p.pad,
                n_mels=p.n_mels,
                power=p.power,
                normalized=p.normalized,
                center=p.center,
                pad_mode=p.pad_mode,
                norm=p.norm,
                mel_scale=p.mel_scale,
            )
            self._transforms[key] = mel.to(device)
        return self._transforms[key]

    def extract(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Return float32 ``[B, 1, n_mels, frames]`` dB features of float32 ``[B, T]`` waves."""
        import torch  # noqa: PLC0415

        waves = mono_batch(waves)
        p = self.params
        with torch.no_grad():
            spec = self.transform(sample_rate, waves.device)(waves).unsqueeze(1)
            # 4-D input: torchaudio applies top_db per clip, not per batch.
            features = self.to_db(spec)
            if p.normalize:
                mean = features.mean(dim=(1, 2, 3), keepdim=True)
                std = features.std(dim=(1, 2, 3), keepdim=True)
                features = (features - mean) / (std + 1e-6)
        return features.to(torch.float32).contiguous()


@hookimpl
def register_feature_extractors(register):  # type: ignore[no-untyped-def]
    """Register ``mel``."""
    register(
        "mel",
        MelFeatures,
        params=MelParams,
        version="1",
        description="torchaudio mel spectrogram in dB (amplitude to dB), one channel",
    )
