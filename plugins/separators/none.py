"""The ``none`` separator: classify the mixture itself (the no-separation ablation)."""

from __future__ import annotations

import numpy as np

from toolkit import Separator, hookimpl


class NoSeparation(Separator):
    """Keep the mixture, downmixed to mono."""

    def separate(self, waves: np.ndarray) -> np.ndarray:
        """Return the mixtures unchanged."""
        return waves


@hookimpl
def register_separators(register):  # type: ignore[no-untyped-def]
    """Register ``none``."""
    register(
        "none",
        NoSeparation,
        input_sample_rate=None,
        input_channels=1,
        version="1",
        description="no separation: keep the mixture",
    )
