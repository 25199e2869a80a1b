"""The settings of Spleeter's ``2stems`` model, as in Deezer's ``2stems.json``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpleeterConfig:
    """Signal and network settings of one pretrained Spleeter model."""

    name: str = "2stems"
    instruments: tuple[str, ...] = ("vocals", "accompaniment")
    sample_rate: int = 44100
    n_channels: int = 2
    frame_length: int = 4096
    """STFT frame and FFT length, in samples (periodic Hann window)."""
    frame_step: int = 1024
    """STFT hop, in samples."""
    n_bins: int = 1024
    """Frequency bins the network models (``F``); the rest of the 2049 get a zero mask."""
    segment_frames: int = 512
    """Frames per network input segment (``T``)."""
    separation_exponent: float = 2.0
    epsilon: float = 1e-10
    window_compensation: float = 2.0 / 3.0
    """Overlap-add gain of the inverse STFT (1 / sum of squared windows at 75 % overlap)."""

    @property
    def n_fft_bins(self) -> int:
        """Bins of the one-sided spectrum (``frame_length // 2 + 1``)."""
        return self.frame_length // 2 + 1

    @property
    def time_stride(self) -> int:
        """Frames per step of the deepest U-Net layer (six stride-2 layers)."""
        return 64


TWO_STEMS = SpleeterConfig()
"""The ``spleeter:2stems`` model: vocals and accompaniment at 44.1 kHz."""
