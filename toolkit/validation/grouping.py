"""``split.groups: auto``: the train clips that share a source, found in their audio.

Two signals (``split.group_by``), from what the pipeline caches anyway: the
accompaniment (the mixture minus the separated stem; the mixture itself without
a separator) says "same song" (:mod:`toolkit.validation.source_signatures`); the speaker
encoder's embedding of the separated voice says "same singer", for clips that
have a voice (opt-in: on the demo's synthetic singers its links were mostly
wrong, see bench/RESULTS.md). Clips linked by any are grouped
(:mod:`toolkit.validation.source_links`), and the folds keep each group on one side of
every split. Signatures are cached per
clip under ``cache.dir/signatures``; the speaker embeddings are the ``speaker``
feature's own cache entries, shared with a recipe that uses that feature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.data.cache import ClipStore, settings_key
from toolkit.data.checks import CheckedInputs, check_inputs
from toolkit.data.dataset import Competition
from toolkit.data.preprocess import Preprocessor
from toolkit.errors import DataError
from toolkit.progress import console, progress_bar
from toolkit.recipe.schema import Recipe
from toolkit.registry.table import Registry
from toolkit.validation.source_links import (
    LINK_FDR,
    LINK_Z,
    FoundSources,
    SourceGroups,
    calibrated_threshold,
    group_sources,
    standardise,
)
from toolkit.validation.source_signatures import (
    SIGNATURE_VERSION,
    VOICE_RATIO,
    song_signature,
    voice_ratio,
    weigh_signature,
)
from toolkit.validation.split import Fold, split_folds
from toolkit.wording import count

VOICE_FEATURE = {"name": "speaker"}
"""The feature block whose embeddings of the separated stem say "same singer"."""


def split_parts(recipe: Recipe) -> int:
    """Into how many parts the split cuts the clips: the folds, or one validation share."""
    split = recipe.split
    return split.folds if split.folds > 1 else max(2, round(1 / split.test_size))


def default_cap(n_clips: int, recipe: Recipe) -> int:
    """The largest group ``split.group_cap`` allows; by default half of one part (a fold,
    or the validation share), so groups still make balanced parts."""
    if recipe.split.group_cap is not None:
        return recipe.split.group_cap
    return max(2, n_clips // (2 * split_parts(recipe)))


def find_groups(recipe: Recipe, registry: Registry, competition: Competition) -> SourceGroups:
    """The groups of the competition's train clips that share a song or a singer; with
    ``split.group_threshold: test`` the link threshold is calibrated on the test clips."""
    calibrated = recipe.split.group_threshold == "test"
    n = len(competition.train_files)
    files = [*competition.train_files, *(competition.test_files if calibrated else [])]
    train = np.arange(len(files)) < n
    first = dict(recipe.feature_streams[0])
    mixture = Preprocessor(recipe, registry, {**first, "input": "mixture"})
    separated = recipe.separator["name"] != "none"
    stem = Preprocessor(recipe, registry, {**first, "input": "separated"})
    mix_keys = mixture.separate(files, "grouping: decoding")
    stem_keys = stem.separate(files, "grouping: separating") if separated else mix_keys
    signatures = _signatures(recipe, mixture, stem, mix_keys, stem_keys, separated)
    signals: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    thresholds: dict[str, float] = {}
    if "song" in recipe.split.group_by:
        song = weigh_signature(signatures[:, :-1], train)
        signals["song"] = (song[:n], None)
        if calibrated:
            thresholds["song"] = calibrated_threshold(song[:n], song[n:])
    if "voice" in recipe.split.group_by:  # the recipe's validation made sure it can
        voiced = signatures[:, -1] >= VOICE_RATIO
        voices = Preprocessor(recipe, registry, VOICE_FEATURE)
        parts = [voices.features(competition.train_files, competition.train_ids, "train")]
        if calibrated:
            parts.append(voices.features(competition.test_files, competition.test_ids, "test"))
        embeddings = np.concatenate(
            [np.asarray(p, dtype=np.float32).mean(axis=(1, 3)) for p in parts]
        )  # [N, 256]: each clip's windows pooled
        vectors = standardise(embeddings, voiced & train)
        signals["voice"] = (vectors[:n], voiced[:n])
        if calibrated:
            thresholds["voice"] = calibrated_threshold(
                vectors[:n][voiced[:n]], vectors[n:][voiced[n:]]
            )
    cap = default_cap(n, recipe)
    groups = group_sources(signals, cap, thresholds=thresholds)
    if groups.refused:
        console.print(
            f"warning: split.groups: {groups.refused} link(s) between clips were not followed "
            f"because their groups together would pass split.group_cap ({count(cap, 'clip')}); "
            "raise split.group_cap to keep them together",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return groups


def link_rule(groups: SourceGroups) -> str:
    """What a pair of clips had to pass to link, in words (for the ``split.groups:`` line
    and ``toolkit leaks``)."""
    if not groups.thresholds:
        return f"links: a robust z-score over {LINK_Z} among all pairs"
    reach = ", ".join(
        f"{name} from similarity {value:.3f}" if np.isfinite(value) else f"{name} none"
        for name, value in groups.thresholds.items()
    )
    return (
        f"links {reach} (calibrated on the test clips: at most {LINK_FDR:.0%} of the linked "
        "clips expected that close without a shared source)"
    )


def _signatures(
    recipe: Recipe,
    mixture: Preprocessor,
    stem: Preprocessor,
    mix_keys: Sequence[str],
    stem_keys: Sequence[str],
    separated: bool,
) -> np.ndarray:
    """``[N, D + 1]`` each clip's song signature and its voice ratio, cached per clip."""
    rate = recipe.data.sample_rate
    store = ClipStore(Path(recipe.cache.dir) / "signatures")
    keys = [
        settings_key("signature", SIGNATURE_VERSION, rate, m, s)
        for m, s in zip(mix_keys, stem_keys, strict=True)
    ]
    todo = [i for i, k in enumerate(keys) if store.header(k) is None]
    if todo:
        with progress_bar("grouping: signatures", len(todo)) as advance:
            for start in range(0, len(todo), recipe.cache.batch_size):
                batch = todo[start : start + recipe.cache.batch_size]
                mix = np.stack([mixture.stems.get(mix_keys[i]).astype(np.float32) for i in batch])
                sep = np.stack([stem.stems.get(stem_keys[i]).astype(np.float32) for i in batch])
                if not separated:  # the mixture is all there is: no voice
                    song, ratio = song_signature(mix, rate), np.zeros(len(batch))
                else:
                    song, ratio = song_signature(mix - sep, rate), voice_ratio(sep, mix)
                for i, row in zip(batch, np.column_stack([song, ratio]), strict=True):
                    store.put(keys[i], row.astype(np.float32))
                advance(len(batch))
    return np.stack([store.get(k) for k in keys]).astype(np.float64)


