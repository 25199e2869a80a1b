"""Decoding clips into fixed-length float waveforms at a chosen rate and channel count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from toolkit.errors import DataError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".oga", ".opus", ".aiff", ".aif")
"""File extensions an id may map to, in order of preference."""


def decode(path: Path) -> tuple[np.ndarray, int]:
    """The clip's samples as float32 ``[channels, samples]`` and its sample rate."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile reports every failure as its own type
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{path}: cannot decode audio ({reason}); replace or remove the file"
        ) from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty audio clip (0 samples); replace or remove the file")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: audio holds NaN or infinite samples; replace the file")
    return np.ascontiguousarray(data.T), int(rate)


def resample(wave: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """``wave [C, T]`` resampled from ``rate`` to ``target_rate`` (torchaudio, sinc)."""
    if rate == target_rate:
        return wave
    divisor = np.gcd(rate, target_rate)
    out = AF.resample(torch.from_numpy(wave), rate // divisor, target_rate // divisor)
    return out.numpy()


def fix_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """``wave [C, T]`` with ``channels`` channels: mono is duplicated, extra channels averaged."""
    have = wave.shape[0]
    if have == channels:
        return wave
    if channels == 1:
        return wave.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(wave, channels, axis=0)
    mono = wave.mean(axis=0, keepdims=True)
    return np.repeat(mono, channels, axis=0)


def fix_length(wave: np.ndarray, length: int, crop: str = "start") -> np.ndarray:
    """``wave [C, T]`` cropped or zero-padded at the end to ``length`` samples."""
    have = wave.shape[-1]
    if have == length:
        return wave
    if have > length:
        start = (have - length) // 2 if crop == "center" else 0
        return wave[..., start : start + length]
    return np.pad(wave, ((0, 0), (0, length - have)))


def load_clip(
    path: Path, sample_rate: int, channels: int, duration: float, crop: str = "start"
) -> np.ndarray:
    """The clip decoded, resampled, channel-fixed and cut to ``duration`` seconds, float32."""
    wave, rate = decode(path)
    # Crop before resampling so long files cost only what is kept.
    keep = int(np.ceil(duration * rate)) + 64
    if wave.shape[-1] > keep:
        wave = fix_length(wave, keep, crop)
    wave = resample(fix_channels(wave, channels), rate, sample_rate)
    return fix_length(wave, int(round(duration * sample_rate)), crop).astype(np.float32)
