"""The ``musicnn`` feature extractor: pretrained music-tagging networks, run in PyTorch.

Each clip is resampled to 16 kHz, turned into musicnn's log-mel input, cut into
windows, and each window goes through the pretrained network on its own (so a
clip's features never depend on its batch). The features are one value vector per
window, ``[B, 1, D, windows]``: the taggram (``D`` = 50 tag probabilities), the
penultimate embedding (200 values; 256 for the VGG models) or the pooled mid-end
features (753 time maxima then 753 time means; musicnn models only). See
docs/musicnn.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pydantic
from pydantic import Field

from toolkit import FeatureExtractor, hookimpl
from toolkit.registry.kinds import mono_batch

if TYPE_CHECKING:
    import torch

_MIN_HOP = 0.032
"""The shortest hop, in seconds, that musicnn's conversion turns into one frame or more."""


class MusicnnParams(pydantic.BaseModel):
    """Settings of the ``musicnn`` extractor, as written in a recipe's ``features`` block."""

    model_config = pydantic.ConfigDict(extra="forbid")

    model: Literal["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"] = Field(
        "MTT_musicnn",
        description="pretrained network: MagnaTagATune (MTT) or Million Song Dataset (MSD)",
    )
    output: Literal["taggram", "penultimate", "pooled"] = Field(
        "taggram",
        description="tag probabilities, the penultimate embedding, or the max/mean pooled "
        "mid-end features (musicnn models only)",
    )
    window: float = Field(
        3.0, ge=0.5, le=60.0, description="window length in seconds (the models saw 3 s)"
    )
    hop: float | None = Field(
        None,
        ge=_MIN_HOP,
        description="seconds between window starts; null: windows follow each other",
    )

    @pydantic.model_validator(mode="after")
    def _fits_the_model(self) -> MusicnnParams:
        if self.model.endswith("vgg"):
            if self.window != 3.0:
                raise ValueError(f"model {self.model} takes 3 s windows only, not {self.window}")
            if self.output == "pooled":
                raise ValueError(f"model {self.model} has no pooled output")
        return self


class MusicnnFeatures(FeatureExtractor):
    """A pretrained musicnn network's per-window outputs as a one-channel feature map.

    Built from the keyword settings of :class:`MusicnnParams`, as validated by the
    registry. Building it loads the verified weights (converted once, then cached).
    """

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings`` and load the pretrained network they name."""
        from toolkit.pretrained import musicnn  # noqa: PLC0415 - heavy: torch

        self.params = MusicnnParams.model_construct(**settings)
        self.network = musicnn.pretrained(self.params.model)
        self.logmel = musicnn.LogMel()
        self.n_frames = musicnn.window_frames(self.params.window)
        self.hop_frames = musicnn.hop_frames(self.params.window, self.params.hop)

    def extract(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Return float32 ``[B, 1, D, windows]`` features of float32 ``[B, T]`` waves."""
        import torch  # noqa: PLC0415
        import torchaudio  # noqa: PLC0415

        from toolkit.pretrained import musicnn  # noqa: PLC0415

        waves = mono_batch(waves)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if sample_rate != musicnn.SAMPLE_RATE:
            waves = torchaudio.functional.resample(waves, int(sample_rate), musicnn.SAMPLE_RATE)
        self.network.to(waves.device)
        self.logmel.to(waves.device)
        with torch.no_grad():
            windows = musicnn.frame_windows(self.logmel(waves), self.n_frames, self.hop_frames)
            batch, count = windows.shape[:2]
            rows = [self._select(self.network(window[None]))[0] for window in windows.flatten(0, 1)]
            out = torch.stack(rows).reshape(batch, count, -1)
        return out.transpose(1, 2).unsqueeze(1).to(torch.float32).contiguous()

    def _select(self, outputs: Any) -> torch.Tensor:
        if self.params.output == "taggram":
            return outputs.taggram
        if self.params.output == "penultimate":
            return outputs.penultimate
        return outputs.pooled


@hookimpl
def register_feature_extractors(register):  # type: ignore[no-untyped-def]
    """Register ``musicnn``."""
    register(
        "musicnn",
        MusicnnFeatures,
        params=MusicnnParams,
        version="1",
        description="pretrained musicnn (MTT/MSD) taggram, embedding or pooled features "
        "per window, in PyTorch",
    )
