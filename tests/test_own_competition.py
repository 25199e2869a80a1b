"""The README's "Your own competition", walked through as written (issue 27).

A new user in a fresh clone (``~/toolkit``) runs the quick start's demo, then the same
recipe on a folder of their own, ``~/comp``: ids that are file names (``clip_001.wav``),
columns ``file,label``, text labels ``none,male,female,several``. They read what the
commands print, open the run folder and the submission, look at the leaderboard and predict
a folder of new clips. Each step is a real ``toolkit`` process with the README's command
(its flags, in its order); the only additions are ``--set`` overrides of small settings,
each named where it is added. The error lines the section shows are the ones the toolkit
prints, read from the README itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEXT_LABELS, one_error_line, run_cli
from toolkit.data.checks import check_inputs
from toolkit.recipe.loading import load_recipe

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_HOME = "/home/me"
"""The home folder of the README's examples (its clone ``~/toolkit``, its data ``~/comp``)."""

SMALL_DEMO = (
    *("--set", "data.demo.n_train=32", "--set", "data.demo.n_test=10"),
    *("--set", "data.demo.duration=1.5", "--set", "data.duration=1.5"),
    *("--set", "train.epochs=1"),
)
"""Small settings for the quick start's ``toolkit run recipes/demo.yaml``: fewer and shorter
clips, one epoch (the separator stays Spleeter: 42 clips of 1.5 s take seconds)."""

OWN_DATA = (
    *("--set", "data.root=~/comp", "--set", "data.duration=1.5"),
    *("--set", "data.label_column=label", "--set", "data.id_column=file"),
)
"""The README's overrides for a folder of one's own, in its order: ``~/comp`` as typed in a
shell (which leaves a ``~`` after ``data.root=`` to the toolkit), the clips' length (the
table's advice for ``data.duration``) and the columns."""

ONE_EPOCH = ("--set", "train.epochs=1")
"""A small setting added to the README's command: one epoch."""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path -> bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def section() -> str:
    """The README's "Your own competition" section."""
    return README.read_text().split("\n### Your own competition\n")[1].split("\n## ")[0]


def readme_error(starts: str) -> str:
    """The error line the section shows that starts with ``starts``."""
    (line,) = [line for line in section().splitlines() if line.startswith(starts)]
    return line


def matches_readme(printed: str, shown: str) -> bool:
    """Whether a printed line is the README's line ``shown`` on this machine: its home folder
    for ``/home/me``, any digests for the README's."""
    parts = re.split(r"[0-9a-f]{12}", shown.replace(README_HOME, str(Path.home())))
    return re.fullmatch("[0-9a-f]{12}".join(map(re.escape, parts)), printed) is not None


def readme_command(recipe: str) -> list[str]:
    """The arguments of the section's ``toolkit run RECIPE`` command, as a shell splits them."""
    text = section().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith(f"toolkit run {recipe} ")]
    return shlex.split(line, comments=True)[1:]


