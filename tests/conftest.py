"""Shared fixtures: a tiny generated competition, recipes for it, and the CLI as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.forked_cli import run_toolkit
from toolkit.demo import DemoCompetition, make_demo_competition

TINY_RECIPE = """
name: tiny
data: {{root: {root}, sample_rate: 16000, duration: 1.5}}
separator: {{name: none}}
features: {{name: mel, n_fft: 512, hop_length: 256, n_mels: 32}}
augmenters:
  - {{name: oversample, copies: {{0: 1}}}}
  - {{name: time_mask, copies: 1, max_width: 8}}
  - {{name: mixup, alpha: 0.2}}
split: {{test_size: 0.25, random_state: 42, stratify: true}}
model: {{backbone: {{name: resnet18, width: 8}}}}
train:
  epochs: 2
  batch_size: 16
  optimizer: {{name: adamw, lr: 0.003}}
  scheduler: {{name: cosine}}
cache: {{dir: {cache}}}
output: {{leaderboard: {board}}}
"""


@pytest.fixture(scope="session")
def tiny_competition(tmp_path_factory: pytest.TempPathFactory) -> DemoCompetition:
    """A few dozen generated clips in a Kaggle-style folder (mp3, ogg and wav)."""
    root = tmp_path_factory.mktemp("tiny") / "competition"
    return make_demo_competition(root, n_train=32, n_test=10, seed=3, duration=1.5)


def write_recipe(directory: Path, root: Path, extra: str = "", name: str = "recipe.yaml") -> Path:
    """A tiny recipe over ``root``; cache and leaderboard inside ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    text = TINY_RECIPE.format(
        root=root, cache=directory / "cache", board=directory / "leaderboard.db"
    )
    path = directory / name
    path.write_text(text + extra)
    return path


def copy_workspace(source: Path, target: Path) -> Path:
    """A copy of a test's work folder for a test that changes it: its recipes point at the
    copy (their cache, leaderboard and output paths), so the original stays as it was for
    the tests that only read it."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    for recipe in target.rglob("*.yaml"):
        recipe.write_text(recipe.read_text().replace(str(source), str(target)))
    return target


PAUSE_PLUGIN = Path(__file__).parent / "plugins" / "pause.py"
"""The plugin file whose ``pause`` augmenter and separator stop a run where a test kills it."""


def with_pause(recipe: Path) -> Path:
    """The tiny recipe at ``recipe`` with the ``pause`` plugin loaded and its augmenter last
    (the identity: the numbers do not change)."""
    text = recipe.read_text()
    assert "  - {name: mixup, alpha: 0.2}\n" in text
    text = text.replace(
        "  - {name: mixup, alpha: 0.2}\n", "  - {name: mixup, alpha: 0.2}\n  - {name: pause}\n"
    )
    recipe.write_text(f"plugins: [{PAUSE_PLUGIN}]\n" + text)
    return recipe


def start_paused(
    args: list[object], marker: Path, point: int, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """``python -m toolkit ARGS`` in the background, to block at ``pause`` point ``point``."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(
        TOOLKIT_NO_PROGRESS="1", TOOLKIT_LOAD_PLUGINS="", TOOLKIT_TEST_PAUSE=f"{marker}:{point}"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when_paused(proc: subprocess.Popen[str], marker: Path, timeout: float = 300) -> None:
    """Wait until ``proc`` is blocked at its pause point (``marker`` written), then kill it.

    Fails, with the process's stderr, if it ends or the timeout passes first.
    """
    deadline = time.monotonic() + timeout
    try:
        while not marker.is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                stderr = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"the run never reached its pause point: {stderr}")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def run_cli(
    *args: object, cwd: Path | None = None, progress: bool = False, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m toolkit ARGS`` in a real subprocess (forked from one that imported the
    heavy libraries: :mod:`tests.forked_cli`) and capture its output.

    Progress is off unless ``progress``; then stderr is a pipe, as in a log file. ``umask``:
    the subprocess's (default: this process's).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(TOOLKIT_NO_PROGRESS="0" if progress else "1", TOOLKIT_LOAD_PLUGINS="")
    return run_toolkit([str(a) for a in args], cwd=cwd, env=env, timeout=600, umask=umask)


def one_error_line(stderr: str, starts: str = "error: ") -> str:
    """The one line a command said on ``stderr`` besides warnings: no traceback, starting
    with ``starts``."""
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(starts), stderr
    return lines[0]


def held_out_accuracy(root: Path, competition: object, test_probs: object) -> tuple[float, float]:
    """Accuracy of test probabilities on a demo's ``test_labels.csv``, and the majority share."""
    import numpy as np
    import pandas as pd

    from toolkit.metrics import accuracy

    truth = pd.read_csv(root / "test_labels.csv", dtype={"id": str})
    truth = truth.set_index("id").loc[competition.test_ids]  # type: ignore[attr-defined]
    classes = competition.classes  # type: ignore[attr-defined]
    labels = np.array([classes.index(str(c)) for c in truth["category"]])
    majority = float(np.bincount(labels).max() / len(labels))
    return accuracy(test_probs, labels), majority  # type: ignore[arg-type]


