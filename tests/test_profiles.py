"""Profiles: model families in one study, each trial drawing one, each pruned and budgeted
among its own; a tiny study of two profiles with different features, end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from tests.conftest import (
    TINY_RECIPE,
    assert_predicts_own_test_probs,
    copy_workspace,
    run_cli,
    write_recipe,
)
from toolkit.demo import DemoCompetition
from toolkit.deploy.chosen import chosen_models
from toolkit.errors import RecipeError
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.search import Search
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.runs.model_key import ModelKey
from toolkit.study import StudyRun
from toolkit.study.profile_budget import next_profile
from toolkit.study.profile_pruner import ProfilePruner
from toolkit.study.profiles import (
    PROFILE,
    draw_values,
    lay_over,
    profile_raw,
    validate_profiles,
    values_of,
    without_profile,
)
from toolkit.study.space import apply_values

PROFILES = """
search:
  n_trials: {n_trials}
  sampler: {{name: {sampler}, seed: 0}}
  pruner: {{name: median, n_startup_trials: 1}}
  profiles:
    cnn:
      space:
        train.optimizer.lr: {{low: 0.001, high: 0.01, log: true}}
        model.backbone.width: {{choices: [4, 8]}}
    head:
      features: {{name: mel, n_fft: 512, hop_length: 256, n_mels: 16}}
      augmenters: [{{name: mixup, alpha: 0.3}}]
      model: {{backbone: {{name: head, hidden: 32}}}}
      train: {{epochs: 3, optimizer: {{name: adamw, lr: 0.002}}}}
      space:
        train.optimizer.lr: {{low: 0.001, high: 0.01, log: true}}
        model.backbone.hidden: {{choices: [0, 32]}}
        augmenters.0.alpha: {{low: 0.1, high: 0.4}}
