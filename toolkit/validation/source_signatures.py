"""A clip's signature of where it comes from: its accompaniment's sound, whether it has a voice.

Clips cut from one song share its instruments, mix and key: the log-mel
spectrum of the accompaniment (the mixture minus the separated stem), its mean
and spread over time, and its chroma (energy per pitch class) are close for
siblings and far for clips of other songs. The voice's identity comes from the
speaker encoder (see :mod:`toolkit.validation.grouping`); this module only says which clips
have a voice worth comparing.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from toolkit.validation.source_links import standardise

N_MELS = 64
"""Mel bands of the accompaniment's spectrum."""

CHROMA_WEIGHT = 3.0
"""How much the 12 chroma values count next to the 128 spectral ones (after each is
standardised over the clips)."""

VOICE_RATIO = 0.02
"""A clip has a voice when its separated stem holds at least this fraction of the
mixture's amplitude (RMS)."""

SIGNATURE_VERSION = "1"
"""Changes whenever a signature's computation does (it is part of the cache key)."""


def song_signature(accompaniment: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[N, 2 * N_MELS + 12]`` per clip of ``accompaniment`` ``[N, T]``: log-mel mean and
    standard deviation over time, then chroma (summing to 1)."""
    wave = torch.from_numpy(np.asarray(accompaniment, dtype=np.float32))
    n_fft = _fft_size(sample_rate, 0.064)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=N_MELS
    )
    with torch.inference_mode():
        log_mel = torch.log(mel(wave) + 1e-6)
    stats = torch.cat([log_mel.mean(-1), log_mel.std(-1)], dim=1).numpy()
    return np.concatenate([stats, chroma(accompaniment, sample_rate)], axis=1)


def chroma(waves: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[N, 12]`` share of each clip's energy (60 Hz to 5 kHz) in each pitch class."""
    wave = torch.from_numpy(np.asarray(waves, dtype=np.float32))
    n_fft = _fft_size(sample_rate, 0.256)
    window = torch.hann_window(n_fft)
    with torch.inference_mode():
        spec = torch.stft(wave, n_fft, n_fft // 4, window=window, return_complex=True)
        power = (spec.abs() ** 2).mean(-1).numpy()  # [N, F]
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    inside = (freqs > 60) & (freqs < min(5000, sample_rate / 2))
    pitch_class = np.round(69 + 12 * np.log2(np.maximum(freqs, 1e-3) / 440)).astype(int) % 12
    out = np.stack([power[:, inside & (pitch_class == p)].sum(1) for p in range(12)], axis=1)
    return out / (out.sum(axis=1, keepdims=True) + 1e-12)


def voice_ratio(stem: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """``[N]`` RMS of each clip's separated stem over its mixture's."""
    stem = np.asarray(stem, dtype=np.float64)
    mixture = np.asarray(mixture, dtype=np.float64)
    return np.sqrt((stem**2).mean(axis=1) / ((mixture**2).mean(axis=1) + 1e-12))


def weigh_signature(signatures: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Song signatures standardised per column over the ``reference`` rows (all by default),
    the chroma weighted by ``CHROMA_WEIGHT``: the vectors whose cosine similarity says
    "same song"."""
    x = standardise(signatures, reference)
    x[:, -12:] *= CHROMA_WEIGHT
    return x


def _fft_size(sample_rate: int, seconds: float) -> int:
    """The power of two nearest ``seconds`` of audio at ``sample_rate``."""
    return int(2 ** round(np.log2(max(16.0, seconds * sample_rate))))
