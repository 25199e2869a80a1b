"""The ``head`` network: pooling over windows, then a small MLP (imported with torch)."""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingHead(nn.Module):
    """Pools ``[B, C, F, T]`` embeddings over their windows ``T``, then classifies.

    Its first layers are lazy: their input size (``C * F``) is known at the first
    forward pass, which the engine runs before training starts.
    """

    def __init__(
        self, num_classes: int, pooling: str = "mean", hidden: int = 256, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.score = nn.LazyLinear(1) if pooling == "attention" else None
        # streams of unlike scales (unit-norm speaker vectors, musicnn activations):
        # every dimension of the pooled vector is standardised on its own
        self.norm = nn.LazyBatchNorm1d()
        if hidden == 0:
            self.classifier: nn.Module = nn.Sequential(
                nn.Dropout(dropout), nn.LazyLinear(num_classes)
            )
        else:
            self.classifier = nn.Sequential(
                nn.LazyLinear(hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]``."""
        windows = x.flatten(1, 2).transpose(1, 2)  # [B, T, C*F]
        if self.pooling == "max":
            pooled = windows.amax(dim=1)
        elif self.score is not None:
            weights = torch.softmax(self.score(windows), dim=1)  # [B, T, 1]
            pooled = (weights * windows).sum(dim=1)
        else:
            pooled = windows.mean(dim=1)
        return self.classifier(self.norm(pooled))
