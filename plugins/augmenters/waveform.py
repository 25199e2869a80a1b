"""Batch augmenters of raw audio: ``gain``, ``time_roll`` and ``remix``.

They change the ``waveform`` feature streams of each training batch, on the
training device, and leave every other stream (frozen embeddings) as it is. All
draws come from the trainer's seeded generator (on the host, so a seed gives the
same draws on any device). An example's draws are shared by its waveform
streams, so its vocals and its mixture stay one recording. Without a layout (a
batch that is one waveform stream) the whole batch is the waveform.

- ``gain``: each clip louder or quieter by a random number of decibels.
- ``time_roll``: each clip rolled in time by a random offset (circularly).
- ``remix``: another clip's accompaniment (its mixture minus its vocals) put under
  each clip's vocals, as a new mixture; needs a ``waveform`` stream of the vocals
  and one of the mixture (``input: mixture``). Labels do not change: they say
  who sings, and the accompaniment has no lead voice.

``mixup`` works on waveform batches too, but a mix of two single-voice clips is
heard as two voices: see docs/finetune.md before using it on audio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pydantic
from pydantic import Field

from toolkit import BatchAugmenter, hookimpl
from toolkit.errors import RecipeError

if TYPE_CHECKING:
    import torch

    from toolkit.training.fusion import Layout

WAVEFORM = "waveform"
"""The feature plugin whose streams these augmenters change."""


class Probability(pydantic.BaseModel):
    """The share of examples an augmenter changes."""

    model_config = pydantic.ConfigDict(extra="forbid")

    p: float = Field(1.0, ge=0.0, le=1.0, description="probability that an example is changed")


class GainParams(Probability):
    """Settings of ``gain``."""

    min_db: float = Field(-6.0, ge=-60.0, le=30.0, description="lowest gain, in dB")
    max_db: float = Field(6.0, ge=-60.0, le=30.0, description="highest gain, in dB")

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> GainParams:
        return _ordered(self)


class TimeRollParams(Probability):
    """Settings of ``time_roll``."""

    max_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="largest offset, as a fraction of the clip"
    )


class RemixParams(Probability):
    """Settings of ``remix``."""

    p: float = Field(0.5, ge=0.0, le=1.0, description="probability that an example is remixed")
    min_db: float = Field(-6.0, ge=-60.0, le=20.0, description="quietest accompaniment gain, dB")
    max_db: float = Field(3.0, ge=-60.0, le=20.0, description="loudest accompaniment gain, dB")
    bleed: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of the new accompaniment added to the vocals stream too (a "
        "separator's leakage); 0: the vocals are kept",
    )

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> RemixParams:
        return _ordered(self)


def _ordered(params: Any) -> Any:
    """``params`` unless its ``min_db`` exceeds its ``max_db`` (a ValueError naming both)."""
    if params.min_db > params.max_db:
        raise ValueError(f"min_db ({params.min_db}) must not exceed max_db ({params.max_db})")
    return params


class WaveformAugmenter(BatchAugmenter):
    """A batch augmenter of the batch's waveform streams."""

    params_model: ClassVar[type[Probability]] = Probability
    registered_as: ClassVar[str] = "waveform augmenter"
    """The plugin's name, for messages."""

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :attr:`params_model` the registry validated."""
        self.params: Any = self.params_model.model_construct(**settings)
        self.layout: Layout | None = None

    def set_layout(self, layout: Layout) -> None:
        """Find the waveform streams in the batches; a RecipeError when there is none."""
        if not layout.find(WAVEFORM):
            given = ", ".join(s.name for s in layout.streams)
            raise RecipeError(
                f"augmenters: {self.registered_as} changes waveform streams, and the "
                f"features have none ({given}); add {{name: waveform}} to features"
            )
        self.layout = layout

    def streams(self, x: torch.Tensor, input: str | None = None) -> dict[int, torch.Tensor]:
        """The waveform streams of batch ``x`` (reading ``input``, if given), each ``[B, T]``."""
        if self.layout is None:
            return {0: x.reshape(len(x), -1)}
        return {i: self.layout.part(x, i).flatten(1) for i in self.layout.find(WAVEFORM, input)}

    def rebuilt(self, x: torch.Tensor, new: dict[int, torch.Tensor]) -> torch.Tensor:
        """``x`` with the streams ``new`` (index -> ``[B, T]``) in place of its own."""
        if self.layout is None:
            return new[0].reshape(x.shape)
        shaped = {i: v.reshape(len(x), *self.layout.streams[i].shape) for i, v in new.items()}
        return self.layout.replace(x, shaped)

    def chosen(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Which examples are changed: ``[B]`` booleans drawn with probability ``p``."""
        import torch  # noqa: PLC0415

        return torch.rand(batch, generator=generator, device=generator.device) < self.params.p

    def uniform(
        self, batch: int, low: float, high: float, generator: torch.Generator
    ) -> torch.Tensor:
        """``[B]`` draws uniform in ``[low, high]``."""
        import torch  # noqa: PLC0415

        return low + (high - low) * torch.rand(batch, generator=generator, device=generator.device)


