"""The ``time_shift`` test-time augmenter: predictions averaged over time-shifted features.

Each view rolls the features along time by a fixed number of frames, evenly
spread in ``[-max_fraction, +max_fraction]`` of the clip (zero left out), so
the views are the same for every run (no randomness). Rolling is circular: the
frames shifted out at one end come back at the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import Field

from toolkit import TestTimeAugmenter, hookimpl

if TYPE_CHECKING:
    import torch


class TimeShiftParams(pydantic.BaseModel):
    """Settings of ``time_shift``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    views: int = Field(4, ge=1, description="shifted views besides the features themselves")
    max_fraction: float = Field(
        0.1, gt=0.0, le=0.5, description="largest shift, as a fraction of the time frames"
    )


class TimeShift(TestTimeAugmenter):
    """Views of a batch rolled along its time axis by evenly spaced offsets."""

    along_axes = True

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :class:`TimeShiftParams` the registry validated."""
        self.params = TimeShiftParams.model_construct(**settings)

    def offsets(self, frames: int) -> list[int]:
        """The shifts in frames for features of ``frames`` time frames (never zero)."""
        p = self.params
        largest = max(1, round(p.max_fraction * frames))
        half = (p.views + 1) // 2
        steps = [largest * (i + 1) / half for i in range(half)]
        signed = [s * sign for s in steps for sign in (1, -1)][: p.views]
        return [max(1, round(abs(s))) * (1 if s > 0 else -1) for s in signed]

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``views`` copies of ``x [B, C, F, T]`` rolled along ``T``."""
        import torch

        return [torch.roll(x, shifts=s, dims=-1) for s in self.offsets(x.shape[-1])]


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register ``time_shift``."""
    register(
        "time_shift",
        TimeShift,
        params=TimeShiftParams,
        version="1",
        description="test-time augmentation: average predictions over time-shifted features",
    )
