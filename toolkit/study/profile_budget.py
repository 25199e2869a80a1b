"""How a study's time is shared among its profiles (``search.budget``).

``sampler`` (the default) lets the sampler draw each trial's profile, as any
other parameter: TPE comes to favour the profiles whose trials score well.
The other two choose the next trial's profile here, and the worker queues a
trial fixed to it (the sampler still draws that profile's values):

* ``shares``: the profile furthest below its share of the time the study has
  spent (``search.profiles.NAME.share``, relative weights, 1 each by default).
  A profile of slow trials gets fewer trials, not more time.
* ``improvement``: each profile gets :data:`EXPLORE` finished trials first; then
  the profile whose best value improved most per second over its last
  :data:`RECENT` trials, except that a profile below half its share of the time
  comes first; when no profile improves any more, as ``shares``.

Time spent is each trial's wall time (start to end; a running trial's so far).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

from toolkit.metrics import get_metric
from toolkit.recipe.schema import Search
from toolkit.study.profiles import PROFILE

EXPLORE = 2
"""``improvement``: finished trials (complete or pruned) each profile gets before its
improvement counts."""

RECENT = 3
"""``improvement``: how many of a profile's latest complete trials its improvement is over."""

FLOOR = 0.5
"""``improvement``: a profile below this fraction of its share of the time is chosen first."""


def spent(trials: Sequence[FrozenTrial], now: datetime) -> dict[str, float]:
    """Seconds of the trials of each profile (a running trial's so far)."""
    seconds: dict[str, float] = {}
    for t in trials:
        profile = t.params.get(PROFILE)
        if not isinstance(profile, str) or t.datetime_start is None:
            continue
        end = t.datetime_complete or (now if t.state == TrialState.RUNNING else t.datetime_start)
        seconds[profile] = seconds.get(profile, 0.0) + (end - t.datetime_start).total_seconds()
    return seconds


def fair_shares(search: Search, used: dict[str, float]) -> dict[str, float]:
    """Each profile's share of the time the study has spent, in seconds."""
    total = sum(used.values())
    weights = sum(p.share for p in search.profiles.values())
    return {name: total * p.share / weights for name, p in search.profiles.items()}


def deficits(search: Search, used: dict[str, float]) -> dict[str, float]:
    """Each profile's share of the time spent minus the time it used (positive: owed)."""
    return {name: fair - used.get(name, 0.0) for name, fair in fair_shares(search, used).items()}


def by_shares(search: Search, used: dict[str, float]) -> str:
    """The profile furthest below its share of the time (ties: the first named)."""
    owed = deficits(search, used)
    return max(search.profiles, key=lambda name: owed[name])


def improvement_rate(values: Sequence[float], seconds: Sequence[float], metric: str) -> float:
    """How much a profile's best value improved per second over its last trials (``values``
    and ``seconds`` of its complete trials in order); 0 when it did not."""
    rule = get_metric(metric)
    recent = min(RECENT, len(values) - 1)
    if recent < 1:
        return 0.0
    before = rule.goodness(rule.best(values[:-recent]))
    after = rule.goodness(rule.best(values))
    took = sum(seconds[-recent:])
    return max(0.0, after - before) / took if took > 0 else 0.0


def next_profile(
    trials: Sequence[FrozenTrial], search: Search, metric: str, now: datetime
) -> str | None:
    """The profile of the study's next trial under ``search.budget``; ``None``: the sampler
    draws it."""
    if search.budget == "sampler" or not search.profiles:
        return None
    used = spent(trials, now)
    if search.budget == "shares":
        return by_shares(search, used)
    complete: dict[str, list[FrozenTrial]] = {name: [] for name in search.profiles}
    tried = dict.fromkeys(search.profiles, 0)  # complete and pruned
    for t in sorted(trials, key=lambda t: t.number):
        profile = t.params.get(PROFILE)
        if profile not in complete or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        tried[profile] += 1
        if t.state == TrialState.COMPLETE and t.value is not None:
            complete[profile].append(t)
    young = [name for name in search.profiles if tried[name] < EXPLORE]
    if young:
        return min(young, key=lambda name: tried[name])
    fair = fair_shares(search, used)
    starved = [name for name in search.profiles if used.get(name, 0.0) < FLOOR * fair[name]]
    if starved:
        return max(starved, key=lambda name: fair[name] - used.get(name, 0.0))
    rates = {
        name: improvement_rate(
            [float(t.value) for t in done if t.value is not None],
            [_seconds(t) for t in done],
            metric,
        )
        for name, done in complete.items()
    }
    if max(rates.values()) <= 0:
        return by_shares(search, used)
    return max(search.profiles, key=lambda name: rates[name])


def _seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()
