"""A pretrained body trained end to end under a new head: which layers train when, and how fast.

The body is a list of layers from the input up. The head trains alone for the
first ``head_epochs`` epochs (the whole body frozen); then the body unfreezes,
except its first ``frozen_layers`` layers, which stay frozen throughout. The body
learns at ``body_lr`` times the head's rate, each layer below the top one
``layer_decay`` times slower than the layer above it (layer-wise decay).

A frozen layer's batch norms stay in eval mode (their running statistics are
the pretrained ones); so do a training layer's unless ``train_norms``: with the
small batches of a CPU the batch statistics are noisy, and the pretrained ones fit
the input the network was trained on. A backbone uses :class:`LayerSchedule` to
provide the trainer's optional hooks (:class:`toolkit.registry.kinds.FineTunable`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import Field

from toolkit.wording import count

if TYPE_CHECKING:  # torch is imported when a backbone is built, not when plugins are listed
    from torch import nn


class FineTuneSettings(pydantic.BaseModel):
    """The recipe settings of a fine-tuned backbone's schedule (a plugin's parameters extend
    this model)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    head_epochs: int = Field(
        2, ge=0, description="epochs the head trains alone before the body unfreezes"
    )
    frozen_layers: int = Field(
        0, ge=0, description="body layers, from the input up, that never train"
    )
    body_lr: float = Field(
        0.1, gt=0.0, le=1.0, description="the body's learning rate, as a fraction of the head's"
    )
    layer_decay: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="each body layer learns this much slower than the one above it",
    )
    train_norms: bool = Field(
        False,
        description="training layers' batch norms update their statistics (false: the "
        "pretrained statistics are kept; their scale and shift still train)",
    )


@dataclass
class BodyLayer:
    """One layer of a pretrained body: its parameters and its batch norms."""

    name: str
    params: list[nn.Parameter]
    norms: list[nn.Module] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, modules: Iterable[nn.Module]) -> BodyLayer:
        """The layer made of ``modules`` (every parameter and batch norm in them)."""
        from torch.nn.modules.batchnorm import _BatchNorm  # noqa: PLC0415

        modules = list(modules)
        params = [p for m in modules for p in m.parameters()]
        norms = [n for m in modules for n in m.modules() if isinstance(n, _BatchNorm)]
        return cls(name, params, norms)


class LayerSchedule:
    """When each layer of a body trains, and its learning rate relative to the head's."""

    def __init__(self, layers: Sequence[BodyLayer], settings: FineTuneSettings) -> None:
        """Layers from the input up; the settings of :class:`FineTuneSettings`. The body
        starts as in epoch 1 (frozen when the head trains alone first)."""
        if settings.frozen_layers > len(layers):
            names = ", ".join(layer.name for layer in layers)
            raise ValueError(
                f"frozen_layers {settings.frozen_layers} exceeds the body's "
                f"{count(len(layers), 'layer')} ({names})"
            )
        self.layers = list(layers)
        self.settings = settings
        self.on_epoch_start(1, set_modes=False)

    def lr_scale(self, index: int) -> float:
        """Layer ``index``'s learning rate as a fraction of the head's."""
        depth = len(self.layers) - 1 - index
        return self.settings.body_lr * self.settings.layer_decay**depth

    def trains(self, index: int, epoch: int) -> bool:
        """Whether layer ``index`` trains in ``epoch`` (counted from 1)."""
        return epoch > self.settings.head_epochs and index >= self.settings.frozen_layers

    def parameter_groups(self, head: Iterable[nn.Parameter], lr: float) -> list[dict[str, Any]]:
        """The head's parameters at ``lr`` first, then each layer that ever trains at its
        own rate (the layers that never train are in no group)."""
        groups: list[dict[str, Any]] = [{"params": list(head), "lr": lr}]
        for i, layer in enumerate(self.layers):
            if i >= self.settings.frozen_layers and layer.params:
                groups.append({"params": layer.params, "lr": lr * self.lr_scale(i)})
        return groups

    def on_epoch_start(self, epoch: int, *, set_modes: bool = True) -> None:
        """Freeze or unfreeze each layer for ``epoch``; batch norms of the layers that do
        not train (and, unless ``train_norms``, of those that do) in eval mode."""
        for i, layer in enumerate(self.layers):
            trains = self.trains(i, epoch)
            for param in layer.params:
                param.requires_grad_(trains)
            if set_modes:
                for norm in layer.norms:
                    norm.train(trains and self.settings.train_norms)
