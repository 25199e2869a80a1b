"""Benchmark: one study across model families against each family alone; greedy against stacked.

On the demo with sources (400 train and 100 test clips of 3 s cut from 50 songs,
the test clips' songs and singers unseen by the train clips; ``test_labels.csv``
never seen by training or selection), ``recipes/strong.yaml`` as it is (its split
grouped by the songs ``split.groups: auto`` finds), side by side in one run:

1. each profile alone (the others set to null), with the study's whole time
   budget and the recipe's ensemble (``auto``);
2. the profile study (every profile, time shared by ``search.budget: shares``)
   with a greedy ensemble;
3. the same study's trials stacked (``ensemble.method: stack``);
4. and ``auto``: whichever of the two estimates better.

2 to 4 share one study: its trials run once, then each ensemble is built over them.
For each: the trials (complete, pruned) and their profiles, the estimate (the
ensemble's procedure cross-validated; log loss and accuracy), the validation
accuracy of the ensemble (on the clips it was chosen on: optimistic), the test
accuracy on ``test_labels.csv`` and the wall time (trials and ensemble; stems and
features are computed once before any configuration, their time printed apart).
Prints a markdown table. At the recipe's budget (``search.timeout`` 2400 s) the four
studies take about 3 hours on 2 CPU cores. Usage:

    python bench/profiles_gain.py [--root data/demo-songs] [--work runs/bench-profiles]
        [--timeout SECONDS] [--trials N] [--only head cnn study]
        [--train 400 --test 100 --songs 50] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from toolkit.demo import submission_accuracy
from toolkit.ensemble.record import EnsembleOutcome
from toolkit.recipe.loading import LoadedRecipe, load_recipe
from toolkit.recipe.schema import Ensemble
from toolkit.study import StudyRun
from toolkit.study.profiles import PROFILE
from toolkit.workflow import run_study

ROOT = Path(__file__).resolve().parent.parent
STRONG = ROOT / "recipes" / "strong.yaml"


def overrides(args: argparse.Namespace, root: Path, work: Path) -> tuple[str, ...]:
    """What every configuration shares: the demo with sources, the budget, ``--set``."""
    common = [
        f"data.demo.folder={root}",
        f"data.demo.n_train={args.train}",
        f"data.demo.n_test={args.test}",
        f"data.demo.songs={args.songs}",
        f"output.leaderboard={work / 'leaderboard.db'}",
    ]
    if args.timeout is not None:
        common.append(f"search.timeout={args.timeout}")
    if args.trials is not None:
        common.append(f"search.n_trials={args.trials}")
    return (*common, *args.set)


def load(shared: tuple[str, ...], name: str, work: Path, *more: str) -> LoadedRecipe:
    """strong.yaml with the shared overrides and ``more``, run as ``name`` into ``work``."""
    return load_recipe(STRONG, (*shared, f"name={name}", *more), output=work / name)


def trial_summary(run: StudyRun) -> str:
    """``12 (10 complete, 2 pruned): head 8, cnn 3, finetune 1`` of a finished study."""
    counts = run.handle.counts()
    finished = [t for t in run.handle.trials() if t.state.name in ("COMPLETE", "PRUNED")]
    per = Counter(str(t.params.get(PROFILE)) for t in finished)
    profiles = ", ".join(f"{p} {per[p]}" for p in run.profiles if per[p])
    return f"{len(finished)} ({counts['complete']} complete, {counts['pruned']} pruned): {profiles}"


def row(
    name: str, trials: str, outcome: EnsembleOutcome, root: Path, seconds: float
) -> tuple[str, ...]:
    """One line of the table."""
    estimate = outcome.estimate
    assert estimate is not None
    method = outcome.method
    if outcome.combination is not None and len(outcome.combination.estimates) > 1:
        other = {m: e.value for m, e in outcome.combination.estimates.items()}
        method += " (" + ", ".join(f"{m} {v:.4f}" for m, v in other.items()) + ")"
    return (
        name,
        trials,
        method,
        f"{estimate.value:.4f}",
        f"{estimate.accuracy:.3f}",
        f"{outcome.val_accuracy:.3f}",
        f"{submission_accuracy(outcome.submission, root):.3f}",
        f"{seconds:.0f}",
    )


def main() -> None:
    """Run the configurations; print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "data" / "demo-songs")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-profiles")
    parser.add_argument("--timeout", type=float, help="search.timeout (default: the recipe's)")
    parser.add_argument("--trials", type=int, help="search.n_trials (default: the recipe's)")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--songs", type=int, default=50)
    parser.add_argument("--only", nargs="*", help="profiles to run alone, and/or 'study'")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides KEY=VALUE")
    args = parser.parse_args()
    root, work = args.root.resolve(), args.work.resolve()
    shared = overrides(args, root, work)

    started = time.perf_counter()
    study_recipe = load(shared, "bench-profiles-study", work, "ensemble.method=greedy")
    StudyRun(study_recipe).prepare_views()  # stems and features of every profile, cached
    print(f"stems and features of every profile: {time.perf_counter() - started:.0f} s")

    lines = []
    profiles = list(StudyRun(study_recipe).profiles)
    for profile in profiles:
        if args.only and profile not in args.only:
            continue
        others = [f"search.profiles.{p}=null" for p in profiles if p != profile]
        loaded = load(shared, f"bench-profiles-{profile}", work, *others)
        started = time.perf_counter()
        result = run_study(loaded)
        seconds = time.perf_counter() - started
        trials = trial_summary(StudyRun(loaded))
        lines.append(row(f"{profile} alone", trials, result.ensemble, root, seconds))
        print(f"done: {profile} alone in {seconds:.0f} s", flush=True)
    if not args.only or "study" in args.only:
        started = time.perf_counter()
        result = run_study(study_recipe)  # its trials, then the greedy ensemble
        trials_seconds = time.perf_counter() - started - result.ensemble.seconds
        run = StudyRun(study_recipe)
        trials = trial_summary(run)
        spec = study_recipe.recipe.ensemble or Ensemble()
        for method in ("greedy", "stack", "auto"):
            if method == "greedy":
                outcome = result.ensemble
            else:  # the same trials, another way to combine them
                outcome = run.ensemble(spec.model_copy(update={"method": method}))
            seconds = trials_seconds + outcome.seconds
            lines.append(row(f"profile study, {method}", trials, outcome, root, seconds))
        print(f"done: the profile study in {trials_seconds:.0f} s of trials", flush=True)

    metric = study_recipe.recipe.search.metric if study_recipe.recipe.search else "metric"
    print(
        f"| configuration | trials | method kept (estimates) | estimate ({metric}) "
        "| estimate (acc) | ensemble val acc | test acc | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    main()
