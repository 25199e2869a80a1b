"""The ``toolkit`` command end to end, in real subprocesses on generated audio."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import toolkit
from tests.conftest import kill_when_paused, run_cli, start_paused, with_pause, write_recipe
from toolkit.data.cache import ClipStore
from toolkit.demo import DemoCompetition
from toolkit.leaderboard import Leaderboard


@pytest.fixture(scope="module")
def first_run(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One completed ``toolkit run`` of the tiny recipe; returns its work directory."""
    work = tmp_path_factory.mktemp("work")
    recipe = write_recipe(work, tiny_competition.root)
    result = run_cli("run", recipe, "--output", work / "run1", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "submission:" in result.stdout
    assert "best validation accuracy:" in result.stdout
    return work


@pytest.mark.slow
def test_run_writes_submission_in_sample_order(
    first_run: Path, tiny_competition: DemoCompetition
) -> None:
    run_dir = first_run / "run1"
    sample = pd.read_csv(tiny_competition.sample_submission, dtype=str)
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    assert list(submission.columns) == list(sample.columns)
    assert list(submission["id"]) == list(sample["id"])
    assert set(submission["category"].astype(int)) <= {0, 1, 2, 3}
    for name in ("recipe.yaml", "metrics.csv", "best.pt", "val_probs.csv", "test_probs.csv"):
        assert (run_dir / name).is_file(), name
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(metrics.columns)
    probs = pd.read_csv(run_dir / "test_probs.csv")
    p = probs[[c for c in probs.columns if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_leaderboard_has_the_run(first_run: Path) -> None:
    board = first_run / "leaderboard.db"
    listed = run_cli("leaderboard", "--db", board, "--json", cwd=first_run)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["kind"] == "run" and row["state"] == "complete" and row["recipe"] == "tiny"
    assert 0.0 <= row["val_accuracy"] <= 1.0
    assert row["backbone"] == "resnet18"
    assert row["epochs"] == 2
    assert Path(row["submission"]).is_file()
    table = run_cli("leaderboard", first_run / "run1", "--db", board, cwd=first_run)
    assert table.returncode == 0, table.stderr
    assert row["id"] in table.stdout


@pytest.mark.slow
def test_second_run_with_new_lr_does_no_feature_work(
    first_run: Path, tiny_competition: DemoCompetition
) -> None:
    cache = first_run / "cache"
    stems_before = ClipStore(cache / "stems").count()
    features_before = ClipStore(cache / "features").count()
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "features").rglob("*.npy")}
    recipe = first_run / "recipe.yaml"
    result = run_cli(
        "run",
        recipe,
        "--output",
        first_run / "run2",
        "--set",
        "train.optimizer.lr=0.001",
        "--set",  # its row goes elsewhere: the first run's leaderboard holds the first run only
        f"output.leaderboard={first_run / 'run2.db'}",
        cwd=first_run,
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads((first_run / "run2" / "stats.json").read_text())
    assert stats["features_computed"] == 0 and stats["stems_computed"] == 0
    assert stats["splits_reused"] == 2
    assert ClipStore(cache / "stems").count() == stems_before == 42
    assert ClipStore(cache / "features").count() == features_before == 42
    assert {p: p.stat().st_mtime_ns for p in (cache / "features").rglob("*.npy")} == stamps
    resolved = (first_run / "run2" / "recipe.yaml").read_text()
    assert "lr: 0.001" in resolved


def test_version_prints_the_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"toolkit {toolkit.__version__}\n"


def help_text(*args: str) -> str:
    """``toolkit ARGS --help`` in a subprocess, 100 columns wide."""
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb"}
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", *args, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ((), ["--version", "--help"]),
        (("run",), ["--no-report", "--help"]),
        (("leaderboard",), ["--desc", "--wide", "--json", "--csv", "--help"]),
        (("new",), ["--help"]),
    ],
)
def test_help_shows_no_value_type_beside_flags(command: tuple[str, ...], flags: list[str]) -> None:
    text = help_text(*command)
    assert "<bool>" not in text
    for flag in flags:  # the flag (and its negative), then straight its help
        line = next(line for line in text.splitlines() if f"│ {flag} " in line)
        assert re.match(rf"│ {flag}( +--\w+)? +[A-Z][a-z]", line), line
    if command == ("run",):  # options that take a value still name it
        assert re.search(r"│ --output +-o +<path> +Run directory", text)
        assert re.search(r"│ --set +-s +KEY=VALUE +Override a recipe key", text)


