"""The embedded demo competition: synthetic song snippets in the report's four classes.

:mod:`toolkit.demo.sound` synthesises the clips as numpy arrays, from a song frame
(:mod:`~toolkit.demo.song`), its accompaniment (:mod:`~toolkit.demo.instruments`) and
its singers (:mod:`~toolkit.demo.voices`), all made of :mod:`~toolkit.demo.oscillators`,
songs and singers shared between clips coming from :mod:`~toolkit.demo.sources`;
:mod:`toolkit.demo.competition` writes them as a Kaggle-style competition folder.
The folder writer's names load on first use, so importing the synthesis alone pulls
in neither it nor its file libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from toolkit.demo.sound import (
    CLASS_NAMES,
    DEFAULT_SAMPLE_RATE,
    synthesize_clip,
    synthesize_song_clip,
)

if TYPE_CHECKING:
    from toolkit.demo.competition import (
        CLASS_PROBABILITIES,
        GENERATOR_VERSION,
        MARKER_NAME,
        MIN_TRAIN,
        SPLITS,
        DemoCompetition,
        clip_rng,
        draw_label,
        draw_labels,
        ensure_demo_competition,
        make_demo_competition,
        submission_accuracy,
    )

__all__ = [
    "CLASS_NAMES",
    "CLASS_PROBABILITIES",
    "DEFAULT_SAMPLE_RATE",
    "GENERATOR_VERSION",
    "MARKER_NAME",
    "MIN_TRAIN",
    "SPLITS",
    "DemoCompetition",
    "clip_rng",
    "draw_label",
    "draw_labels",
    "ensure_demo_competition",
    "make_demo_competition",
    "submission_accuracy",
    "synthesize_clip",
    "synthesize_song_clip",
]


def __getattr__(name: str) -> Any:
    """The folder writer's public names, imported from toolkit.demo.competition on first use."""
    if name in __all__:  # the synthesis names are bound above, so only the writer's get here
        return getattr(importlib.import_module("toolkit.demo.competition"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazily loaded ones included."""
    return sorted({*globals(), *__all__})
