"""A plugin file for tests that need a model whose epochs score as the test says, not as a
training run happens to go.

Backbone ``scripted``: its logits at epoch ``e`` are ``scale * confidence`` for the class
``script[e - 1] = [class, scale]`` and 0 for the others, whatever the input;
training changes nothing (its one parameter enters the logits times zero). The
epoch lives in a buffer set when the epoch starts, so the weights kept of an
epoch (``best.pt``) predict the test clips as that epoch predicted validation.

Epoch 1 ``[1, 20]`` and epoch 2 ``[0, 0.01]``, on validation clips with more of
class 1 than of class 0, make epoch 1 the more accurate and epoch 2 (nearly
uniform: a loss of about ln K) the lower log loss: best epochs by loss and by
accuracy disagree by construction. A trial with a large ``confidence`` (searched) is
confidently wrong on every clip not of its class: a loss far above the others', for a
pruner to stop.
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from toolkit import hookimpl


class ScriptedParams(pydantic.BaseModel):
    """Settings of ``scripted``: per epoch, the class it favours and by how much."""

    model_config = pydantic.ConfigDict(extra="forbid")

    script: list[tuple[int, float]]
    confidence: float = 1.0


class Scripted(nn.Module):
    """Logits fixed per epoch by the script; the input only gives the batch size."""

    def __init__(
        self, num_classes: int, script: list[tuple[int, float]], confidence: float
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.script = [(int(c), float(s) * confidence) for c, s in script]
        self.weight = nn.Parameter(torch.zeros(1))
        self.register_buffer("epoch", torch.tensor(1))

    def on_epoch_start(self, epoch: int) -> None:
        """Remember the epoch (a buffer: saved with the weights)."""
        self.epoch.fill_(epoch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The script's logits for this epoch, one row per clip."""
        step = min(int(self.epoch), len(self.script)) - 1
        favoured, scale = self.script[step]
        logits = torch.zeros(x.shape[0], self.num_classes, device=x.device)
        logits[:, favoured] = scale
        return logits + 0 * self.weight


def scripted(
    num_classes: int, in_channels: int, script: list[tuple[int, float]], confidence: float = 1.0
) -> Scripted:
    """A ``scripted`` backbone for ``num_classes`` classes."""
    del in_channels
    return Scripted(num_classes, script, confidence)


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    register(
        "scripted",
        scripted,
        params=ScriptedParams,
        description="logits fixed per epoch by a script (tests)",
    )