def _on(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    from toolkit.devices import to_device  # noqa: PLC0415 - imports torch

    return to_device(values, x.device)


class Gain(WaveformAugmenter):
    """Each chosen clip scaled by ``10 ** (dB / 20)``, dB uniform in ``[min_db, max_db]``."""

    params_model = GainParams
    registered_as = "gain"

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch with its waveform streams' gains changed; targets as they are."""
        import torch  # noqa: PLC0415

        p = self.params
        db = self.uniform(len(x), p.min_db, p.max_db, generator)
        factor = torch.where(self.chosen(len(x), generator), 10.0 ** (db / 20.0), 1.0)
        factor = _on(x, factor).to(x.dtype)[:, None]
        return self.rebuilt(x, {i: w * factor for i, w in self.streams(x).items()}), y


class TimeRoll(WaveformAugmenter):
    """Each chosen clip rolled by a random offset up to ``max_fraction`` of it, either way."""

    params_model = TimeRollParams
    registered_as = "time_roll"

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch with its waveform streams rolled in time; targets as they are."""
        import torch  # noqa: PLC0415

        streams = self.streams(x)
        length = next(iter(streams.values())).shape[1]
        largest = self.params.max_fraction * length
        offsets = self.uniform(len(x), -largest, largest, generator).round().long()
        offsets = torch.where(self.chosen(len(x), generator), offsets, 0)
        positions = torch.arange(length)[None, :] - offsets[:, None]
        index = _on(x, positions.remainder(length))
        return self.rebuilt(x, {i: w.gather(1, index) for i, w in streams.items()}), y


class Remix(WaveformAugmenter):
    """Each chosen clip's mixture made again: its vocals over another clip's accompaniment."""

    params_model = RemixParams
    registered_as = "remix"

    def set_layout(self, layout: Layout) -> None:
        """Find the vocals and the mixture waveform streams; a RecipeError without both."""
        super().set_layout(layout)
        vocals, mixture = layout.find(WAVEFORM, "separated"), layout.find(WAVEFORM, "mixture")
        if not vocals or not mixture:
            raise RecipeError(
                "augmenters: remix needs a waveform stream of the separator's output and one "
                "of the mixture: features: [{name: waveform}, {name: waveform, input: mixture}]"
            )
        self.vocals, self.mixture = vocals[0], mixture[0]

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch with new mixtures (and vocals, with ``bleed``); targets as they are."""
        import torch  # noqa: PLC0415

        if self.layout is None:
            raise RecipeError("augmenters: remix needs the vocals and the mixture streams")
        p = self.params
        batch = len(x)
        partner = torch.randperm(batch, generator=generator, device=generator.device)
        db = self.uniform(batch, p.min_db, p.max_db, generator)
        chosen = _on(x, self.chosen(batch, generator))[:, None]
        partner, gain = _on(x, partner), _on(x, 10.0 ** (db / 20.0)).to(x.dtype)[:, None]
        vocals = self.layout.part(x, self.vocals).flatten(1)
        mixture = self.layout.part(x, self.mixture).flatten(1)
        other = (mixture - vocals)[partner] * gain
        new = {
            self.mixture: torch.where(chosen, vocals + other, mixture),
            self.vocals: torch.where(chosen, vocals + p.bleed * other, vocals),
        }
        return self.rebuilt(x, new), y


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register ``gain``, ``time_roll`` and ``remix``."""
    register(
        "gain",
        Gain,
        params=GainParams,
        version="1",
        description="waveform streams: random gain in dB per clip",
    )
    register(
        "time_roll",
        TimeRoll,
        params=TimeRollParams,
        version="1",
        description="waveform streams: each clip rolled in time by a random offset",
    )
    register(
        "remix",
        Remix,
        params=RemixParams,
        version="1",
        description="waveform streams: each clip's vocals over another clip's accompaniment",
    )
