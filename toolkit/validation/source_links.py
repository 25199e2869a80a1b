"""Clips that share a source, found from their signatures: which pairs link, and the groups.

Each signal (the accompaniment's for "same song", the voice's for "same singer")
gives every clip a vector. Two clips link when each is among the other's
nearest neighbours under that signal and their similarity passes a threshold.
By default (``split.group_threshold: test``) the threshold is calibrated on the
unlabelled test clips, which share no source with the train clips: how close
each comes to its nearest train clip is what "no shared source" looks like, and
the threshold is the lowest similarity at which at most 20% of the linked clips
are expected to be that close by chance (:func:`calibrated_threshold`; a false
discovery rate). So a validation clip is no closer to its training clips than a
test clip is, unless it very likely shares their source; where every clip is a
source of its own, nothing links. With ``z``, the pair's robust z-score among
all pairs' similarities passes a threshold. Linked clips are joined into groups
strongest link first, as connected components are, except that a link whose two
groups together would pass the size cap is not followed: one chain of links
cannot swallow the data. Everything is deterministic: ties are broken by clip order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

NEIGHBOURS = 5
"""A pair links only when each clip is among the other's this many nearest."""

LINK_Z = 1.5
"""``split.group_threshold: z``: a pair links only when its similarity is this many robust
deviations above the median of every pair's similarity under the same signal."""

LINK_FDR = 0.2
"""``split.group_threshold: test``: the share of linked clips that may be expected to link
without a shared source (judged by the test clips) at the chosen threshold."""