def test_plugins_json_lists_builtins() -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["backbones"]["resnet18"]["source"] == "builtin"
    assert listing["backbones"]["timm"]["source"] == "builtin"
    assert listing["feature_extractors"]["mel"]["source"] == "builtin"
    for kind, entries in listing.items():  # every built-in says its own version
        for name, entry in entries.items():
            assert entry["version"].strip() and entry["version"] != "builtin", (kind, name)
    assert {"oversample", "time_mask", "freq_mask", "mixup"} <= set(listing["augmenters"])
    assert {"none", "spleeter"} <= set(listing["separators"])


@pytest.mark.slow
def test_plugin_file_in_recipe_registers_a_backbone_the_run_uses(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    made = run_cli("new", "backbone", "tinynet", "--dir", tmp_path, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    recipe = write_recipe(tmp_path, tiny_competition.root, extra="plugins: [tinynet.py]\n")
    listed = run_cli("plugins", "--json", "--recipe", recipe, cwd=tmp_path)
    tinynet = json.loads(listed.stdout)["backbones"]["tinynet"]
    assert Path(tinynet["source"]) == tmp_path / "tinynet.py" and tinynet["version"] == "1"
    result = run_cli(
        "run",
        recipe,
        "--set",
        "model.backbone={name: tinynet, width: 12}",
        "--set",
        "train.epochs=1",
        "--output",
        tmp_path / "run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert state["backbone"] == {"name": "tinynet", "width": 12}
    assert state["state_dict"]["backbone.head.weight"].shape == (4, 12)
    rows = json.loads(run_cli("leaderboard", "--db", tmp_path / "leaderboard.db", "--json").stdout)
    assert rows[0]["backbone"] == "tinynet"


@pytest.mark.slow
def test_same_name_twice_is_an_error_naming_both(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    (tmp_path / "dup.py").write_text(
        "from toolkit import hookimpl\n"
        "from toolkit.plugins.backbones.resnet import resnet18\n"
        "@hookimpl\n"
        "def register_backbones(register):\n"
        "    register('resnet18', resnet18)\n"
    )
    recipe = write_recipe(tmp_path, tiny_competition.root, extra="plugins: [dup.py]\n")
    result = run_cli("run", recipe, cwd=tmp_path)
    assert result.returncode == 2
    assert "registered twice" in result.stderr
    assert "builtin" in result.stderr and "dup.py" in result.stderr
    assert "Traceback" not in result.stderr


def copy_competition(comp: DemoCompetition, target: Path) -> Path:
    """A private copy of the competition folder, for breaking it."""
    shutil.copytree(comp.root, target)
    return target


def one_line_error(result: object) -> str:
    """The error line of a failed command, checked to be one line and no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    return stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["corrupt", "random_mp3", "damaged_mp3", "empty", "missing"])
def test_bad_clip_gives_one_line_error(
    damage: str, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    root = copy_competition(tiny_competition, tmp_path / "comp")
    victim = sorted((root / "train").iterdir())[5]
    if damage.endswith("mp3"):  # the MP3 decoder prints notes on stderr by itself: silenced
        victim = next(p for p in sorted((root / "train").iterdir()) if p.suffix == ".mp3")
        good = victim.read_bytes()
        noise = np.random.default_rng(1).bytes(4000)
        half = len(good) // 2
        victim.write_bytes(
            noise * 5 if damage == "random_mp3" else good[:half] + noise + good[half:]
        )
    elif damage == "corrupt":
        victim.write_bytes(b"ID3\x04\x00 this is not audio" * 10)
    elif damage == "empty":
        victim.unlink()
        victim = victim.with_suffix(".wav")
        import soundfile as sf

        sf.write(victim, np.zeros((0, 2), dtype=np.float32), 44100)
    else:
        victim.unlink()
    recipe = write_recipe(tmp_path, root)
    message = one_line_error(run_cli("run", recipe, "--output", tmp_path / "out", cwd=tmp_path))
    # the run never started training: no leaderboard row, no stub of a run folder
    assert not Leaderboard(tmp_path / "leaderboard.db").rows()
    assert not (tmp_path / "out").exists()
    if damage == "missing":
        assert repr(victim.stem) in message and "no audio file" in message
    elif damage == "random_mp3":
        assert victim.name in message and "not an audio file in a known format" in message
    elif damage == "damaged_mp3":
        assert victim.name in message and "damaged MP3 stream (Illegal Audio-MPEG-Header" in message
    else:
        assert victim.name in message
        assert ("empty" in message) if damage == "empty" else ("cannot decode" in message)


@pytest.mark.slow
def test_bad_clip_keeps_finished_work(tiny_competition: DemoCompetition, tmp_path: Path) -> None:
    root = copy_competition(tiny_competition, tmp_path / "comp")
    victim = sorted((root / "train").iterdir())[-1]
    victim.write_bytes(b"garbage" * 100)
    recipe = write_recipe(tmp_path, root, extra="")
    recipe.write_text(recipe.read_text().replace("cache: {dir:", "cache: {batch_size: 4, dir:"))
    one_line_error(run_cli("run", recipe, cwd=tmp_path))
    kept = ClipStore(tmp_path / "cache" / "stems").count()
    assert kept >= 28  # every batch before the bad clip's is cached
    # a study meets the bad clip before its first trial: again no row and no run folder
    study = recipe.with_name("study.yaml")
    study.write_text(recipe.read_text() + "ensemble: {size: 2}\n")
    one_line_error(run_cli("run", study, "--output", tmp_path / "study", cwd=tmp_path))
    assert not (tmp_path / "study").exists()
    assert not Leaderboard(tmp_path / "leaderboard.db").rows()


@pytest.mark.slow
def test_recipe_typo_and_unknown_plugin(tiny_competition: DemoCompetition, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    typo = one_line_error(run_cli("run", recipe, "--set", "train.epocs=3", cwd=tmp_path))
    assert typo.startswith("error: --set train.epocs=3: train.epocs: unknown key")  # not the file
    assert "'epochs'" in typo and str(recipe) not in typo
    unknown = one_line_error(
        run_cli("run", recipe, "--set", "model.backbone.name=resnet81", cwd=tmp_path)
    )
    assert "model.backbone" in unknown and "'resnet81'" in unknown and "resnet18" in unknown


@pytest.mark.slow
def test_unexpected_failure_is_one_line_with_the_traceback_in_a_file(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    (tmp_path / "broken.py").write_text(
        "from torch import nn\n"
        "from toolkit import hookimpl\n"
        "class Broken(nn.Module):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(1, num_classes)\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('boom in forward')\n"
        "@hookimpl\n"
        "def register_backbones(register):\n"
        "    register('broken', Broken)\n"
    )
    recipe = write_recipe(tmp_path, tiny_competition.root, extra="plugins: [broken.py]\n")
    result = run_cli("run", recipe, "--set", "model.backbone={name: broken}", cwd=tmp_path)
    assert result.returncode == 1
    stderr = result.stderr.strip()
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert f"backbone plugin 'broken' ({tmp_path / 'broken.py'}) failed: boom in forward" in stderr
    log = Path(stderr.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "boom in forward" in log.read_text()
    rows = json.loads(run_cli("leaderboard", "--db", tmp_path / "leaderboard.db", "--json").stdout)
    assert [r["state"] for r in rows] == ["failed"]


@pytest.mark.slow
def test_a_killed_run_is_marked_interrupted_by_the_next_run(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root))
    board = Leaderboard(tmp_path / "leaderboard.db")
    marker = tmp_path / "paused"
    proc = start_paused(["run", recipe, "--output", tmp_path / "r"], marker, 1, cwd=tmp_path)
    kill_when_paused(proc, marker)  # in its first training step
    assert [r.state for r in board.rows()] == ["running"]
    again = run_cli("run", recipe, "--output", tmp_path / "r", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(r.state for r in board.rows()) == ["complete", "interrupted"]


@pytest.mark.slow
def test_separate_resumes_after_a_kill_without_redoing_clips(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root))
    recipe.write_text(
        recipe.read_text()
        .replace("separator: {name: none}", "separator: {name: pause}")
        .replace("cache: {dir:", "cache: {batch_size: 2, dir:")
    )
    stems = ClipStore(tmp_path / "cache" / "stems")
    marker = tmp_path / "paused"
    proc = start_paused(["separate", recipe], marker, 3, cwd=tmp_path)  # at its third batch
    kill_when_paused(proc, marker)
    done_before = stems.count()
    assert done_before == 4  # two batches of two
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "stems").rglob("*.npy")}
    result = run_cli("separate", recipe, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{42 - done_before} computed, {done_before} already cached" in result.stdout
    assert stems.count() == 42
    for path, stamp in stamps.items():
        assert path.stat().st_mtime_ns == stamp  # finished clips were not redone


LOADED_AT_EXIT = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('heavy:', sorted(m for m in ('torch', 'sklearn', 'optuna')"
    " if m in sys.modules)))\n"
    "sys.argv = ['toolkit', *sys.argv[1:]]\n"
    "from toolkit.cli.app import main\n"
    "main()\n"
)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "nope.yaml"],
        ["run", "{recipe}", "--set", "train.epoch=3"],
        ["worker", "{recipe}", "--set", "model.backbone.name=resnet81"],
        ["separate", "{recipe}", "--set", "separator.name=spleter"],
        ["plugins"],
    ],
)
def test_a_mistake_in_a_recipe_is_told_before_torch_loads(
    args: list[str], tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    argv = [a.format(recipe=recipe) for a in args]
    env = {**os.environ, "TOOLKIT_NO_PROGRESS": "1", "TOOLKIT_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [sys.executable, "-c", LOADED_AT_EXIT, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == (0 if args == ["plugins"] else 2), done.stderr
    assert "heavy: []" in done.stdout, done.stdout


@pytest.mark.slow
def test_first_line_says_where_data_cache_and_output_are(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    recipe = write_recipe(project / "recipes", tiny_competition.root)
    recipe.write_text(
        recipe.read_text()
        .replace(f"cache: {{dir: {project / 'recipes' / 'cache'}}}\n", "")
        .replace(f"output: {{leaderboard: {project / 'recipes' / 'leaderboard.db'}}}\n", "")
        .replace("epochs: 2", "epochs: 1")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_cli("run", recipe, "--no-report", cwd=elsewhere, progress=True)
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    runs = project / "runs"
    assert first == (
        f"data {tiny_competition.root} · cache {runs / '.cache'} · output {runs / 'tiny'}"
    )
    assert not list(elsewhere.iterdir())  # nothing made in the current folder
    assert (runs / "leaderboard.db").is_file() and (runs / "tiny" / "submission.csv").is_file()
    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert printed["submission"] == str(runs / "tiny" / "submission.csv")  # absolute


# ------------------------------------------------- the competition's own shapes
@pytest.fixture(scope="module")
def shapes_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder whose cache the competitions below share (their audio is the same)."""
    return tmp_path_factory.mktemp("shapes")


def competition_variant(
    comp: DemoCompetition, root: Path, train: pd.DataFrame, sample: pd.DataFrame
) -> Path:
    """The tiny competition's audio with another train CSV and sample submission."""
    root.mkdir(parents=True)
    for folder in ("train", "test"):
        (root / folder).symlink_to(comp.root / folder, target_is_directory=True)
    train.to_csv(root / "train.csv", index=False)
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root


def run_in_process(work: Path, root: Path, name: str, *sets: str) -> Path:
    """``toolkit run`` (one epoch, no report) in this process; returns the run directory."""
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    recipe = write_recipe(work, root, name=f"{name}.yaml")
    args = ["run", str(recipe), "--output", str(work / name), "--no-report"]
    for override in ("train.epochs=1", *sets):
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return work / name


def probability_columns(table: pd.DataFrame) -> list[str]:
    """The class names of a ``*_probs.csv`` table, in its column order."""
    return [c.removeprefix("p_") for c in table.columns if c.startswith("p_")]


@pytest.mark.slow
def test_sample_with_a_column_per_class_gets_probabilities(
    tiny_competition: DemoCompetition, shapes_work: Path
) -> None:
    train = pd.read_csv(tiny_competition.root / "train.csv", dtype=str)
    ids = list(pd.read_csv(tiny_competition.sample_submission, dtype=str)["id"])[::-1]
    sample = pd.DataFrame({"id": ids, **{k: "0.25" for k in ("2", "0", "3", "1")}})
    root = competition_variant(tiny_competition, shapes_work / "probs", train, sample)
    run_dir = run_in_process(shapes_work, root, "probs")

    submission = pd.read_csv(run_dir / "submission.csv", dtype={"id": str})
    assert list(submission.columns) == ["id", "2", "0", "3", "1"]  # the sample's, in its order
    assert list(submission["id"]) == ids
    probs = submission[["2", "0", "3", "1"]].to_numpy()
    assert probs.dtype == np.float64 and ((probs > 0) & (probs < 1)).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    test_probs = pd.read_csv(run_dir / "test_probs.csv", dtype={"id": str})
    assert list(test_probs["id"]) == ids and probability_columns(test_probs) == ["0", "1", "2", "3"]
    for column in ("2", "0", "3", "1"):  # each column holds its own class's probability
        np.testing.assert_allclose(submission[column], test_probs[f"p_{column}"], rtol=1e-6)


@pytest.mark.slow
def test_text_labels_and_own_column_names(
    tiny_competition: DemoCompetition, shapes_work: Path
) -> None:
    names = {"0": "none", "1": "male", "2": "female", "3": "several"}
    original = pd.read_csv(tiny_competition.root / "train.csv", dtype=str)
    train = pd.DataFrame({"voice": original["category"].map(names), "clip": original["id"]})
    ids = list(pd.read_csv(tiny_competition.sample_submission, dtype=str)["id"])
    sample = pd.DataFrame({"clip": ids, "voice": "none"})
    root = competition_variant(tiny_competition, shapes_work / "text", train, sample)
    run_dir = run_in_process(  # the tiny recipe's copies of label 0: of "none", by its name
        shapes_work,
        root,
        "text",
        "data.id_column=clip",
        "data.label_column=voice",
        "augmenters.0={name: oversample, copies: {none: 1}}",
    )

    classes = ["female", "male", "none", "several"]  # the train CSV's labels, sorted
    assert torch.load(run_dir / "best.pt", weights_only=True)["classes"] == classes
    test_probs = pd.read_csv(run_dir / "test_probs.csv", dtype={"id": str})
    assert probability_columns(test_probs) == classes
    submission = pd.read_csv(run_dir / "submission.csv", dtype=str)
    assert list(submission.columns) == ["clip", "voice"] and list(submission["clip"]) == ids
    predicted = test_probs[[f"p_{c}" for c in classes]].to_numpy().argmax(axis=1)
    assert list(submission["voice"]) == [classes[i] for i in predicted]
    val = pd.read_csv(run_dir / "val_probs.csv", dtype=str)
    truth = dict(zip(train["clip"], train["voice"], strict=True))
    assert list(val["label"]) == [truth[i] for i in val["id"]]  # held-out clips, true labels
    assert set(val["label"]) <= set(classes)
