"""The object contract of each plugin kind, as abstract bases."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

    from toolkit.training.fusion import Layout

KINDS = ("separators", "feature_extractors", "augmenters", "backbones")
"""Plugin kinds, in pipeline order, as named by their hooks."""


class Separator(ABC):
    """Maps a batch of mixtures to the stem to classify.

    The rate and channel count it needs and its version are declared when it is
    registered (``register(name, factory, input_sample_rate=..., input_channels=...,
    version=...)``; see :func:`toolkit.registry.hookspecs.register_separators`).
    """

    @abstractmethod
    def separate(self, waves: np.ndarray) -> np.ndarray:
        """Return the stem of each mixture: float32 ``[B, C, T]`` in, ``[B, C', T]`` out."""


class FeatureExtractor(ABC):
    """Maps mono waveforms to feature maps; deterministic.

    Its version is declared when it is registered (``register(name, factory,
    version=...)``; see :func:`toolkit.registry.hookspecs.register_feature_extractors`).
    """

    @abstractmethod
    def extract(self, waves: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Return features float32 ``[B, C, F, T']`` for waves float32 ``[B, T]``."""


def mono_batch(waves: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``waves`` as a float32 tensor ``[B, T]``; any other shape is a ValueError naming it."""
    import torch

    waves = torch.as_tensor(waves)
    if waves.dim() != 2:
        raise ValueError(f"expected mono waves [B, T], got shape {tuple(waves.shape)}")
    return waves.to(torch.float32)


class AugmenterBase(ABC):
    """What every kind of augmenter declares: its stage, and whether it needs feature maps."""

    stage: ClassVar[str]
    along_axes: ClassVar[bool] = False
    """Whether it works along the axes of a feature map (masks, shifts in time): it cannot
    run on streams a backbone takes packed (flattened side by side), see
    :func:`toolkit.recipe.validation.check_packed_augmenters`."""


class DatasetAugmenter(AugmenterBase):
    """Adds examples to the training part of the split, once, before training."""

    stage: ClassVar[str] = "dataset"

    @abstractmethod
    def expand(
        self, features: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the examples to append (features ``[M, C, F, T]``, labels ``[M]``)."""


class BatchAugmenter(AugmenterBase):
    """Transforms every training batch on the training device."""

    stage: ClassVar[str] = "batch"

    @abstractmethod
    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the batch ``x [B, C, F, T]`` and its soft targets ``y [B, K]`` transformed."""

    def set_layout(self, layout: Layout) -> None:  # noqa: B027 - optional, empty by default
        """Learn where each feature stream lies in the batches (called before training).

        An augmenter that works on some streams only (e.g. the waveform ones) finds
        them with :meth:`toolkit.training.fusion.Layout.find` and cuts them out of a batch with
        :meth:`~toolkit.training.fusion.Layout.part`; the default ignores the layout.
        """


class TestTimeAugmenter(AugmenterBase):
    """Views of a batch whose predictions are averaged with the batch's own (``predict.tta``)."""

    stage: ClassVar[str] = "test"

    @abstractmethod
    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Extra views of the features ``x [B, C, F, T]``, each of the same shape."""


Augmenter = DatasetAugmenter | BatchAugmenter | TestTimeAugmenter


class FineTunable(Protocol):
    """Optional members of a backbone module, which the trainer uses when it has them.

    None is required: a backbone without them has one parameter group at the
    optimizer's learning rate, every layer trained from the first epoch, and its
    input standardised by the training set's mean and spread. A pretrained network
    trained end to end under a new head uses them to keep its body frozen at first,
    then train it more gently than the head (see :mod:`toolkit.training.finetuning`).
    """

    standardize_input: bool
    """``False``: the trainer feeds the features as they are (a waveform, whose scale a
    pretrained network's front end expects), instead of ``(x - mean) / std`` of the
    training set."""

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimizer's parameter groups for the recipe's learning rate ``lr``.

        Each group is a dict as ``torch.optim`` takes it: ``params`` and, optionally,
        its own ``lr`` (e.g. ``lr * 0.1`` for a pretrained body) or ``weight_decay``.
        The schedule scales every group's rate alike. The first group's rate is the
        one ``metrics.csv`` records (put the head's first). A parameter in no group
        is never trained.
        """
        ...

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each training epoch (``epoch`` counts from 1), after the model is
        put in training mode: freeze or unfreeze layers here (``requires_grad``) and put
        the modules that must not update their statistics (frozen batch norms) in eval
        mode. Evaluation always runs the whole model in eval mode."""
        ...
