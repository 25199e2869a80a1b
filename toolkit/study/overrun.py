"""Whether the study's next trial would end well past ``search.timeout`` (``search.overrun``).

With ``search.overrun: skip`` (the default) and a ``search.timeout``, a worker does not
start a trial that the time its kind of trials take says would end more than
:data:`MARGIN` of the timeout past it: a trial is expected to take the median wall time
of the finished (complete or pruned) trials of its profile (without profiles: of the
study's trials), as the study's storage records them, so every worker sharing the study
judges by all of its trials; a profile with no finished trial yet may start. With
profiles and ``search.budget`` ``shares`` or ``improvement``, when the profile whose turn
it is does not fit, the budget chooses among the profiles that do (with ``sampler``, as
``shares`` once a profile does not fit); when none fits, or a queued trial (such as a
baseline) does not, the study ends and the run goes on to its ensemble. ``allow`` starts
trials until the timeout, whatever they are expected to take.

The time left is ``search.timeout`` minus the seconds since this worker started (as the
timeout itself is counted).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

from toolkit.recipe.search import Search
from toolkit.study.profile_budget import next_profile
from toolkit.study.profiles import PROFILE

MARGIN = 0.1
"""A trial may end this fraction of ``search.timeout`` past it, no more."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def expected_seconds(trials: Sequence[FrozenTrial], profile: str | None) -> float | None:
    """The median wall time of the finished trials of ``profile`` (``None``: of every trial);
    ``None`` when there is none."""
    seconds = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.state in FINISHED
        and t.datetime_start is not None
        and t.datetime_complete is not None
        and (profile is None or t.params.get(PROFILE) == profile)
    ]
    return statistics.median(seconds) if seconds else None


def overruns(expected: float | None, left: float, timeout: float) -> bool:
    """Whether a trial expected to take ``expected`` seconds, started with ``left`` seconds of
    ``timeout`` left, would end more than :data:`MARGIN` of it past the timeout."""
    return expected is not None and expected > left + MARGIN * timeout


@dataclass(frozen=True)
class Skipped:
    """A trial not started: its profile (``None``: the study has none) and its expected time."""

    profile: str | None
    expected: float


@dataclass(frozen=True)
class NextTrial:
    """What the worker does next: start a trial (queued to ``profile`` when it is set), or
    end the study (``stop``); ``skipped``: the trials it does not start, and why."""

    profile: str | None = None
    stop: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    left: float = 0.0
    """Seconds of ``search.timeout`` left when it was decided."""

    def describe(self) -> list[str]:
        """One log line per trial not started."""
        end = "the study ends" if self.stop else f"a {self.profile} trial instead"
        return [
            f"search: not starting a {s.profile + ' ' if s.profile else ''}trial: its trials "
            f"take ~{s.expected:.0f} s, {max(0.0, self.left):.0f} s of search.timeout are "
            f"left; {end}"
            for s in self.skipped
        ]


def next_trial(
    trials: Sequence[FrozenTrial],
    search: Search,
    metric: str,
    now: datetime,
    left: float | None,
) -> NextTrial:
    """The study's next trial under ``search.budget`` and ``search.overrun``, ``left`` seconds
    of ``search.timeout`` left (``None``: no timeout). A trial already queued goes first."""
    queued = [t for t in trials if t.state == TrialState.WAITING]
    if search.timeout is None or left is None or search.overrun == "allow":
        if queued:
            return NextTrial()
        return NextTrial(profile=next_profile(trials, search, metric, now))
    timeout = search.timeout
    if queued:
        return _alone(trials, _fixed_profile(min(queued, key=lambda t: t.number)), left, timeout)
    if not search.profiles:
        return _alone(trials, None, left, timeout)
    chosen = next_profile(trials, search, metric, now)
    expected = {name: expected_seconds(trials, name) for name in search.profiles}
    fits = [name for name in search.profiles if not overruns(expected[name], left, timeout)]
    if chosen is not None and chosen in fits:
        return NextTrial(profile=chosen)
    unfit = [chosen] if chosen is not None else [n for n in search.profiles if n not in fits]
    if not fits:  # with the sampler, named: the quickest profile
        named = chosen or min(unfit, key=lambda name: expected[name] or 0.0)
        return NextTrial(stop=True, skipped=[Skipped(named, expected[named] or 0.0)], left=left)
    instead = next_profile(trials, search, metric, now, among=fits)
    return NextTrial(
        profile=instead,
        skipped=[Skipped(name, expected[name] or 0.0) for name in unfit],
        left=left,
    )


def _alone(
    trials: Sequence[FrozenTrial], profile: str | None, left: float, timeout: float
) -> NextTrial:
    """Start the trial of ``profile`` (already chosen, or queued) if it fits, else end the
    study."""
    expected = expected_seconds(trials, profile)
    if expected is not None and overruns(expected, left, timeout):
        return NextTrial(stop=True, skipped=[Skipped(profile, expected)], left=left)
    return NextTrial()


def _fixed_profile(trial: FrozenTrial) -> str | None:
    """The profile a queued trial is fixed to, if any."""
    fixed = trial.system_attrs.get("fixed_params") or {}
    profile = fixed.get(PROFILE, trial.user_attrs.get(PROFILE))
    return profile if isinstance(profile, str) else None
