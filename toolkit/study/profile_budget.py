"""How a study's time is shared among its profiles (``search.budget``).

``sampler`` (the default) lets the sampler draw each trial's profile, as any
other parameter: TPE comes to favour the profiles whose trials score well.
The other two choose the next trial's profile here, and the worker queues a
trial fixed to it (the sampler still draws that profile's values):

* ``shares``: the profile furthest below its share of the time the study has
  spent (``search.profiles.NAME.share``, relative weights, 1 each by default).
  A profile of slow trials gets fewer trials, not more time.
* ``improvement``: each profile gets :data:`EXPLORE` finished trials first; then
  the profile that improved the study's best value most per second over its last
  :data:`RECENT` complete trials, except that a profile below :data:`FLOOR` of its
  share of the time comes first; when no profile improves the study any more, as
  ``shares``. A trial's improvement is how much its value beat the best value of
  the study's trials (of every profile) that completed before it, 0 when it did
  not (nor for the study's first complete trial: there was nothing to beat). So a
  profile whose trials only catch up with another profile's best earns nothing:
  time goes to the profile that moves the study's estimate.

Time spent is each trial's wall time (start to end; a running trial's so far).
``among`` (:func:`next_profile`) limits the choice to some profiles (those whose
next trial fits in ``search.timeout``, see :mod:`toolkit.study.overrun`); their
shares are still of the whole study's time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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


def by_shares(search: Search, used: dict[str, float], among: Collection[str] | None = None) -> str:
    """The profile (of ``among``, default all) furthest below its share of the time (ties:
    the first named)."""
    owed = deficits(search, used)
    names = [name for name in search.profiles if among is None or name in among]
    return max(names, key=lambda name: owed[name])


def study_improvements(trials: Sequence[FrozenTrial], metric: str) -> dict[int, float]:
    """By trial number, how much each complete trial improved the study's best value (of
    the trials of every profile that completed before it); 0 when it did not, and for the
    study's first complete trial."""
    rule = get_metric(metric)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    done.sort(key=lambda t: (t.datetime_complete or datetime.max, t.number))
    gains: dict[int, float] = {}
    best: float | None = None
    for t in done:
        good = rule.goodness(float(t.value))  # type: ignore[arg-type]
        gains[t.number] = 0.0 if best is None else max(0.0, good - best)
        best = good if best is None else max(best, good)
    return gains


def improvement_rate(gains: Sequence[float], seconds: Sequence[float]) -> float:
    """How much a profile improved the study's best per second over its last :data:`RECENT`
    complete trials (``gains`` and ``seconds`` of its complete trials in order); 0 when it
    did not."""
    took = sum(seconds[-RECENT:])
    return sum(gains[-RECENT:]) / took if took > 0 else 0.0


def next_profile(
    trials: Sequence[FrozenTrial],
    search: Search,
    metric: str,
    now: datetime,
    among: Collection[str] | None = None,
) -> str | None:
    """The profile of the study's next trial under ``search.budget``, chosen among ``among``
    (default: every profile); ``None``: the sampler draws it (``sampler``, every profile
    allowed). With ``sampler`` and only some profiles allowed, as ``shares``."""
    if not search.profiles:
        return None
    names = [name for name in search.profiles if among is None or name in among]
    if not names:
        return None
    used = spent(trials, now)
    if search.budget == "sampler":
        return None if len(names) == len(search.profiles) else by_shares(search, used, names)
    if search.budget == "shares":
        return by_shares(search, used, names)
    complete: dict[str, list[FrozenTrial]] = {name: [] for name in search.profiles}
    tried = dict.fromkeys(search.profiles, 0)  # complete and pruned
    for t in sorted(trials, key=lambda t: t.number):
        profile = t.params.get(PROFILE)
        if profile not in complete or t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        tried[profile] += 1
        if t.state == TrialState.COMPLETE and t.value is not None:
            complete[profile].append(t)
    young = [name for name in names if tried[name] < EXPLORE]
    if young:
        return min(young, key=lambda name: tried[name])
    fair = fair_shares(search, used)
    starved = [name for name in names if used.get(name, 0.0) < FLOOR * fair[name]]
    if starved:
        return max(starved, key=lambda name: fair[name] - used.get(name, 0.0))
    gains = study_improvements(trials, metric)
    rates = {
        name: improvement_rate(
            [gains[t.number] for t in complete[name]], [_seconds(t) for t in complete[name]]
        )
        for name in names
    }
    if max(rates.values()) <= 0:
        return by_shares(search, used, names)
    return max(names, key=lambda name: rates[name])


def _seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()
