"""The ``time_mask`` and ``freq_mask`` dataset augmenters: masked copies of the training set.

Each copy of the training part gets, per example and independently, ``count``
bands of random width (1 to ``max_width``) and random position set to the mask
value, along time frames (``time_mask``) or mel bins (``freq_mask``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pydantic
from pydantic import Field

from toolkit import DatasetAugmenter, hookimpl

CHUNK_BYTES = 64 * 2**20
"""Rough size of the working buffer while masking, so big sets are done in slices."""


class MaskParams(pydantic.BaseModel):
    """Settings of ``time_mask`` and ``freq_mask``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    copies: int = Field(1, ge=1, description="masked copies of the whole training part")
    max_width: int = Field(
        ge=1, description="widest mask, in time frames (time_mask) or mel bins (freq_mask)"
    )
    count: int = Field(1, ge=1, description="masks per example and copy")
    mask_value: float | Literal["mean"] = Field(
        "mean", description="value under the mask: 'mean' (of each example) or a number"
    )


class AxisMask(DatasetAugmenter):
    """Masked copies of every example along one axis of its ``[C, F, T]`` features."""

    axis: ClassVar[int] = -1
    """Axis of the ``[N, C, F, T]`` feature array that masks cut across."""
    along_axes = True

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :class:`MaskParams` the registry validated."""
        self.params = MaskParams.model_construct(**settings)

    def draw(self, n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random ``(starts, widths)``, each ``[copies, n, count]``, for an axis of ``size``."""
        p = self.params
        shape = (p.copies, n, p.count)
        widths = rng.integers(1, min(p.max_width, size) + 1, size=shape)
        starts = rng.integers(0, size - widths + 1)
        return starts, widths

    def expand(
        self, features: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``copies`` masked copies of all examples; ``features`` is never modified."""
        labels = np.asarray(labels)
        n = len(features)
        if n != len(labels):
            raise ValueError(f"{n} feature rows but {len(labels)} labels")
        if features.ndim != 4:
            raise ValueError(f"expected features [N, C, F, T], got shape {features.shape}")
        copies = self.params.copies
        size = features.shape[self.axis]
        out = np.empty((copies * n, *features.shape[1:]), dtype=features.dtype)
        if n == 0 or size == 0:
            return out, np.tile(labels, copies)
        starts, widths = self.draw(n, size, rng)
        positions = np.arange(size)
        per_row = max(1, features[0].nbytes)
        step = max(1, CHUNK_BYTES // per_row)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            block = np.asarray(features[lo:hi])
            fill = self.fill_values(block)
            for c in range(copies):
                s = starts[c, lo:hi, :, None]
                w = widths[c, lo:hi, :, None]
                masked = ((positions >= s) & (positions < s + w)).any(axis=1)  # [rows, size]
                masked = self._broadcast(masked)
                out[c * n + lo : c * n + hi] = np.where(masked, fill, block)
        return out, np.tile(labels, copies)

    def fill_values(self, block: np.ndarray) -> np.ndarray:
        """The mask value of each example of ``block``, shaped ``[rows, 1, 1, 1]``."""
        value = self.params.mask_value
        if value == "mean":
            means = block.mean(axis=(1, 2, 3), dtype=np.float64, keepdims=True)
            return means.astype(block.dtype)
        return np.full((len(block), 1, 1, 1), value, dtype=block.dtype)

    def _broadcast(self, masked: np.ndarray) -> np.ndarray:
        """Reshape a ``[rows, size]`` mask to broadcast against ``[rows, C, F, T]``."""
        if self.axis == -1:
            return masked[:, None, None, :]
        return masked[:, None, :, None]


class TimeMask(AxisMask):
    """Masked copies with random bands of time frames set to the mask value."""

    axis = -1


class FreqMask(AxisMask):
    """Masked copies with random bands of mel bins set to the mask value."""

    axis = -2


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register ``time_mask`` and ``freq_mask``."""
    register(
        "time_mask",
        TimeMask,
        params=MaskParams,
        version="1",
        description="append copies of the training set with random time-frame masks",
    )
    register(
        "freq_mask",
        FreqMask,
        params=MaskParams,
        version="1",
        description="append copies of the training set with random mel-bin masks",
    )