TINY_STUDY = """
model: {backbone: {name: head, hidden: 32, dropout: 0.1}}
predict: {tta: [{name: time_shift, views: 2, max_fraction: 0.1}]}
search:
  n_trials: 3
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
ensemble: {size: 4, seeds: 2, refit: true}
"""
"""The tiny recipe's keys that make it a study whose submission is an ensemble of refit trials
(their seed copies' weights summed), predicted with a test-time augmenter."""


def finished_run(work: Path, root: Path, extra: str, *sets: str) -> Path:
    """A finished run of the tiny recipe over ``root`` (with ``extra`` keys and ``--set``
    overrides ``sets``), in ``work/run``."""
    recipe = write_recipe(work, root, extra)
    options = [arg for key in sets for arg in ("--set", key)]
    done = run_cli("run", recipe, "--output", work / "run", "--no-report", *options, cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "run"


@pytest.fixture(scope="session")
def tiny_study(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study of :data:`TINY_STUDY` (tests that change it work on a copy)."""
    work = tmp_path_factory.mktemp("tiny-study")
    return finished_run(work, tiny_competition.root, TINY_STUDY, "train.epochs=3")


def assert_predicts_own_test_probs(run_dir: Path, clips: Path) -> list[str]:
    """``toolkit.predict`` of ``run_dir`` on ``clips`` (its own test clips: their folder or the
    sample submission) equals the run's ``test_probs.csv`` bit for bit; returns the models used."""
    import numpy as np
    import pandas as pd

    import toolkit

    prediction = toolkit.predict(run_dir, clips)
    expected = pd.read_csv(run_dir / "test_probs.csv", dtype={"id": str})
    assert sorted(prediction.ids) == sorted(expected["id"])
    table = prediction.probability_table()  # a folder's clips: in the order of their names
    table = table.set_index("id").loc[list(expected["id"])].reset_index()
    assert list(table.columns) == list(expected.columns)
    got, want = table.drop(columns="id").to_numpy(), expected.drop(columns="id").to_numpy()
    assert np.array_equal(got, want), np.abs(got - want).max()
    return prediction.models


# ------------------------------------------------------- a competitor's folder with text labels

TEXT_LABELS = ("none", "male", "female", "several")
"""The demo's labels 0..3 as a competitor's own folder writes them (sorted: female, male,
none, several, so no label sits at the position of its demo number)."""


def text_label_copy(demo: DemoCompetition, target: Path) -> Path:
    """``demo`` laid out as a competitor's own folder: ids that are file names
    (``clip_001.wav``, ``test_001.wav``), columns ``file,label``, labels
    :data:`TEXT_LABELS` (``test_labels.csv`` too); every clip rewritten as WAV."""
    import pandas as pd
    import soundfile as sf

    from toolkit.data.dataset import index_audio

    def copy_split(csv: Path, audio: Path, split: str, prefix: str) -> pd.DataFrame:
        frame = pd.read_csv(csv, dtype=str)
        files = index_audio(audio)
        (target / split).mkdir(parents=True)
        names = [f"{prefix}_{i + 1:03d}.wav" for i in range(len(frame))]
        for old, new in zip(frame["id"], names, strict=True):
            samples, rate = sf.read(str(files[old]), always_2d=True)
            sf.write(str(target / split / new), samples, rate, subtype="PCM_16")
        labels = [TEXT_LABELS[int(c)] for c in frame["category"]]
        return pd.DataFrame({"file": names, "label": labels, "id": list(frame["id"])})

    train = copy_split(demo.train_csv, demo.train_audio, "train", "clip")
    train[["file", "label"]].to_csv(target / "train.csv", index=False)
    truth = copy_split(demo.test_labels, demo.test_audio, "test", "test").set_index("id")
    order = pd.read_csv(demo.sample_submission, dtype=str)["id"]  # the sample's own order
    test = truth.loc[order, ["file", "label"]]
    test.to_csv(target / "test_labels.csv", index=False)
    test.assign(label=TEXT_LABELS[0]).to_csv(target / "sample_submission.csv", index=False)
    return target


@pytest.fixture(scope="session")
def text_label_competition(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny competition as a competitor's own folder (:func:`text_label_copy`)."""
    return text_label_copy(tiny_competition, tmp_path_factory.mktemp("text") / "competition")


TEXT_LABEL_SETS = ("data.label_column=label", "data.id_column=file")
"""The ``--set`` overrides that read :func:`text_label_copy`'s columns."""
