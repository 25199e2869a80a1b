"""Benchmark: what training the pretrained networks end to end, and pseudo-labels, gain.

Side by side in one run, on one demo competition whose clips share songs and
singers (``--songs 50``: the test clips' songs and singers are never in the train
clips; its ``test_labels.csv`` are never seen by training or selection):

1. the frozen head: ``recipes/strong.yaml``'s ``head`` profile alone (three frozen
   pretrained streams, a search over the head, the greedy ensemble of seed bags), with
   ``search.n_trials`` cut to ``--trials`` (before profiles, strong.yaml was this study;
   its pruner and sampler settings are now the profile study's);
2. musicnn fine-tuned on the vocals' waveform (``recipes/finetune.yaml`` with
   ``musicnn_finetune`` and the waveform streams only);
3. the speaker encoder fine-tuned the same way (``speaker_finetune``);
4. the fused model: ``recipes/finetune.yaml`` as it is (the speaker encoder
   fine-tuned, musicnn's frozen embeddings of the vocals and the mixture beside it);

and each of them followed by a pseudo-label round (``semi_supervised``, threshold
``--threshold`` 0.9, power ``--power`` 2): the chosen trials trained again with the
test clips the ensemble is sure of, kept only if the ensemble's grouped estimate
improves. The round reuses its
configuration's run (trials, seed copies): its seconds are the round's alone.

Every configuration is a study on the recipe's split with ``split.groups: auto``
(clips of one song, found from their accompaniment, on one side); a recipe without
a search is a one-trial study, so each has an ensemble and its grouped estimate
(``ensemble.json``). Prints, for each: the estimate (the toolkit's number to
expect), the accuracy on the held-out test labels, their gap and the wall time
(stems and features are shared through the cache: the first configuration that
needs them pays for them; run once before to time training alone). For a round:
the estimate before and after and whether it was kept, and the test accuracy of
the pseudo-labelled copies blended with the first ensemble's weights, kept or not
(what the round would have given). Usage:

    python bench/finetune_gain.py [--root data/demo-songs] [--work runs/bench-finetune]
        [--trials 6] [--only speaker fused] [--no-pseudo] [--threshold 0.9] [--power 2]
        [--seeds 1]
        [--set train.epochs=4 ...]

Run again with the same ``--work``, a configuration's study is found done and only its
pseudo-label round trains (e.g. with another ``--threshold``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.demo import ensure_demo_competition
from toolkit.ensemble.selection import blend
from toolkit.metrics import accuracy
from toolkit.recipe.loading import LoadedRecipe, load_recipe
from toolkit.runs.model_key import ModelKey
from toolkit.runs.run_dir import RunDir
from toolkit.study import StudyRun
from toolkit.workflow import run_study

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
WAVEFORMS = "features=[{name: waveform}, {name: waveform, input: mixture}]"
PSEUDO = "semi_supervised={{pseudo_labels: {{threshold: {threshold}, power: {power}}}}}"
GROUPED = "split.groups=auto"
ONE_TRIAL = "ensemble={{size: 5, seeds: {seeds}}}"
"""A recipe without a search as a one-trial study (its model, bagged over ``--seeds``
seeds), so it gets an ensemble's estimate."""
HEAD_ONLY = (
    "search.profiles.cnn=null",
    "search.profiles.finetune=null",
    "search.budget=sampler",
    "search.timeout=null",
    "ensemble.method=greedy",
)
"""strong.yaml's frozen-head profile alone, greedy ensemble: the frozen head of this bench."""


def configs(trials: int, seeds: int) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """Each configuration: its recipe and overrides."""
    one_trial = ONE_TRIAL.format(seeds=seeds)
    bag = f", {seeds}-seed bag" if seeds > 1 else ""
    return {
        f"frozen head (strong.yaml, {trials} trials)": (
            RECIPES / "strong.yaml",
            (f"search.n_trials={trials}", *HEAD_ONLY),
        ),
        f"musicnn fine-tuned (vocals{bag})": (
            RECIPES / "finetune.yaml",
            (WAVEFORMS, "model.backbone={name: musicnn_finetune}", one_trial),
        ),
        f"speaker fine-tuned (vocals{bag})": (RECIPES / "finetune.yaml", (WAVEFORMS, one_trial)),
        f"fused: speaker fine-tuned + frozen musicnn{bag}": (
            RECIPES / "finetune.yaml",
            (one_trial,),
        ),
    }


def test_accuracy(probs: np.ndarray, run_dir: Path, root: Path) -> float:
    """Accuracy of test probabilities (in the competition's test order) on the labels."""
    table = RunDir(run_dir).read_probability_table("test")
    truth = pd.read_csv(root / "test_labels.csv", dtype=str).set_index("id")
    truth = truth.loc[table["id"], "category"]
    classes = [c.removeprefix("p_") for c in table.columns if c.startswith("p_")]
    labels = np.array([classes.index(c) for c in truth])
    return accuracy(probs, labels)


