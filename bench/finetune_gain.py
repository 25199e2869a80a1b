"""Benchmark: what training the pretrained networks end to end gains over frozen features.

Side by side in one run, on one demo competition whose clips share songs and
singers (``--songs 50``: the test clips' songs and singers are unseen; its
``test_labels.csv`` are never seen by training or selection):

1. the frozen head: ``recipes/strong.yaml``'s ``head`` profile alone (three frozen
   pretrained streams, a search over the head, the greedy ensemble of seed bags), with
   ``search.n_trials`` cut to ``--trials`` (before profiles, strong.yaml was this study;
   its pruner and sampler settings are now the profile study's);
2. musicnn fine-tuned on the vocals' waveform (``recipes/finetune.yaml`` with
   ``musicnn_finetune`` and the waveform streams only);
3. the speaker encoder fine-tuned the same way (``speaker_finetune``);
4. the fused model: ``recipes/finetune.yaml`` as it is (the speaker encoder
   fine-tuned, musicnn's frozen embeddings of the vocals and the mixture beside it);
5. and 6. the frozen head and the fused model with a pseudo-label round
   (``semi_supervised``: every model trained again with the test clips it is sure of,
   kept only if its validation improves; for the study, each trial and seed copy).

Every configuration validates on one grouped split: the demo's true songs
(``train_sources.csv``, which the toolkit never reads by itself) are copied into a
train CSV of the folder, ``train_grouped.csv``, named by ``data.group_column``, so no
song straddles training and validation. Prints, for each, the validation accuracy
the run reports on that split (the toolkit's estimate; for the ensemble, on the
clips its members were chosen on), the accuracy on the held-out test labels and the
wall time (stems and features are shared through the cache, so Spleeter and each
extractor run once: the first configuration that needs them pays for them; run once
before to time training alone) and how many models kept their pseudo-label round.
Usage:

    python bench/finetune_gain.py [--root data/demo-songs] [--work runs/bench-finetune]
        [--trials 10] [--only speaker fused] [--set train.epochs=4 ...]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.demo import ensure_demo_competition, submission_accuracy
from toolkit.loading import LoadedRecipe, load_recipe
from toolkit.metrics import accuracy
from toolkit.run_dir import PSEUDO_LABELS, RunDir
from toolkit.workflow import run, run_study

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
GROUPED_CSV = "train_grouped.csv"
"""The demo's train CSV with each clip's true song, written into the demo folder."""
WAVEFORMS = "features=[{name: waveform}, {name: waveform, input: mixture}]"
PSEUDO = "semi_supervised={pseudo_labels: {threshold: 0.9, power: 2.0}}"
HEAD_ONLY = (
    "search.profiles.cnn=null",
    "search.profiles.finetune=null",
    "search.budget=sampler",
    "search.timeout=null",
    "ensemble.method=greedy",
)
"""strong.yaml's frozen-head profile alone, greedy ensemble: the frozen head of this bench."""
Runner = Callable[[LoadedRecipe], Path]
"""Trains what a configuration names; returns its run directory."""


def plain(loaded: LoadedRecipe) -> Path:
    """A recipe without a study: one model."""
    return run(loaded).run_dir


def study(loaded: LoadedRecipe) -> Path:
    """A recipe with a study: its trials, then its ensemble."""
    return run_study(loaded).run_dir


def configs(trials: int) -> dict[str, tuple[Path, tuple[str, ...], Runner]]:
    """Each configuration: its recipe, overrides and how it runs."""
    return {
        f"frozen head (strong.yaml, {trials} trials)": (
            RECIPES / "strong.yaml",
            (f"search.n_trials={trials}", *HEAD_ONLY),
            study,
        ),
        "musicnn fine-tuned (vocals)": (
            RECIPES / "finetune.yaml",
            (WAVEFORMS, "model.backbone={name: musicnn_finetune}"),
            plain,
        ),
        "speaker fine-tuned (vocals)": (RECIPES / "finetune.yaml", (WAVEFORMS,), plain),
        "fused: speaker fine-tuned + frozen musicnn": (RECIPES / "finetune.yaml", (), plain),
        f"frozen head + pseudo-labels ({trials} trials)": (
            RECIPES / "strong.yaml",
            (f"search.n_trials={trials}", *HEAD_ONLY, PSEUDO),
            study,
        ),
        "fused + pseudo-labels": (RECIPES / "finetune.yaml", (PSEUDO,), plain),
    }


def pseudo_label_rounds(run_dir: Path) -> str:
    """How many of a run's models kept their pseudo-label round (``-``: none had one)."""
    records = [json.loads(p.read_text()) for p in sorted(run_dir.rglob(PSEUDO_LABELS))]
    if not records:
        return "-"
    kept = [r for r in records if r["kept"]]
    clips = sorted({r["test_clips"] for r in records})
    return f"{len(kept)}/{len(records)} kept ({clips[0]}-{clips[-1]} clips)"


def write_grouped_csv(root: Path) -> None:
    """``train.csv`` of the demo at ``root`` with a ``song`` column from its true sources."""
    train = pd.read_csv(root / "train.csv", dtype=str)
    sources = pd.read_csv(root / "train_sources.csv", dtype=str)[["id", "song"]]
    grouped = train.merge(sources, on="id", how="left", validate="one_to_one")
    if grouped["song"].isna().any():
        raise SystemExit(f"{root}: train_sources.csv misses train clips; remake the demo")
    grouped.to_csv(root / GROUPED_CSV, index=False)


def validation_accuracy(run_dir: Path) -> float:
    """The accuracy of a run's validation probabilities (its model's or its ensemble's)."""
    out = RunDir(run_dir)
    frame = out.read_probability_table("val")
    classes = [c.removeprefix("p_") for c in frame.columns if c.startswith("p_")]
    labels = np.array([classes.index(c) for c in frame["label"]])
    return accuracy(frame[[f"p_{c}" for c in classes]].to_numpy(), labels)


def main() -> None:
    """Run every configuration on one demo folder; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/demo-songs"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench-finetune"))
    parser.add_argument("--trials", type=int, default=10, help="strong.yaml's search.n_trials")
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every fine-tune")
    args = parser.parse_args()
    root = args.root.resolve()
    ensure_demo_competition(root, n_train=400, n_test=100, seed=0, duration=3.0, songs=50)
    write_grouped_csv(root)
    grouped = (f"data.root={root}", f"data.train_csv={GROUPED_CSV}", "data.group_column=song")
    rows = []
    for i, (name, (recipe, overrides, runner)) in enumerate(configs(args.trials).items()):
        if args.only and not any(o in name for o in args.only):
            continue
        extra = tuple(args.set) if recipe.name == "finetune.yaml" else ()
        loaded = load_recipe(
            recipe,
            (*grouped, f"name=bench-finetune{i}", *overrides, *extra),
            output=args.work / f"c{i}",
        )
        started = time.perf_counter()
        run_dir = runner(loaded)
        seconds = time.perf_counter() - started
        test = submission_accuracy(RunDir(run_dir).file("submission.csv"), root)
        rounds = pseudo_label_rounds(run_dir)
        rows.append((name, validation_accuracy(run_dir), test, seconds, rounds))
        print(f"done: {name}: test {test:.3f} in {seconds:.0f} s", flush=True)
    print("| configuration | grouped val | test acc | seconds | pseudo-label rounds |")
    print("|---|---|---|---|---|")
    for name, val, test, seconds, rounds in rows:
        print(f"| {name} | {val:.3f} | {test:.3f} | {seconds:.0f} | {rounds} |")


if __name__ == "__main__":
    main()