"""


def profile_recipe(
    directory: Path, root: Path, n_trials: int = 3, sampler: str = "tpe", extra: str = ""
) -> Path:
    """The tiny recipe (mel, a width-8 ResNet18) as profile ``cnn`` beside profile ``head``
    (coarser mel features, an MLP head)."""
    text = PROFILES.format(n_trials=n_trials, sampler=sampler) + extra
    return write_recipe(directory, root, extra=text)


@pytest.fixture(scope="module")
def registry() -> Any:
    return load_plugins()


def raw_recipe(tmp_path: Path, extra: str) -> dict[str, Any]:
    text = TINY_RECIPE.format(root=tmp_path, cache=tmp_path / "c", board=tmp_path / "b.db")
    return yaml.safe_load(text + extra)


def search_of(raw: dict[str, Any]) -> Search:
    return Search.model_validate(raw["search"])


# ------------------------------------------------------------- the recipe
def test_a_profile_lays_its_sections_over_the_recipe(tmp_path: Path, registry: Any) -> None:
    raw = raw_recipe(tmp_path, PROFILES.format(n_trials=3, sampler="tpe"))
    head = profile_raw(raw, search_of(raw).profiles["head"])
    recipe = validate_recipe(head, registry)
    assert recipe.model.backbone["name"] == "head" and "width" not in recipe.model.backbone
    assert recipe.feature_streams[0]["n_mels"] == 16  # the block replaced, not merged
    assert [a["name"] for a in recipe.augmenters] == ["mixup"]
    assert recipe.train.epochs == 3 and recipe.train.batch_size == 16  # train merged
    assert (recipe.train.optimizer.name, recipe.train.optimizer.lr) == ("adamw", 0.002)
    assert recipe.data.root == tmp_path and recipe.split.test_size == 0.25  # the recipe's
    assert lay_over({"a": 1, "b": {"c": 2}}, {"b": {"d": 3}}) == {"a": 1, "b": {"c": 2, "d": 3}}


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            "{train: {epoch: 3}}",
            "search.profiles.bad: train.epoch: unknown key; did you mean 'epochs'?",
        ),
        (
            "{space: {model.backbone.widht: {choices: [4, 8]}}}",
            "search.profiles.bad.space: model.backbone.widht: plugin 'resnet18' takes no "
            "parameter 'widht'; did you mean 'width'?",
        ),
        ("{data: {duration: 2.0}}", "search.profiles.bad.data: unknown key"),
    ],
)
def test_a_bad_profile_is_a_one_line_error_naming_its_key(
    tmp_path: Path, registry: Any, profile: str, message: str
) -> None:
    extra = f"search:\n  profiles:\n    bad: {profile}\n"
    raw = raw_recipe(tmp_path, extra)
    with pytest.raises(RecipeError) as info:
        validate_profiles(raw, registry, validate_recipe(raw, registry).search)  # type: ignore[arg-type]
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_profile_set_to_null_is_left_out(tmp_path: Path) -> None:
    recipe = profile_recipe(tmp_path, tmp_path)
    loaded = load_recipe(recipe, ["search.profiles.cnn=null"])
    assert loaded.recipe.search is not None and list(loaded.recipe.search.profiles) == ["head"]


# ------------------------------------------------------------- the space
def test_a_profiles_parameters_are_never_suggested_for_another(
    tmp_path: Path, registry: Any
) -> None:
    raw = raw_recipe(tmp_path, PROFILES.format(n_trials=3, sampler="random"))
    search = search_of(raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(24):
        trial = study.ask()
        values = draw_values(trial, search, raw, registry)
        profile = values[PROFILE]
        seen.add(profile)
        own = {f"{profile}:{key}" for key in search.profiles[profile].space}
        assert set(trial.params) - {PROFILE} <= own  # its own parameters, under its name
        assert values_of(trial.params) == values
        applied = apply_values(
            profile_raw(raw, search.profiles[profile]), without_profile(values), registry
        )
        backbone = validate_recipe(applied, registry).model.backbone
        assert backbone["name"] == {"cnn": "resnet18", "head": "head"}[profile]
        study.tell(trial, 0.5)
    assert seen == {"cnn", "head"}


# ------------------------------------------------------------- pruning
def test_a_trial_is_pruned_only_by_its_own_profiles_trials() -> None:
    pruner = ProfilePruner(lambda: optuna.pruners.MedianPruner(n_startup_trials=1))
    study = optuna.create_study(direction="maximize", pruner=pruner)
    choice = CategoricalDistribution(["fast", "slow"])

    def trial_of(profile: str, values: list[float]) -> optuna.Trial:
        study.enqueue_trial({PROFILE: profile})
        trial = study.ask({PROFILE: choice})
        assert trial.params[PROFILE] == profile
        for step, value in enumerate(values):
            trial.report(value, step)
        return trial

    for _ in range(2):  # a profile that learns fast
        study.tell(trial_of("fast", [0.8, 0.9]), 0.9)
    slow = trial_of("slow", [0.3])
    assert not slow.should_prune()  # against the fast profile's median it would be
    study.tell(slow, 0.3)
    assert not trial_of("slow", [0.5]).should_prune()  # better than its own profile's
    assert trial_of("slow", [0.1]).should_prune()  # worse than its own profile's
    assert trial_of("fast", [0.5]).should_prune()


# ------------------------------------------------------------- the budget
def finished(number: int, profile: str, seconds: float, value: float) -> FrozenTrial:
    start = datetime(2026, 1, 1) + timedelta(hours=number)
    return FrozenTrial(
        number=number,
        state=TrialState.COMPLETE,
        value=value,
        datetime_start=start,
        datetime_complete=start + timedelta(seconds=seconds),
        params={PROFILE: profile},
        distributions={PROFILE: CategoricalDistribution(["cnn", "head"])},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def test_the_budget_shares_time_and_follows_improvement(tmp_path: Path) -> None:
    raw = raw_recipe(tmp_path, PROFILES.format(n_trials=3, sampler="tpe"))
    search = search_of(raw).model_copy(update={"budget": "shares"})
    now = datetime(2027, 1, 1)
    # cnn trials take 100 s, head trials 10 s: equal shares of time give head 10 trials a cnn
    trials = [finished(0, "cnn", 100, 0.5), finished(1, "head", 10, 0.5)]
    chosen = []
    for number in range(2, 24):
        profile = next_profile(trials, search, "accuracy", now)
        assert profile is not None
        chosen.append(profile)
        trials.append(finished(number, profile, 100 if profile == "cnn" else 10, 0.5))
    assert chosen.count("head") == 10 * chosen.count("cnn")
    search.profiles["cnn"].share = 3.0  # cnn now owed three times the time of head
    assert next_profile(trials, search, "accuracy", now) == "cnn"
    assert next_profile(trials, search.model_copy(update={"budget": "sampler"}), "x", now) is None
    # improvement: the profile still improving gets the trial; a plateaued one none
    improving = search.model_copy(update={"budget": "improvement"})
    improving.profiles["cnn"].share = 1.0
    history = [finished(0, "cnn", 10, 0.5), finished(1, "head", 10, 0.5)]
    history += [finished(2, "cnn", 10, 0.5), finished(3, "head", 10, 0.6)]
    history += [finished(4, "cnn", 10, 0.5), finished(5, "head", 10, 0.7)]
    assert next_profile(history, improving, "accuracy", now) == "head"
    assert next_profile(history[:2], improving, "accuracy", now) == "cnn"  # each tried twice


# ------------------------------------------------------------- a tiny study, end to end
@pytest.fixture(scope="module")
def profile_study(tiny_competition: DemoCompetition, tmp_path_factory: Any) -> Path:
    """``toolkit run`` of a 2-trial study of profiles cnn and head (different features),
    its ensemble ``auto``; returns the work directory."""
    work = tmp_path_factory.mktemp("profiles")
    auto = "ensemble: {size: 5, method: auto}\n"
    recipe = profile_recipe(work, tiny_competition.root, n_trials=2, extra=auto)
    result = run_cli("run", recipe, "--output", work / "run", cwd=work)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr  # each trial's line, its profile named
    assert "trial 0 (cnn) complete" in said and "trial 1 (head) complete" in said
    assert "method: " in result.stdout and "estimates: greedy" in result.stdout
    return work


@pytest.mark.slow
def test_each_profiles_baseline_runs_as_written(profile_study: Path) -> None:
    run = StudyRun(load_recipe(profile_study / "recipe.yaml", output=profile_study / "run"))
    trials = run.handle.trials()
    baselines = {t.params[PROFILE]: t for t in trials if t.user_attrs.get("baseline")}
    assert sorted(baselines) == ["cnn", "head"] and {t.number for t in baselines.values()} == {
        0,
        1,
    }
    for profile, trial in baselines.items():
        written = run.profiles[profile].model_dump(mode="json", exclude={"search", "ensemble"})
        folder = profile_study / "run" / "trials" / f"t{trial.number:04d}"
        ran = yaml.safe_load((folder / "recipe.yaml").read_text())
        assert {k: ran[k] for k in written} == written  # the profile's recipe, nothing drawn


@pytest.mark.slow
def test_profiles_with_other_features_share_one_study_and_one_ensemble(
    profile_study: Path,
) -> None:
    run_dir = profile_study / "run"
    features = {}
    for folder in sorted((run_dir / "trials").glob("t*")):
        recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
        features[folder.name] = recipe["features"]["n_mels"]
        stats = json.loads((folder / "stats.json").read_text())
        assert stats["features_computed"] == stats["stems_computed"] == 0  # no audio work
    assert set(features.values()) == {32, 16}
    summary = json.loads((run_dir / "ensemble.json").read_text())
    assert set(summary["estimates"]) == {"greedy", "stack"}
    values = {m: e["value"] for m, e in summary["estimates"].items()}
    better = max(values, key=lambda m: (values[m], m == "greedy"))  # accuracy; ties: greedy
    assert summary["method"] == better and summary["estimate"]["value"] == values[better]
    assert summary["stack"]["kept"] == (better == "stack")
    assert len(summary["stack"]["inputs"]) == summary["candidates"]  # every trial, stacked
    rows = json.loads(
        run_cli("leaderboard", run_dir, "--db", profile_study / "leaderboard.db", "--json").stdout
    )
    by_id = {r["id"]: r for r in rows}
    profiles = {r["id"]: r["profile"] for r in rows if r["kind"] == "trial"}
    assert set(profiles.values()) == {"cnn", "head"}
    ensemble = next(r for r in rows if r["kind"] == "ensemble")
    assert ensemble["params"]["method"] == summary["method"]
    assert ensemble["estimate"] == summary["estimate"]["value"]
    members = {m["id"] for m in ensemble["members"]}
    assert ensemble["profile"] == "+".join(sorted({by_id[m]["profile"] for m in members}))
    head = run_cli(
        "leaderboard", run_dir, "--db", profile_study / "leaderboard.db", "--profile", "head",
        "--json",
    )  # fmt: skip
    shown = json.loads(head.stdout)
    assert {r["id"] for r in shown if r["kind"] == "trial"} == {
        tid for tid, p in profiles.items() if p == "head"
    }
    assert all(r["kind"] != "ensemble" or "head" in r["profile"].split("+") for r in shown)


@pytest.mark.slow
def test_the_report_draws_the_search_per_profile(profile_study: Path) -> None:
    page = (profile_study / "run" / "report.html").read_text()
    for profile in ("cnn", "head"):
        assert f'id="search-{profile}"' in page
    assert (profile_study / "run" / "figures" / "optimization_history-head.png").is_file()


@pytest.mark.slow
def test_a_stacked_ensemble_over_bags_predicts_its_test_probs_bit_for_bit(
    profile_study: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    work = copy_workspace(profile_study, tmp_path / "stacked")
    stacked = ["--set", "ensemble.method=stack", "--set", "ensemble.seeds=2"]
    again = run_cli(
        "run", work / "recipe.yaml", "--output", work / "run", "--no-report", *stacked, cwd=work
    )
    assert again.returncode == 0, again.stderr
    choice = chosen_models(work / "run")
    assert choice.stack is not None and choice.stack.bags  # a level-2 model over a bag
    bagged = {m for models in choice.stack.bags.values() for m in models}
    assert any(ModelKey.parse(m).kind == "seed" for m in bagged)
    used = assert_predicts_own_test_probs(work / "run", tiny_competition.root / "test")
    assert set(used) == set(choice.stack.models())
