"""The ``mixup`` batch augmenter: convex combinations of batch pairs and their targets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic
from pydantic import Field

from toolkit import BatchAugmenter, hookimpl

if TYPE_CHECKING:
    import torch


class MixupParams(pydantic.BaseModel):
    """Settings of ``mixup``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    alpha: float = Field(0.2, gt=0.0, description="lambda ~ Beta(alpha, alpha)")
    per_example: bool = Field(
        False, description="draw one lambda per example instead of one per batch"
    )
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability of mixing a batch")


class Mixup(BatchAugmenter):
    """Mix each example with a random partner of the same batch.

    ``x' = lam * x + (1 - lam) * x[perm]`` and the same for the soft targets,
    with ``lam ~ Beta(alpha, alpha)`` and ``perm`` a random permutation. All
    randomness comes from the ``generator`` passed in, so a seeded generator
    gives the same batches. The mixing runs on the batch's device; the draws on
    the generator's (the trainer's is on the host: the same draws on any device,
    and none waits for it).
    """

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :class:`MixupParams` the registry validated."""
        self.params = MixupParams.model_construct(**settings)

    def draw(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[bool, np.ndarray, torch.Tensor]:
        """Draw ``(apply, lam, perm)`` for one batch from ``generator``.

        ``lam`` has one value, or ``batch_size`` values when ``per_example``.
        """
        import torch  # noqa: PLC0415 - heavy: imported when training, not when registering

        p = self.params
        device = generator.device
        apply = bool(torch.rand((), generator=generator, device=device).item() < p.p)
        # torch cannot draw Beta variates from a given generator: seed numpy from it.
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=device).item())
        beta_rng = np.random.default_rng(seed)
        lam = beta_rng.beta(p.alpha, p.alpha, size=batch_size if p.per_example else 1)
        perm = torch.randperm(batch_size, generator=generator, device=device)
        return apply, lam, perm

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the mixed batch ``x [B, ...]`` and mixed soft targets ``y [B, K]``."""
        import torch  # noqa: PLC0415

        from toolkit.devices import to_device  # noqa: PLC0415 - imports torch

        if len(x) != len(y):
            raise ValueError(f"batch of {len(x)} inputs but {len(y)} targets")
        if not y.is_floating_point():
            y = y.to(torch.float32)
        apply, lam, perm = self.draw(len(x), generator)
        if not apply or len(x) < 2:
            return x, y
        # the draws are made on the host; their copies to the batch's device do not wait
        perm = to_device(perm, x.device)
        lam_t = to_device(torch.from_numpy(lam), x.device)
        lam_x = lam_t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        lam_y = lam_t.to(y.dtype).view(-1, *([1] * (y.dim() - 1)))
        mixed_x = lam_x * x + (1 - lam_x) * x[perm]
        mixed_y = lam_y * y + (1 - lam_y) * y[perm]
        return mixed_x, mixed_y


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register ``mixup``."""
    register(
        "mixup",
        Mixup,
        params=MixupParams,
        version="1",
        description="mixup: convex combinations of example pairs, lambda ~ Beta(alpha, alpha)",
    )
