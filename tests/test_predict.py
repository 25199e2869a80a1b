"""``toolkit predict`` and ``toolkit.predict``: a finished run's submission on new clips.

Two tiny finished runs: a study whose submission is an ensemble of refit trials
bagged over seeds, predicted with a test-time augmenter, and a plain run
cross-validated over two folds. On their own test clips predict gives their
``test_probs`` bit for bit; new clips get a valid submission; a damaged clip or
model file is a one-line error naming it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import toolkit
from tests.conftest import assert_predicts_own_test_probs, finished_run, one_error_line, run_cli
from toolkit.demo import DemoCompetition, make_demo_competition
from toolkit.deploy.chosen import chosen_models
from toolkit.errors import DataError, ModelError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folds_run(tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain run cross-validated over two folds (its models: each fold's network)."""
    work = tmp_path_factory.mktemp("folds")
    return finished_run(work, tiny_competition.root, "", "split.folds=2")


@pytest.fixture(scope="module")
def new_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of clips no run has seen (another demo's test clips)."""
    other = make_demo_competition(
        tmp_path_factory.mktemp("new") / "comp", n_train=8, n_test=7, seed=11, duration=1.5
    )
    return other.root / "test"


def _test_probs(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "test_probs.csv", dtype={"id": str})


def _probability_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str})


def test_the_ensemble_on_its_own_test_clips_gives_its_test_probs_bit_for_bit(
    tiny_study: Path, tiny_competition: DemoCompetition
) -> None:
    assert all(m.folder.path.name == "refit" for m in chosen_models(tiny_study).models)
    sample = tiny_competition.root / "sample_submission.csv"
    assert len(assert_predicts_own_test_probs(tiny_study, sample)) >= 1


def test_a_cross_validated_run_through_the_cli_gives_its_test_probs_bit_for_bit(
    folds_run: Path, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    assert (folds_run / "fold2" / "best.pt").is_file()
    output = tmp_path / "probs.csv"
    done = run_cli(
        "predict", folds_run, tiny_competition.root / "test", "--probabilities", "-o", output
    )
    assert done.returncode == 0, done.stderr
    assert f"probabilities: {output} ({tiny_competition.n_test} clips" in done.stdout
    got, expected = _probability_table(output), _test_probs(folds_run)
    # a folder's clips come in the order of their names, the run's in the sample's
    got = got.set_index("id").loc[list(expected["id"])].reset_index()
    assert np.array_equal(got.drop(columns="id").to_numpy(), expected.drop(columns="id").to_numpy())


def test_new_clips_get_a_submission_with_the_runs_columns(
    tiny_study: Path, new_clips: Path, tmp_path: Path
) -> None:
    output = tmp_path / "submission.csv"
    done = run_cli("predict", tiny_study, new_clips, "--output", output)
    assert done.returncode == 0, done.stderr
    submission = pd.read_csv(output, dtype=str)
    run_submission = pd.read_csv(tiny_study / "submission.csv", dtype=str)
    assert list(submission.columns) == list(run_submission.columns)
    id_column, label = submission.columns
    assert list(submission[id_column]) == sorted(p.stem for p in new_clips.iterdir())
    classes = [c.removeprefix("p_") for c in _test_probs(tiny_study).columns if c != "id"]
    assert set(submission[label]) <= set(classes)
    probs = toolkit.predict(tiny_study, new_clips).probabilities
    assert probs.shape == (len(submission), len(classes))
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_a_damaged_clip_is_one_line_naming_it(
    tiny_study: Path, new_clips: Path, tmp_path: Path
) -> None:
    clips = tmp_path / "clips"
    shutil.copytree(new_clips, clips)
    damaged = sorted(clips.iterdir())[2]
    damaged.write_bytes(b"not audio at all" * 64)
    done = run_cli("predict", tiny_study, clips, "-o", tmp_path / "s.csv")
    assert done.returncode == 2
    assert damaged.name in one_error_line(done.stderr)
    assert not (tmp_path / "s.csv").exists()


def test_a_missing_or_damaged_model_file_is_one_line_naming_it(
    tiny_study: Path, new_clips: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_study, run)
    weights = sorted(run.rglob("best.pt"))
    chosen = [w for w in weights if "refit" in str(w)] or weights
    chosen[0].write_bytes(chosen[0].read_bytes()[:300])
    with pytest.raises(ModelError, match=f"{chosen[0]}: damaged model file"):
        toolkit.predict(run, new_clips)
    chosen[0].unlink()
    done = run_cli("predict", run, new_clips, "-o", tmp_path / "s.csv")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert str(chosen[0]) in line and "model file missing" in line


def test_no_clips_is_one_line(tiny_study: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        toolkit.predict(tiny_study, tmp_path / "empty")
    done = run_cli("predict", tiny_study, tmp_path / "nowhere.csv")
    assert done.returncode == 2
    assert "nowhere.csv" in one_error_line(done.stderr)