@pytest.fixture
def clone(text_label_competition: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder holding ``comp``, the competitor's own folder
    (:func:`tests.conftest.text_label_copy`), and ``toolkit``, a fresh clone's folder (the
    shipped recipes), the current folder.

    The caches a home folder holds (the toolkit's converted Spleeter weights, matplotlib's
    font list) stay the test process's, so the test does not rebuild them.
    """
    home = tmp_path / "home"
    shutil.copytree(text_label_competition, home / "comp")
    real_home = Path.home()
    for key, folder in (("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config")):
        monkeypatch.setenv(key, os.environ.get(key, str(real_home / folder)))
    monkeypatch.setenv("HOME", str(home))
    workspace = home / "toolkit"
    shutil.copytree(REPO / "recipes", workspace / "recipes")
    monkeypatch.chdir(workspace)
    return workspace


@pytest.mark.slow
def test_your_own_competition_as_the_readme_walks_it(clone: Path) -> None:
    comp = Path.home() / "comp"
    own = snapshot(comp)
    cache = clone / "runs" / ".cache"

    # Quick start: toolkit run recipes/demo.yaml
    done = run_cli("run", "recipes/demo.yaml", *SMALL_DEMO, cwd=clone, progress=True)
    assert done.returncode == 0, done.stderr
    demo_dir = clone / "runs" / "demo"
    where = f"data {clone / 'data' / 'demo'} (demo) · cache {cache} · output {demo_dir}"
    assert done.stderr.startswith(f"{where}\n"), done.stderr
    assert done.stdout.startswith(f"submission: {demo_dir / 'submission.csv'}\n"), done.stdout
    demo_files = snapshot(demo_dir)
    assert {"best.pt", "submission.csv", "data.json", "report.html"} <= set(demo_files)
    cached = sorted(cache.rglob("*"))

    # the README's refusal: the demo's folder named with --output, for the other data
    done = run_cli("run", "recipes/demo.yaml", *OWN_DATA, "--output", "runs/demo", cwd=clone)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert matches_readme(line, readme_error("error: /home/me/toolkit/runs/demo holds")), line
    assert snapshot(demo_dir) == demo_files
    assert sorted(cache.rglob("*")) == cached  # refused before any clip was decoded

    # Your own competition: the same recipe on ~/comp
    done = run_cli("run", "recipes/demo.yaml", *OWN_DATA, *ONE_EPOCH, cwd=clone, progress=True)
    assert done.returncode == 0, done.stderr
    run_dir = clone / "runs" / "demo-comp"  # beside runs/demo, keyed by the data's folder
    assert done.stderr.startswith(f"data {comp} · cache {cache} · output {run_dir}\n")
    lines = done.stdout.splitlines()
    assert lines[0] == f"submission: {run_dir / 'submission.csv'}", done.stdout
    assert lines[1].startswith("best validation accuracy: "), done.stdout
    (row_id,) = re.findall(r"^leaderboard: (demo/r\S+) \(", done.stdout, re.M)
    assert lines[-1] == f"report: {run_dir / 'report.html'}", done.stdout
    assert snapshot(demo_dir) == demo_files  # the demo's run, byte for byte
    assert snapshot(comp) == own  # nothing written into the competition's folder

    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    sample = pd.read_csv(comp / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == ["file", "label"]  # the sample's columns
    assert list(submission["file"]) == list(sample["file"])  # its ids, in its order
    assert all(re.fullmatch(r"test_\d{3}\.wav", i) for i in submission["file"])
    assert set(submission["label"]) <= set(TEXT_LABELS)
    data = json.loads((run_dir / "data.json").read_text())
    assert data["root"] == str(comp)

    # the leaderboard: the run's row, and each run's data and submission
    shown = run_cli("leaderboard", "runs/demo-comp", cwd=clone)
    assert shown.returncode == 0, shown.stderr
    assert row_id in shown.stdout and shown.stdout.count("demo/r") == 1, shown.stdout
    shown = run_cli("leaderboard", "--columns", "id,data,submission", cwd=clone)
    assert shown.returncode == 0, shown.stderr
    cells = {
        line.split()[0]: line.split()[1:]
        for line in shown.stdout.splitlines()
        if line.startswith("demo/r")
    }
    demo_digest = json.loads((demo_dir / "data.json").read_text())["digest"]
    assert cells.pop(row_id) == [f"comp@{data['digest'][:8]}", "demo-comp/submission.csv"]
    assert list(cells.values()) == [[f"demo@{demo_digest[:8]}", "demo/submission.csv"]]

    # Predicting new clips: a folder of recordings that are not the run's test clips
    new = clone / "new_clips"
    new.mkdir()
    copies = {"rec_a.wav": "test/test_004.wav", "rec_b.wav": "test/test_009.wav"}
    copies["rec_c.wav"] = "train/clip_003.wav"
    for name, source in copies.items():
        shutil.copy(comp / source, new / name)
    done = run_cli("predict", "runs/demo-comp", "new_clips/", cwd=clone, progress=True)
    assert done.returncode == 0, done.stderr
    written = "runs/demo-comp/predictions/new_clips.csv"
    assert done.stdout == f"submission: {written} (3 clips, 1 model)\n", done.stdout
    predicted = pd.read_csv(clone / written, dtype=str)
    assert list(predicted.columns) == ["file", "label"]
    assert list(predicted["file"]) == sorted(copies)  # the new files' names, extension kept
    assert set(predicted["label"]) <= set(TEXT_LABELS)
    labels = dict(zip(submission["file"], submission["label"], strict=True))
    for name, label in zip(predicted["file"], predicted["label"], strict=True):
        if copies[name].startswith("test/"):  # a copy of a test clip: the original's label
            assert label == labels[Path(copies[name]).name], name

    assert sorted(p.name for p in clone.iterdir()) == ["data", "new_clips", "recipes", "runs"]
    runs = {p.name for p in (clone / "runs").iterdir() if not p.name.endswith(("-wal", "-shm"))}
    assert runs == {".cache", "demo", "demo-comp", "leaderboard.db"}  # nothing staged left
    assert snapshot(demo_dir) == demo_files


@pytest.mark.parametrize("recipe", ["recipes/final.yaml", "recipes/cv.yaml"])
def test_the_report_recipes_name_label_0_and_run_with_the_readmes_override(
    clone: Path, recipe: str
) -> None:
    args = readme_command("recipes/final.yaml")
    assert args[:2] == ["run", "recipes/final.yaml"]
    override = args[-2:]
    assert override == ["--set", "augmenters.0={name: oversample, rarest: 3}"]
    command = ["run", recipe, *args[2:-2]]  # the README's command without its last override
    done = run_cli(*command, cwd=clone)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert matches_readme(line, readme_error("error: augmenters[0].copies:")), line
    assert sorted(p.name for p in clone.iterdir()) == ["recipes"]  # no work, no folder

    sets = [value for flag, value in zip(args[2::2], args[3::2], strict=True) if flag == "--set"]
    loaded = load_recipe(recipe, sets)  # the README's command, checked as it starts a run
    checked = check_inputs(loaded.recipe, loaded.registry)
    assert checked.competition.classes == sorted(TEXT_LABELS)
    oversample = (loaded.recipe.augmenters or [])[0]
    assert oversample["name"] == "oversample" and oversample["rarest"] == 3
    assert not oversample.get("copies")