def submission_probs(run_dir: Path) -> np.ndarray:
    """The run's ensemble test probabilities (``test_probs.csv``)."""
    table = RunDir(run_dir).read_probability_table("test")
    return table[[c for c in table.columns if c.startswith("p_")]].to_numpy()


def copies_probs(run_dir: Path, record: dict[str, object]) -> np.ndarray | None:
    """The pseudo-labelled copies' test probabilities blended with the weights of the
    models that labelled them (each model's weight to its trial's copy)."""
    weights: dict[str, float] = {}
    for mid, weight in dict(record["labelled_by"]).items():  # type: ignore[call-overload]
        copy = ModelKey.parse(mid).trial_key().pseudo_labelled()
        weights[copy.id] = weights.get(copy.id, 0.0) + float(weight)
    if not record["models"]:
        return None
    probs = {
        m: RunDir(ModelKey.parse(m).folder(run_dir)).read_probabilities("test") for m in weights
    }
    return blend(probs, weights)


def main() -> None:
    """Run every configuration on one demo folder; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/demo-songs"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench-finetune"))
    parser.add_argument("--trials", type=int, default=6, help="strong.yaml's search.n_trials")
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    parser.add_argument("--no-pseudo", action="store_true", help="skip the pseudo-label rounds")
    parser.add_argument("--seeds", type=int, default=1, help="seed bag of each fine-tune")
    parser.add_argument("--threshold", type=float, default=0.9, help="pseudo-label confidence")
    parser.add_argument("--power", type=float, default=2.0, help="pseudo-label sharpening")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every fine-tune")
    args = parser.parse_args()
    root = args.root.resolve()
    ensure_demo_competition(root, n_train=400, n_test=100, seed=0, duration=3.0, songs=50)
    rows = []
    for i, (name, (recipe, overrides)) in enumerate(configs(args.trials, args.seeds).items()):
        if args.only and not any(o in name for o in args.only):
            continue
        extra = tuple(args.set) if recipe.name == "finetune.yaml" else ()
        common = (f"data.root={root}", GROUPED, f"name=bench-finetune{i}", *overrides, *extra)
        out = args.work / f"c{i}"
        started = time.perf_counter()
        run_dir = run_study(load_recipe(recipe, common, output=out)).run_dir
        seconds = time.perf_counter() - started
        summary = json.loads(RunDir(run_dir).file("ensemble.json").read_text())
        estimate = summary["estimate"]["accuracy"]
        test = test_accuracy(submission_probs(run_dir), run_dir, root)
        rows.append((name, estimate, test, seconds, ""))
        print(f"done: {name}: estimate {estimate:.3f}, test {test:.3f} in {seconds:.0f} s")
        if args.no_pseudo:
            continue
        pseudo = PSEUDO.format(threshold=args.threshold, power=args.power)
        loaded: LoadedRecipe = load_recipe(recipe, (*common, pseudo), output=out)
        started = time.perf_counter()
        outcome = StudyRun(loaded).ensemble()
        seconds = time.perf_counter() - started
        record = json.loads(RunDir(run_dir).file("ensemble.json").read_text())["pseudo_labels"]
        after = outcome.estimate.accuracy if outcome.estimate else float("nan")
        test = test_accuracy(submission_probs(run_dir), run_dir, root)
        copies = copies_probs(run_dir, record)
        copies_test = "-" if copies is None else f"{test_accuracy(copies, run_dir, root):.3f}"
        after_value = record["estimate_after"]
        round_ = (
            f"{max(record['test_clips'], default=0)}/{record['of']} clips, "
            f"{len(record['models'])} copies, {'kept' if record['kept'] else 'not kept'} "
            f"(estimate {record['metric']} {record['estimate_before']:.4f} -> "
            f"{'-' if after_value is None else f'{after_value:.4f}'}); "
            f"copies alone: test {copies_test}"
        )
        rows.append((f"{name} + pseudo-labels", after, test, seconds, round_))
        print(f"done: {name} + pseudo-labels: {round_}; test {test:.3f} in {seconds:.0f} s")
    print("| configuration | estimate | test acc | gap | seconds | pseudo-label round |")
    print("|---|---|---|---|---|---|")
    for name, estimate, test, seconds, round_ in rows:
        gap = 100 * (estimate - test)
        print(f"| {name} | {estimate:.3f} | {test:.3f} | {gap:+.1f} | {seconds:.0f} | {round_} |")


if __name__ == "__main__":
    main()