def straddling_pairs(labels: np.ndarray, folds: Sequence[Fold]) -> tuple[int, int]:
    """Of the pairs of clips in one group, how many ``folds`` put on both sides of a split
    (one held out, one training), and how many pairs there are."""
    part = np.full(len(labels), -1)
    for number, fold in enumerate(folds):
        part[fold.val_idx] = number  # a single split: the held-out part 0, the rest -1
    _, per_group = np.unique(labels, return_counts=True)
    _, per_side = np.unique(np.stack([labels, part]), axis=1, return_counts=True)
    pairs = int((per_group * (per_group - 1) // 2).sum())
    together = int((per_side * (per_side - 1) // 2).sum())  # same group, same side
    return pairs - together, pairs


def grouped_inputs(recipe: Recipe, registry: Registry) -> CheckedInputs:
    """The competition and its folds (:func:`toolkit.data.checks.check_inputs`); with
    ``split.groups: auto`` and no ``data.group_column``, the folds keep the groups of
    :func:`find_groups` together."""
    inputs = check_inputs(recipe, registry)
    if recipe.split.groups != "auto" or inputs.competition.groups is not None:
        return inputs
    found = find_groups(recipe, registry, inputs.competition)
    parts = split_parts(recipe)
    if found.count < parts:
        raise DataError(
            f"split.groups: auto found {count(found.count, 'group')}, too few for {parts} parts; "
            "lower split.group_cap or use fewer split.folds"
        )
    competition = dataclasses.replace(inputs.competition, groups=found.labels)
    folds = split_folds(competition, recipe.split)
    straddled, pairs = straddling_pairs(found.labels, inputs.folds)
    console.print(
        f"split.groups: {count(found.count, 'group')} of {count(len(found.labels), 'clip')} "
        f"(largest "
        f"{found.largest}, {found.singletons} alone; {link_rule(found)}); {straddled} of "
        f"{count(pairs, 'pair')} of "
        "siblings straddled the ungrouped split",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return CheckedInputs(competition, folds, FoundSources(found, straddled, pairs))
