"""Study time where it pays: no trial started that would end well past ``search.timeout``
(``search.overrun``), and the ``improvement`` budget crediting a profile for improving the
study's best value, not its own."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from tests.conftest import run_cli, with_pause, write_recipe
from toolkit.demo import DemoCompetition
from toolkit.recipe.search import Search
from toolkit.study.overrun import MARGIN, expected_seconds, next_trial
from toolkit.study.profile_budget import next_profile
from toolkit.study.profiles import PROFILE

NOW = datetime(2027, 1, 1)
TIMEOUT = 2400.0
LEFT = 120.0  # with the margin (240 s), a trial of up to 360 s may still start


def trial(
    number: int,
    seconds: float,
    value: float = 0.5,
    profile: str | None = None,
    state: TrialState = TrialState.COMPLETE,
) -> FrozenTrial:
    """A finished trial of ``profile`` that took ``seconds``, started an hour after the last."""
    params = {} if profile is None else {PROFILE: profile}
    dists = {} if profile is None else {PROFILE: CategoricalDistribution(["cnn", "head"])}
    made = optuna.trial.create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params=params,
        distributions=dists,
        intermediate_values={1: value},
    )
    made.number = number
    made.datetime_start = NOW - timedelta(days=1) + timedelta(hours=number)
    made.datetime_complete = made.datetime_start + timedelta(seconds=seconds)
    return made


def search(budget: str = "sampler", *, profiles: bool = True, **keys: object) -> Search:
    """A search with a 2400 s timeout, of profiles cnn and head (or none)."""
    named = {"cnn": {}, "head": {}} if profiles else {}
    return Search.model_validate({"timeout": TIMEOUT, "budget": budget, "profiles": named, **keys})


# ------------------------------------------------------------- the overrun rule
def test_a_trial_that_would_end_well_past_the_timeout_is_not_started() -> None:
    plain = search(profiles=False)
    history = [trial(0, 100), trial(1, 400), trial(2, 370, state=TrialState.PRUNED)]
    assert expected_seconds(history, None) == 370  # the median of finished trials
    turn = next_trial(history, plain, "accuracy", NOW, LEFT)
    assert turn.stop
    assert turn.describe() == [
        "search: not starting a trial: its trials take ~370 s, 120 s of search.timeout are "
        "left; the study ends"
    ]
    # a trial that ends within the margin still starts; so does the first, and any with allow
    fits = LEFT + MARGIN * TIMEOUT
    assert not next_trial([trial(0, fits)], plain, "accuracy", NOW, LEFT).stop
    assert next_trial([trial(0, fits + 1)], plain, "accuracy", NOW, LEFT).stop
    assert not next_trial([], plain, "accuracy", NOW, 1.0).stop
    allow = search(profiles=False, overrun="allow")
    assert not next_trial(history, allow, "accuracy", NOW, LEFT).stop
    assert not next_trial(history, search(profiles=False, timeout=None), "x", NOW, None).stop
    # failed and running trials say nothing of how long a trial takes
    assert expected_seconds([trial(0, 900, state=TrialState.FAIL)], None) is None


@pytest.mark.parametrize("budget", ["shares", "improvement", "sampler"])
def test_with_profiles_another_that_fits_runs_instead_and_none_ends_the_study(
    budget: str,
) -> None:
    study = search(budget)
    # cnn trials take 370 s, head trials 10 s; cnn has had less time: its turn under shares
    history = [trial(0, 370, 0.6, "cnn"), trial(1, 10, 0.5, "head")]
    history += [trial(2, 370, 0.7, "cnn"), trial(3, 10, 0.6, "head")]
    history += [trial(n, 10, 0.6, "head") for n in range(4, 80)]
    if budget != "sampler":
        assert next_profile(history, study, "accuracy", NOW) == "cnn"
    turn = next_trial(history, study, "accuracy", NOW, LEFT)
    assert (turn.profile, turn.stop) == ("head", False)
    assert turn.describe() == [
        "search: not starting a cnn trial: its trials take ~370 s, 120 s of search.timeout "
        "are left; a head trial instead"
    ]
    roomy = next_trial(history, study, "accuracy", NOW, 1000.0)  # every profile fits
    assert not roomy.skipped
    assert roomy.profile == (None if budget == "sampler" else "cnn")
    # neither fits: the study ends (the run goes on to its ensemble)
    slow = [t for t in history if t.params[PROFILE] == "cnn"] + [trial(50, 400, 0.5, "head")]
    turn = next_trial(slow, study, "accuracy", NOW, LEFT)
    assert turn.stop and len(turn.describe()) == 1
    assert turn.describe()[0].endswith("s of search.timeout are left; the study ends")
    allow = search(budget, overrun="allow")
    assert not next_trial(slow, allow, "accuracy", NOW, LEFT).stop


def test_a_queued_trial_that_would_overrun_ends_the_study() -> None:
    study = optuna.create_study(direction="maximize")
    for t in (trial(0, 370, 0.6, "cnn"), trial(1, 10, 0.5, "head")):
        study.add_trial(t)
    study.enqueue_trial({PROFILE: "cnn"})  # as a budget or a baseline queues it
    turn = next_trial(study.trials, search("shares"), "accuracy", NOW, LEFT)
    assert turn.stop and turn.describe()[0].startswith("search: not starting a cnn trial:")
    assert not next_trial(study.trials, search("shares"), "accuracy", NOW, 1000.0).stop


# ------------------------------------------------------------- improvement, study-wide
def test_improvement_gives_more_time_to_the_profile_that_improves_the_study() -> None:
    study = search("improvement")
    # cnn holds the study's best and raises it; head improves its own best, never the study's
    history = [trial(0, 10, 0.90, "cnn"), trial(1, 10, 0.30, "head")]
    history += [trial(2, 10, 0.90, "cnn"), trial(3, 10, 0.50, "head")]
    history += [trial(4, 10, 0.95, "cnn"), trial(5, 10, 0.70, "head")]
    assert next_profile(history, study, "accuracy", NOW) == "cnn"
    chosen = []
    for number in range(6, 36):
        profile = next_profile(history, study, "accuracy", NOW)
        assert profile is not None
        chosen.append(profile)
        own = [t.value for t in history if t.params[PROFILE] == profile]
        step = 0.001 if profile == "cnn" else 0.01  # cnn: a new study best each time
        history.append(trial(number, 10, max(own) + step, profile))  # type: ignore[type-var]
    assert chosen.count("cnn") > 1.5 * chosen.count("head")
    assert chosen.count("head") >= 1  # never below half its share of the time (FLOOR)
    # the metric's direction counts: with log loss the lower value improves the study
    loss = [trial(0, 10, 0.5, "cnn"), trial(1, 10, 0.9, "head"), trial(2, 10, 0.4, "cnn")]
    loss += [trial(3, 10, 0.8, "head"), trial(4, 10, 0.3, "cnn"), trial(5, 10, 0.6, "head")]
    assert next_profile(loss, study, "log_loss", NOW) == "cnn"


# ------------------------------------------------------------- a study, end to end
OVERRUN_SEARCH = """
model: {backbone: {name: head, hidden: 32}}
search:
  n_trials: 3
  timeout: 40
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
ensemble: {size: 4}
"""


OVERRUN_LINE = (
    r"search: not starting a trial: its trials take ~(\d+) s, (\d+) s of search.timeout are "
    r"left; the study ends"
)


@pytest.mark.slow
def test_the_study_does_not_start_a_trial_that_would_overrun(
    tiny_competition: DemoCompetition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root, extra=OVERRUN_SEARCH))
    # the first trial's first step waits 24 s: it takes more than 24 s, so a second one
    # started after it (24 s or more of the 40 s gone) would end past 48 s > 40 s + 10%
    monkeypatch.setenv("TOOLKIT_TEST_PAUSE", f"{tmp_path / 'paused'}:1")
    monkeypatch.setenv("TOOLKIT_TEST_PAUSE_SECONDS", "24")
    result = run_cli("run", recipe, "--output", tmp_path / "run", "--no-report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    line = re.search(OVERRUN_LINE, said)
    assert line is not None, said
    assert int(line[1]) >= 24 and int(line[2]) < 40
    assert "stopped at search.timeout" not in said  # ended by the rule, before the timeout
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'run'}/study.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert (tmp_path / "run" / "submission.csv").is_file()  # the run went on to its ensemble
    # a second worker judges by the study's trials, not by its own (it has none): with 20 s,
    # the first worker's trial (24 s or more) says a trial would end past 22 s
    joined = run_cli(
        "worker", recipe, "--output", tmp_path / "run", "--set", "search.timeout=20", cwd=tmp_path
    )
    assert joined.returncode == 0, joined.stderr
    line = re.search(OVERRUN_LINE, joined.stdout + joined.stderr)
    assert line is not None and int(line[2]) <= 20, joined.stdout + joined.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'run'}/study.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
