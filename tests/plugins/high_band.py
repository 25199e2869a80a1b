"""A cheap stand-in for a vocal separator in tests: the mixture above 300 Hz.

Fast enough for tests that need a separated stem unlike the mixture (its
accompaniment, the mixture minus the stem, is then the low band), where
Spleeter would take minutes.
"""

from __future__ import annotations

import numpy as np

from toolkit import Separator, hookimpl

CUTOFF_HZ = 300.0
SAMPLE_RATE = 16000


class HighBand(Separator):
    """The part of each mixture above ``CUTOFF_HZ`` (at 16 kHz)."""

    def separate(self, waves):  # type: ignore[no-untyped-def]
        spectrum = np.fft.rfft(waves, axis=-1)
        freqs = np.fft.rfftfreq(waves.shape[-1], 1 / SAMPLE_RATE)
        spectrum[..., freqs < CUTOFF_HZ] = 0
        return np.fft.irfft(spectrum, n=waves.shape[-1], axis=-1).astype(np.float32)


@hookimpl
def register_separators(register):  # type: ignore[no-untyped-def]
    register(
        "high_band",
        HighBand,
        input_sample_rate=SAMPLE_RATE,
        input_channels=1,
        description="the mixture above 300 Hz (tests)",
    )
