"""The ``oversample`` dataset augmenter: extra exact copies of chosen classes."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pydantic
from pydantic import Field

from toolkit import ClassMap, DatasetAugmenter, hookimpl


class OversampleParams(pydantic.BaseModel):
    """Settings of ``oversample``: how many extra copies of each class to append."""

    model_config = pydantic.ConfigDict(extra="forbid")

    copies: ClassMap[Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="class label, as written in the train CSV -> number of extra copies of "
        "every example of that class",
    )
    rarest: int = Field(
        0,
        ge=0,
        description="extra copies of every example of the least frequent class of the "
        "training part, on top of copies (a tie: the first of the sorted labels)",
    )


class Oversample(DatasetAugmenter):
    """Append ``copies[c]`` unchanged copies of every training example of class ``c``, and
    ``rarest`` more of the least frequent class.

    The engine builds it with ``copies`` keyed by class index (the recipe's
    ``{none: 3}`` names a label; see :data:`toolkit.ClassMap`). With ``copies={0: 3}``
    each example of class 0 appears four times in all. Classes not named get no copies;
    the random generator is not used.
    """

    def __init__(self, **settings: Any) -> None:
        """Keep ``settings``, the fields of :class:`OversampleParams` the registry validated."""
        self.params = OversampleParams.model_construct(**settings)

    def expand(
        self, features: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the copies to append: for each class, its examples repeated its count."""
        labels = np.asarray(labels)
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        counts = dict(self.params.copies)
        if self.params.rarest and len(labels):
            present, sizes = np.unique(labels, return_counts=True)
            rarest = int(present[np.argmin(sizes)])
            counts[rarest] = counts.get(rarest, 0) + self.params.rarest
        parts = []
        for label, count in sorted(counts.items()):
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
        version="2",
        description="append extra copies of every example of the given classes (or the rarest)",
    )
