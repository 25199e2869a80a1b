"""A device this machine does not have is bad input: one line naming the setting or flag and
the devices here, exit 2, before any work (no clip decoded, no run folder, no leaderboard row).

Run as real subprocesses on a machine without CUDA or MPS (skipped where torch sees one).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import finished_run, one_error_line, run_cli, write_recipe
from toolkit.demo import DemoCompetition
from toolkit.devices import devices_here

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(devices_here() != ["cpu"], reason="this machine has a device besides cpu"),
]

MISSING = ["cuda", "cuda:3", "mps"]
"""Devices a CPU-only machine lacks: CUDA, a fourth GPU, Apple's."""


def _nothing_written(work: Path) -> None:
    """No run folder, cache or leaderboard appeared in ``work`` (only the recipe is there)."""
    assert sorted(p.name for p in work.iterdir()) == ["recipe.yaml"]


@pytest.mark.parametrize("name", MISSING)
def test_run_on_a_missing_device_is_one_line_before_any_work(
    name: str, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    done = run_cli(
        "run", recipe, "--set", f"train.device={name}", "--output", tmp_path / "run", cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        f"error: train.device: {name} is not available on this machine (devices here: cpu); "
        "use --set train.device=cpu"
    )
    _nothing_written(tmp_path)


def test_a_device_name_torch_does_not_know_is_one_line(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    text = recipe.read_text().replace("  epochs: 2\n", "  epochs: 2\n  device: gpu\n")
    recipe.write_text(text)
    done = run_cli("run", recipe, "--output", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        "error: train.device: 'gpu' is not a device name (devices here: cpu); "
        "use --set train.device=cpu"
    )
    _nothing_written(tmp_path)


def test_a_worker_and_a_profile_name_their_device_key(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    study = """
search:
  n_trials: 2
  profiles:
    fast: {train: {epochs: 1, device: cuda}}
"""
    recipe = write_recipe(tmp_path, tiny_competition.root, study)
    done = run_cli("worker", recipe, "--output", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        "error: search.profiles.fast.train.device: cuda is not available on this machine "
        "(devices here: cpu); use --set search.profiles.fast.train.device=cpu"
    )
    _nothing_written(tmp_path)


@pytest.fixture(scope="module")
def plain_run(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished plain run of the tiny recipe (its row in ``leaderboard.db`` beside it)."""
    return finished_run(tmp_path_factory.mktemp("device"), tiny_competition.root, "")


@pytest.mark.parametrize("name", MISSING)
def test_predict_on_a_missing_device_is_one_line_before_any_clip_is_decoded(
    name: str, plain_run: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    output = tmp_path / "submission.csv"
    cache = tmp_path / "cache"
    done = run_cli(
        "predict", plain_run, tiny_competition.root / "test", "--device", name,
        "-o", output, "--cache", cache,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        f"error: --device: {name} is not available on this machine (devices here: cpu); "
        "use --device cpu"
    )
    assert not output.exists() and not cache.exists()


def test_reproducing_a_row_trained_on_cuda_is_one_line_before_any_work(plain_run: Path) -> None:
    board = plain_run.parent / "leaderboard.db"
    with sqlite3.connect(board) as db:
        row_id, text = db.execute("SELECT id, provenance FROM entries").fetchone()
        provenance = json.loads(text)
        provenance["recipe"].setdefault("train", {})["device"] = "cuda"
        changed = (json.dumps(provenance), row_id)
        db.execute("UPDATE entries SET provenance = ? WHERE id = ?", changed)
    before = sorted(p.relative_to(plain_run) for p in plain_run.rglob("*"))
    done = run_cli("reproduce", row_id, "--db", board)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == (
        "error: train.device: cuda is not available on this machine (devices here: cpu); "
        f"leaderboard row {row_id} trained on it; reproduce it on a machine with it"
    )
    assert sorted(p.relative_to(plain_run) for p in plain_run.rglob("*")) == before
    with sqlite3.connect(board) as db:
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone() == (1,)