@dataclass(frozen=True)
class SourceGroups:
    """A group index for every clip (0..G-1, numbered by first clip), and how they were made."""

    labels: np.ndarray
    links: dict[str, int]
    """Pairs linked under each signal."""
    cap: int
    """No group holds more clips than this."""
    refused: int
    """Links not followed because their groups together would pass the cap."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """The similarity a pair must reach to link, per signal calibrated on the test clips
    (none under ``split.group_threshold: z``)."""
    sizes: list[int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", np.bincount(self.labels).tolist())

    @property
    def count(self) -> int:
        """How many groups."""
        return len(self.sizes)

    @property
    def largest(self) -> int:
        """Clips in the largest group."""
        return max(self.sizes)

    @property
    def singletons(self) -> int:
        """Clips linked to no other clip."""
        return sum(1 for s in self.sizes if s == 1)


@dataclass(frozen=True)
class FoundSources:
    """The groups ``split.groups: auto`` found, and what they say of the ungrouped split."""

    groups: SourceGroups
    straddled: int
    """Pairs of clips of one group that the ungrouped split put on both of its sides."""
    pairs: int
    """Pairs of clips of one group."""


def standardise(vectors: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """``vectors`` with each column centred and scaled over the ``present`` clips (all by
    default), so no one dimension's scale decides a similarity."""
    x = np.asarray(vectors, dtype=np.float64)
    rows = x if present is None else x[np.asarray(present, bool)]
    if len(rows) == 0:
        return x
    return (x - rows.mean(axis=0)) / (rows.std(axis=0) + 1e-9)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """``[N, N]`` cosine similarity of the rows of ``vectors``."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    return x @ x.T


def nearest_similarity(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """``[M]`` the cosine similarity of each of the ``test`` vectors ``[M, D]`` to its
    nearest among the ``train`` vectors ``[N, D]``."""
    if len(train) == 0 or len(test) == 0:
        return np.zeros(0)
    return cosine_similarity(np.vstack([test, train]))[: len(test), len(test) :].max(axis=1)


def calibrated_threshold(train: np.ndarray, test: np.ndarray, fdr: float = LINK_FDR) -> float:
    """The similarity a pair of ``train`` vectors must reach to link: the lowest at which no
    more than ``fdr`` of the train clips whose nearest train clip is that close are expected
    to be so close without a shared source. What "without a shared source" looks like is
    how close each ``test`` clip (of no train clip's source) comes to its nearest train
    clip; how many train clips have no sibling is estimated from how many come no closer
    than the median test clip does. Infinite (nothing links) when no similarity passes."""
    null = nearest_similarity(train, test)
    if len(null) == 0 or len(train) < 2:
        return float("inf")
    similarity = cosine_similarity(train)
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.sort(similarity.max(axis=1))
    alone = min(1.0, float(np.mean(nearest <= np.median(null))) / 0.5)
    # train clips at least this close to another, and how many of them the null expects
    observed = len(nearest) - np.searchsorted(nearest, nearest, side="left")
    null = np.sort(null)
    beyond = len(null) - np.searchsorted(null, nearest, side="left")
    expected = alone * len(nearest) * (beyond + 1) / (len(null) + 1)
    passing = np.flatnonzero(expected <= fdr * observed)
    return float(nearest[passing[0]]) if len(passing) else float("inf")


def linked_pairs(
    similarity: np.ndarray,
    present: np.ndarray | None = None,
    *,
    neighbours: int = NEIGHBOURS,
    z: float = LINK_Z,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(i, j)``, ``i < j``, that link under one signal, and how far each
    pair's similarity stands out (its robust z-score among every pair's).

    A pair links when each clip is among the other's ``neighbours`` nearest and its
    similarity reaches ``threshold`` (with None: its z-score is above ``z``).
    ``present`` marks the clips the signal says something about (e.g. clips with a
    voice, for the voice's signal); the others never link under it.
    """
    n = len(similarity)
    present = np.ones(n, bool) if present is None else np.asarray(present, bool)
    idx = np.flatnonzero(present)
    if len(idx) < 3:
        return np.zeros((0, 2), int), np.zeros(0)
    s = similarity[np.ix_(idx, idx)].astype(np.float64)
    upper = s[np.triu_indices(len(idx), 1)]
    median = np.median(upper)
    spread = 1.4826 * np.median(np.abs(upper - median)) + 1e-12
    np.fill_diagonal(s, -np.inf)
    k = min(neighbours, len(idx) - 1)
    # the k nearest of each clip; stable sort so ties go to the earlier clip
    near = np.argsort(-s, axis=1, kind="stable")[:, :k]
    is_near = np.zeros_like(s, dtype=bool)
    np.put_along_axis(is_near, near, True, axis=1)
    above = (s - median) / spread > z if threshold is None else s >= threshold
    mutual = is_near & is_near.T & above
    a, b = np.nonzero(np.triu(mutual, 1))
    return np.stack([idx[a], idx[b]], axis=1), (s[a, b] - median) / spread


def capped_components(
    n: int, pairs: np.ndarray, strength: np.ndarray, cap: int
) -> tuple[np.ndarray, int]:
    """Connected components of ``n`` clips under ``pairs``, joined strongest first, no
    component growing past ``cap`` clips; the label of each clip (numbered by first clip)
    and how many links were refused by the cap."""
    parent = np.arange(n)
    size = np.ones(n, int)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    refused = 0
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -strength)) if len(pairs) else []
    for p in order:
        a, b = root(int(pairs[p, 0])), root(int(pairs[p, 1]))
        if a == b:
            continue
        if size[a] + size[b] > cap:
            refused += 1
            continue
        a, b = min(a, b), max(a, b)
        parent[b] = a
        size[a] += size[b]
    roots = np.array([root(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)  # roots are first clips: order kept
    return labels.astype(int), refused


def group_sources(
    signals: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    cap: int,
    *,
    neighbours: int = NEIGHBOURS,
    z: float = LINK_Z,
    thresholds: Mapping[str, float] | None = None,
) -> SourceGroups:
    """Groups of clips that share a source under any of ``signals`` (name -> vectors
    ``[N, D]``, compared by cosine similarity, and which clips the signal covers, None for
    all), no group over ``cap``. A signal named in ``thresholds`` links pairs that reach its
    similarity threshold; the others, pairs whose z-score passes ``z``."""
    n = len(next(iter(signals.values()))[0])
    thresholds = dict(thresholds or {})
    every_pair, every_strength, links = [], [], {}
    for name, (vectors, present) in signals.items():
        pairs, strength = linked_pairs(
            cosine_similarity(vectors),
            present,
            neighbours=neighbours,
            z=z,
            threshold=thresholds.get(name),
        )
        links[name] = len(pairs)
        every_pair.append(pairs)
        # z-scores: links of signals with unlike similarity scales interleave by how
        # much each pair stands out
        every_strength.append(strength)
    pairs = np.concatenate(every_pair) if every_pair else np.zeros((0, 2), int)
    strength = np.concatenate(every_strength) if every_strength else np.zeros(0)
    labels, refused = capped_components(n, pairs, strength, max(1, cap))
    return SourceGroups(labels, links, max(1, cap), refused, thresholds)
