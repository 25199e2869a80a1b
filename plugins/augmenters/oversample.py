"""The ``oversample`` dataset augmenter: extra exact copies of chosen classes."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pydantic
from pydantic import Field

from toolkit import DatasetAugmenter, hookimpl


class OversampleParams(pydantic.BaseModel):
    """Settings of ``oversample``: how many extra copies of each class to append."""

    model_config = pydantic.ConfigDict(extra="forbid")

    copies: dict[int, Annotated[int, Field(ge=0)]] = Field(
        description="class label -> number of extra copies of every example of that class"
    )


class Oversample(DatasetAugmenter):
    """Append ``copies[label]`` unchanged copies of every training example of ``label``.

    With ``copies={0: 3}`` each example of class 0 appears four times in all.
    Classes not named get no copies; the random generator is not used.
    """

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :class:`OversampleParams` the registry validated."""
        self.params = OversampleParams.model_construct(**settings)

    def expand(
        self, features: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the copies to append: for each label, its examples repeated ``copies`` times."""
        labels = np.asarray(labels)
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        parts = []
        for label, count in sorted(self.params.copies.items()):
            if count:
                (rows,) = np.nonzero(labels == label)
                parts.append(np.tile(rows, count))
        index = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return np.asarray(features[index]), labels[index]


@hookimpl
def register_augmenters(register):  # type: ignore[no-untyped-def]
    """Register ``oversample``."""
    register(
        "oversample",
        Oversample,
        params=OversampleParams,
        version="1",
        description="append extra copies of every example of the given classes",
    )
