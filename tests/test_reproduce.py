"""Runs reproduce: same recipe and seed, same numbers in any process; ``toolkit reproduce``."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli, write_recipe
from tests.test_search import search_recipe
from toolkit.demo import DemoCompetition
from toolkit.leaderboard.store import Leaderboard, Row
from toolkit.recipe.loading import load_recipe
from toolkit.workflow import run

pytestmark = pytest.mark.slow  # every test trains

MODEL_FILES = ("metrics.csv", "val_probs.npy", "test_probs.npy")


def assert_same_model(a: Path, b: Path) -> None:
    """Two model folders hold identical metrics and probabilities."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"))
    for name in ("val_probs.npy", "test_probs.npy"):
        np.testing.assert_array_equal(np.load(a / name), np.load(b / name))


@pytest.fixture(scope="module")
def work(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder with the tiny recipe (mixup and time masks: augmenter draws count too)."""
    directory = tmp_path_factory.mktemp("repro")
    write_recipe(directory, tiny_competition.root)
    return directory


def test_same_recipe_same_numbers_in_one_process_and_in_another(work: Path) -> None:
    recipe = work / "recipe.yaml"
    first = run(load_recipe(recipe, output=work / "a"))
    torch.randn(1000)  # whatever ran before must not change the next run
    np.random.rand(10)
    second = run(load_recipe(recipe, output=work / "b"))
    assert_same_model(first.run_dir, second.run_dir)
    other = run_cli("run", recipe, "--output", work / "c", cwd=work)
    assert other.returncode == 0, other.stderr
    assert_same_model(first.run_dir, work / "c")
    # and a different seed gives different numbers, so the check above can fail
    third = run(load_recipe(recipe, ["train.seed=1"], output=work / "d"))
    assert not np.array_equal(
        np.load(first.run_dir / "val_probs.npy"), np.load(third.run_dir / "val_probs.npy")
    )


def test_row_records_what_reproduces_it(work: Path, tiny_competition: DemoCompetition) -> None:
    result = run(load_recipe(work / "recipe.yaml", output=work / "rec"))
    row = Leaderboard(work / "leaderboard.db").get(result.leaderboard_id)
    prov = row.provenance
    assert prov["metric"] == "accuracy"
    assert prov["dir"] == str((work / "rec").resolve())
    assert prov["recipe"]["data"]["root"] == str(tiny_competition.root.resolve())
    assert prov["recipe"]["train"]["seed"] == 0
    assert prov["recipe"]["features"]["n_mels"] == 32  # the resolved recipe, defaults filled in
    assert prov["plugins"]["backbones/resnet18"] == {
        "source": "builtin",
        "source_version": "builtin",
        "version": "1",
    }
    assert set(prov["plugins"]) == {
        "separators/none",
        "feature_extractors/mel",
        "backbones/resnet18",
        "augmenters/oversample",
        "augmenters/time_mask",
        "augmenters/mixup",
    }
    versions = prov["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert {"torchaudio", "timm", "numpy", "toolkit"} <= set(versions)


def test_reproduce_command_matches_then_detects_a_change(work: Path) -> None:
    result = run(load_recipe(work / "recipe.yaml", output=work / "orig"))
    db = work / "leaderboard.db"
    again = run_cli("reproduce", result.leaderboard_id, "--db", db, cwd=work)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "match: the metrics and probabilities are identical" in again.stdout
    assert "compared: metrics.csv, val_probs.npy, test_probs.npy" in again.stdout
    name = result.leaderboard_id.rsplit("/", 1)[-1]
    new_dir = work / "orig" / "reproduce" / f"{name}-again1"  # its key's folder
    assert f"as {result.leaderboard_id}-again1 in {new_dir}" in again.stdout
    assert_same_model(work / "orig", new_dir)
    rows = {r.id: r for r in Leaderboard(db).rows()}
    reproductions = [r for r in rows.values() if r.kind == "reproduction"]
    assert rows[result.leaderboard_id].kind == "run"  # told apart from its reproduction
    assert [r.params["reproduces"] for r in reproductions] == [result.leaderboard_id]

    probs = np.load(work / "orig" / "val_probs.npy")
    probs[0, 0] += 0.25  # the original's numbers no longer match
    np.save(work / "orig" / "val_probs.npy", probs)
    changed = run_cli("reproduce", result.leaderboard_id, "--db", db, cwd=work)
    assert changed.returncode == 1
    assert "differs: val_probs.npy: largest difference 0.25" in changed.stdout
    assert "match: no" in changed.stdout


def test_trial_and_seed_copy_rerun_alone_give_the_study_numbers(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = search_recipe(tmp_path, tiny_competition.root, n_trials=2, pruner="{name: none}")
    study = run_cli(
        "run", recipe, "--output", tmp_path / "run", "--set", "ensemble.seeds=2", cwd=tmp_path
    )
    assert study.returncode == 0, study.stderr
    board = Leaderboard(tmp_path / "leaderboard.db")
    complete = [r for r in board.rows() if r.state == "complete"]
    seed_copies = [r for r in complete if r.kind == "seed"]
    plain_trials = [r for r in complete if r.kind == "trial"]
    assert seed_copies and plain_trials, [r.id for r in complete]
    for row in (plain_trials[-1], seed_copies[0]):
        rerun = run_cli(
            "reproduce", row.id, "--db", tmp_path / "leaderboard.db", "--output",
            tmp_path / f"again-{row.id.rsplit('/', 1)[-1]}", cwd=tmp_path,
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "match: the metrics and probabilities are identical" in rerun.stdout
        assert_same_model(Path(row.provenance["dir"]), tmp_path / f"again-{row.id.rsplit('/')[-1]}")


def test_reproduce_refuses_ensembles_and_unknown_ids(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    board = Leaderboard(tmp_path / "lb.db")
    unknown = run_cli("reproduce", "tiny/r0", "--db", tmp_path / "lb.db", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "unknown id 'tiny/r0'" in unknown.stderr and "Traceback" not in unknown.stderr
    board.upsert(Row("tiny/e1", "ensemble", "tiny", str(tmp_path), "complete",
                     members=[{"id": "tiny/t0000", "weight": 1.0}]))  # fmt: skip
    refused = run_cli("reproduce", "tiny/e1", "--db", tmp_path / "lb.db", cwd=tmp_path)
    assert refused.returncode == 2
    assert "tiny/e1 is an ensemble; reproduce its members one by one: tiny/t0000" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
