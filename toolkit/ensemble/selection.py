"""Greedy ensemble selection over candidate models' validation probabilities.

This is the forward selection *with replacement* of Caruana et al. (2004),
"Ensemble Selection from Libraries of Models", in the form used by auto-sklearn
and AutoGluon:

1. Optionally start from the ``init_best`` best single models, each added once,
   best first ("sorted initialisation").
2. For ``size`` rounds, add the candidate whose addition gives the best
   validation metric of the averaged ensemble. A candidate may be added many
   times; its weight is its pick count divided by the number of picks.

Rules chosen here (all deterministic and independent of mapping order):

* **Candidate order.** Candidates are considered in ``sorted(ids)`` order;
  "lower index" below means earlier in that order.
* **Tie-breaking.** In a round, every candidate whose resulting ensemble metric
  is within ``1e-12 * max(1, |best|)`` of the round's best is tied. Among tied
  candidates the one with the better *single-model* metric wins; if the
  single-model metrics are exactly equal, the lower id wins. The same key
  (single-model metric, then id) ranks models for ``init_best``, so round 1
  without initialisation picks exactly the first model of that ranking: the
  best single model, with accuracy ties going to the lower id.
* **Best prefix.** Every pick is a round and has an entry in ``trajectory``
  (initial picks included). After all rounds, the ensemble is cut back to the
  *earliest* prefix of picks whose metric is tied (same tolerance) with the best
  metric on the trajectory, as AutoGluon optionally does. Because the first
  pick is always the best single model, the returned ensemble is never worse
  than the best single model. The cut may drop some ``init_best`` models when
  they do not help.

Cost: a running sum of the picked tables is kept, so each round evaluates every
candidate once on an ``[N, K]`` table: ``O((init_best + size) * C * N * K)``
for ``C`` candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from toolkit.metrics import Metric, get_metric
from toolkit.wording import count

_TIE_RTOL = 1e-12
_ROW_SUM_ATOL = 1e-3


@dataclass(frozen=True)
class EnsembleResult:
    """Outcome of :func:`select_ensemble`.

    Attributes:
        members: candidate id -> weight for the kept picks; only non-zero
            weights, summing to 1, ordered by decreasing weight then id.
        counts: candidate id -> number of times picked in the kept prefix.
        val_metric: validation metric of the returned ensemble.
        trajectory: metric after every pick (initial picks first, then one per
            greedy round), before the best-prefix cut; ``len == init + size``.
        metric: name of the optimised metric (a key of ``toolkit.metrics.METRICS``).
        picks: ids in the order they were picked, aligned with ``trajectory``
            (the kept ensemble is ``picks[: sum(counts.values())]``).
    """

    members: dict[str, float]
    counts: dict[str, int]
    val_metric: float
    trajectory: list[float]
    metric: str
    picks: tuple[str, ...] = field(default=())


def _tolerance(best: float) -> float:
    return _TIE_RTOL * max(1.0, abs(best))


def _check_table(cid: str, table: object) -> np.ndarray:
    """Return one candidate's probability table as float64 after checking its contents."""
    arr = np.asarray(table, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"candidate {cid!r} must be a 2-D [N, K] table; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"candidate {cid!r} contains non-finite values")
    if np.any(arr < 0):
        raise ValueError(f"candidate {cid!r} contains negative probabilities")
    row_sums = arr.sum(axis=1)
    if arr.shape[0] and not np.allclose(row_sums, 1.0, rtol=0.0, atol=_ROW_SUM_ATOL):
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        raise ValueError(
            f"candidate {cid!r} rows must sum to 1 (probabilities, not logits); "
            f"row {worst} sums to {row_sums[worst]:.6g}"
        )
    return arr


def _check_tables(probs: Mapping[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    """Validate a mapping of equally shaped probability tables; return sorted ids and tables."""
    if len(probs) == 0:
        raise ValueError("no candidate probability tables were given")
    for cid in probs:
        if not isinstance(cid, str):
            raise ValueError(f"candidate ids must be strings; got {cid!r} ({type(cid).__name__})")
    ids = sorted(probs)
    tables = [_check_table(cid, probs[cid]) for cid in ids]
    ref_id, ref_shape = ids[0], tables[0].shape
    for cid, table in zip(ids, tables, strict=True):
        if table.shape != ref_shape:
            raise ValueError(
                f"candidate {cid!r} has shape {table.shape}; expected {ref_shape} "
                f"like candidate {ref_id!r}"
            )
    return ids, tables


def _check_labels(labels: np.ndarray, n_rows: int, n_classes: int, ref_id: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D [N]; got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {y.dtype}")
    if y.shape[0] == 0:
        raise ValueError("labels is empty; ensemble selection needs validation examples")
    if y.shape[0] != n_rows:
        raise ValueError(
            f"labels has {count(y.shape[0], 'entry', 'entries')} but candidate {ref_id!r} "
            f"has {count(n_rows, 'row')}"
        )
    if y.min() < 0 or y.max() >= n_classes:
        bad = int(y[(y < 0) | (y >= n_classes)][0])
        raise ValueError(
            f"label {bad} is out of range [0, {n_classes}) for the {n_classes}-class "
            f"tables (e.g. candidate {ref_id!r})"
        )
    return y


def select_ensemble(
    val_probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    metric: str,
    size: int = 20,
    init_best: int = 0,
) -> EnsembleResult:
    """Greedy forward ensemble selection with replacement (Caruana et al., 2004).

    Args:
        val_probs: candidate id -> validation probabilities ``[N, K]`` (rows sum
            to 1); all tables must share one shape.
        labels: integer validation labels ``[N]`` in ``[0, K)``.
        metric: metric name from ``toolkit.metrics.METRICS`` to optimise.
        size: number of greedy rounds after the initial picks (``>= 1``).
        init_best: number of best single models to start from, each added once;
            capped at the number of candidates.

    Returns:
        The selected ensemble, cut back to its earliest best prefix (see the
        module docstring for tie-breaking and the best-prefix rule).

    Raises:
        ValueError: on no candidates, mismatched shapes (naming the candidate),
            bad labels, unknown metric, ``size < 1`` or ``init_best < 0``.
    """
    scorer = get_metric(metric)
    _check_rounds(size, init_best)
    ids, tables = _check_tables(val_probs)
    n_rows, n_classes = tables[0].shape
    y = _check_labels(labels, n_rows, n_classes, ids[0])
    picked, trajectory = _greedy_picks(tables, y, scorer, size=size, init_best=init_best)
    cut = _best_prefix(trajectory, scorer)
    kept = picked[: cut + 1]

    tally = Counter(ids[i] for i in kept)
    ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
    counts = dict(ordered)
    members = {cid: n / len(kept) for cid, n in ordered}
    return EnsembleResult(
        members=members,
        counts=counts,
        val_metric=trajectory[cut],
        trajectory=trajectory,
        metric=metric,
        picks=tuple(ids[i] for i in picked),
    )


def _check_rounds(size: int, init_best: int) -> None:
    """``size`` an integer >= 1 and ``init_best`` one >= 0, or a ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1; got {size!r}")
    if isinstance(init_best, bool) or not isinstance(init_best, int) or init_best < 0:
        raise ValueError(f"init_best must be an integer >= 0; got {init_best!r}")


def _greedy_picks(
    tables: list[np.ndarray], y: np.ndarray, scorer: Metric, *, size: int, init_best: int
) -> tuple[list[int], list[float]]:
    """The picks (indices into ``tables``) of the sorted initialisation and the greedy rounds,
    and the ensemble's metric after each."""
    metric_fn = scorer.fn
    single = [scorer.goodness(metric_fn(t, y)) for t in tables]
    # Ranking key shared by init_best and by in-round tie-breaking.
    rank_key = [(-single[i], i) for i in range(len(tables))]
    ranking = sorted(range(len(tables)), key=lambda i: rank_key[i])

    running = np.zeros(tables[0].shape, dtype=np.float64)
    buffer = np.empty_like(running)
    picked: list[int] = []
    trajectory: list[float] = []

    def add(index: int, value: float) -> None:
        np.add(running, tables[index], out=running)
        picked.append(index)
        trajectory.append(value)

    for index in ranking[: min(init_best, len(tables))]:
        np.add(running, tables[index], out=buffer)
        buffer /= len(picked) + 1
        add(index, metric_fn(buffer, y))

    for _ in range(size):
        n_after = len(picked) + 1
        scores = np.empty(len(tables), dtype=np.float64)
        for i, table in enumerate(tables):
            np.add(running, table, out=buffer)
            buffer /= n_after
            scores[i] = metric_fn(buffer, y)
        good = scores if scorer.direction == "maximize" else -scores
        best = float(good.max())
        tied = np.flatnonzero(good >= best - _tolerance(best))
        choice = int(min(tied, key=lambda i: rank_key[int(i)]))
        add(choice, float(scores[choice]))
    return picked, trajectory


def _best_prefix(trajectory: list[float], scorer: Metric) -> int:
    """The index of the earliest pick whose metric ties the best of the trajectory."""
    good_traj = [scorer.goodness(v) for v in trajectory]
    best_traj = max(good_traj)
    return next(k for k, g in enumerate(good_traj) if g >= best_traj - _tolerance(best_traj))


def blend(probs: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted average of probability tables, e.g. test predictions of ensemble members.

    Weights are normalised to sum to 1 and each output row is renormalised to
    sum to 1. Tables in ``probs`` without a weight are ignored; every id in
    ``weights`` must have a table. Accumulation runs in sorted-id order so the
    result does not depend on mapping order.

    Raises:
        ValueError: on empty or negative/non-finite weights, a weight for an id
            with no table, or tables of different shapes (naming the candidate).
    """
    if len(weights) == 0:
        raise ValueError("no ensemble weights were given")
    ids = sorted(weights)
    for cid in ids:
        w = weights[cid]
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weight for candidate {cid!r} must be finite and >= 0; got {w!r}")
        if cid not in probs:
            raise ValueError(f"candidate {cid!r} has a weight but no probability table")
    total = float(sum(weights[cid] for cid in ids))
    if total <= 0:
        raise ValueError("ensemble weights sum to 0; at least one weight must be positive")
    _, tables = _check_tables({cid: probs[cid] for cid in ids})
    out = np.zeros_like(tables[0])
    for cid, table in zip(ids, tables, strict=True):
        w = float(weights[cid]) / total
        if w > 0:
            out += w * table
    out /= out.sum(axis=1, keepdims=True)
    return out
