"""The building blocks every demo part is made of: wavetables, oscillators, envelopes, panning.

Everything is numpy and everything random comes from the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TABLE_SIZE = 4096


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz of (fractional) MIDI note numbers."""
    return 440.0 * np.exp((np.asarray(midi, dtype=np.float64) - 69.0) * (np.log(2.0) / 12.0))


def harmonic_table(amps: np.ndarray, phases: np.ndarray | None = None) -> np.ndarray:
    """One period of ``sum_k amps[k-1] sin(2 pi k x + phase_k)``, unit peak, wrap sample."""
    spec = np.zeros(TABLE_SIZE // 2 + 1, dtype=np.complex128)
    ph = np.zeros(len(amps)) if phases is None else phases
    spec[1 : len(amps) + 1] = amps * np.exp(1j * (ph - np.pi / 2))
    table = np.fft.irfft(spec, n=TABLE_SIZE)
    table /= np.abs(table).max() + 1e-12
    return np.append(table, table[0]).astype(np.float32)


def timbre_table(
    kind: str,
    freqs: np.ndarray,
    bright_hz: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A wavetable for an instrument timbre playing ``freqs`` (Hz), band-limited below
    Nyquist and rolled off above ``bright_hz`` at the instrument's typical pitch."""
    n_harm = max(1, min(80, int(0.45 * sample_rate / (float(freqs.max()) * 1.01))))
    k = np.arange(1, n_harm + 1, dtype=np.float64)
    if kind == "saw":
        amps = 1.0 / k
    elif kind == "square":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.0)
    elif kind == "triangle":
        amps = np.where(k % 2 == 1, 1.0 / k**2, 0.0)
    elif kind == "pulse":
        duty = rng.uniform(0.15, 0.35)
        amps = np.abs(np.sin(np.pi * k * duty)) / k
    elif kind == "organ":
        amps = np.zeros(n_harm)
        for h, a in ((1, 1.0), (2, 0.7), (3, 0.5), (4, 0.35), (6, 0.2), (8, 0.15)):
            if h <= n_harm:
                amps[h - 1] = a * rng.uniform(0.6, 1.2)
    elif kind == "bell":
        amps = k ** -rng.uniform(2.0, 3.0)
    else:  # pragma: no cover - internal names only
        raise ValueError(kind)
    amps = amps / np.sqrt(1.0 + (k * float(np.median(freqs)) / bright_hz) ** 4)
    return harmonic_table(amps, rng.uniform(0, 2 * np.pi, n_harm))


@dataclass(frozen=True)
class Clock:
    """A clip's sample grid, with a coarser control grid for envelopes and pitch contours.

    The clip is the stretch of a song from ``start`` seconds on; ``tc`` holds song times.
    """

    sample_rate: int
    n: int
    step: int
    tc: np.ndarray  # control-point times (s), one every `step` samples
    start: float = 0.0

    @classmethod
    def make(cls, sample_rate: int, n: int, start: float = 0.0) -> Clock:
        """The grid of ``n`` samples at ``sample_rate`` from song time ``start`` (s), controls
        at about 2 kHz."""
        step = max(1, round(sample_rate / 2000))
        m = -(-n // step)
        return cls(sample_rate, n, step, start + np.arange(m) * (step / sample_rate), start)

    def up(self, x: np.ndarray) -> np.ndarray:
        """Control-rate ``x [..., m]`` held over each step to sample rate ``[..., n]``."""
        return np.repeat(x, self.step, axis=-1)[..., : self.n]


def oscillate(
    table: np.ndarray, freqs: np.ndarray, clock: Clock, rng: np.random.Generator
) -> np.ndarray:
    """Wavetable oscillators: control-rate ``freqs [V, m]`` (Hz) to float32 ``[V, n]``.

    The phase is accumulated (float64) and wrapped at control rate, then ramped
    linearly over each control step in float32.
    """
    size = TABLE_SIZE
    inc = freqs * (size / clock.sample_rate)  # table positions per sample, per control step
    start = np.cumsum(inc * clock.step, axis=-1) - inc * clock.step
    start += rng.uniform(0, size, (freqs.shape[0], 1))
    start -= np.floor(start / size) * size
    ramp = np.arange(clock.step, dtype=np.float32)
    pos = start.astype(np.float32)[..., None] + inc.astype(np.float32)[..., None] * ramp
    pos = pos.reshape(freqs.shape[0], -1)[:, : clock.n]
    floor = np.floor(pos)
    frac = pos - floor
    i0 = floor.astype(np.intp) & (size - 1)
    a = table[i0]
    return a + frac * (table[i0 + 1] - a)


def note_envelope(
    tc: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    gains: np.ndarray,
    attack: float,
    decay: float,
    sustain: float,
    release: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Note index and attack/decay/sustain/release envelope at each time of ``tc``."""
    idx = np.searchsorted(starts, tc, side="right") - 1
    valid = idx >= 0
    idx = np.clip(idx, 0, len(starts) - 1)
    since = tc - starts[idx]
    until = ends[idx] - tc
    env = np.minimum(since / attack, 1.0)
    env *= sustain + (1.0 - sustain) * np.exp(-since / decay)
    env *= np.clip(until / release, 0.0, 1.0)
    env *= gains[idx] * valid
    return idx, env.astype(np.float32)


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Trailing moving average of ``x`` over ``width`` samples (edge-padded)."""
    if width <= 1:
        return x
    c = np.cumsum(np.concatenate([np.full(width, x[0]), x]))
    return (c[width:] - c[:-width]) / width


def pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan of ``mono [n]`` to stereo ``[2, n]``; position in -1 (left)..1."""
    angle = (position + 1.0) * np.pi / 4.0
    out = np.empty((2, len(mono)), dtype=np.float32)
    np.multiply(mono, np.float32(np.cos(angle)), out=out[0])
    np.multiply(mono, np.float32(np.sin(angle)), out=out[1])
    return out


def rms(x: np.ndarray) -> float:
    """Root mean square of ``x``."""
    flat = np.ascontiguousarray(x).ravel()
    return float(np.sqrt(np.dot(flat, flat) / max(flat.size, 1)))
