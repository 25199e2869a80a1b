"""``toolkit predict`` on a competition whose ids are file names (``te_00003.ogg``): a folder's
clips come out under the competition's own ids, from a run and from its export; a CSV of ids
keeps its ids as written; and the submission goes, unless ``--output`` says otherwise, to
``RUN_DIR/predictions/NAME.csv``, never into the current folder, and the command says where."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import finished_run, run_cli
from toolkit.demo import DemoCompetition

pytestmark = pytest.mark.slow


def _name_ids_by_file(csv: Path, audio: Path) -> None:
    """Rewrite ``csv``'s ids as the names of their files in ``audio`` (extension included)."""
    names = {path.stem: path.name for path in audio.iterdir()}
    frame = pd.read_csv(csv, dtype=str)
    frame["id"] = [names[i] for i in frame["id"]]
    frame.to_csv(csv, index=False)


@pytest.fixture(scope="module")
def file_name_run(
    tiny_competition: DemoCompetition, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A finished run on a copy of the tiny competition whose ids are its clips' file names."""
    root = tmp_path_factory.mktemp("file-names") / "competition"
    shutil.copytree(tiny_competition.root, root)
    _name_ids_by_file(root / "train.csv", root / "train")
    _name_ids_by_file(root / "sample_submission.csv", root / "test")
    return finished_run(root.parent / "work", root, "")


def _competition(run: Path) -> Path:
    return run.parent.parent / "competition"


def _ids(path: Path) -> list[str]:
    return list(pd.read_csv(path, dtype=str)["id"])


def test_a_folder_of_clips_gets_the_competitions_file_name_ids_in_the_run_folder(
    file_name_run: Path, tmp_path: Path
) -> None:
    test = _competition(file_name_run) / "test"
    assert all("." in i for i in _ids(file_name_run / "submission.csv"))
    done = run_cli("predict", file_name_run, test, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = file_name_run / "predictions" / "test.csv"
    assert done.stdout.startswith(f"submission: {written} (10 clips"), done.stdout
    assert _ids(written) == sorted(p.name for p in test.iterdir())
    assert sorted(_ids(written)) == sorted(_ids(file_name_run / "submission.csv"))
    assert list(tmp_path.iterdir()) == []  # nothing in the current folder


def test_a_csv_of_ids_keeps_its_ids_as_written(file_name_run: Path, tmp_path: Path) -> None:
    sample = _competition(file_name_run) / "sample_submission.csv"
    done = run_cli("predict", file_name_run, sample, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = file_name_run / "predictions" / "sample_submission.csv"
    assert f"submission: {written} (10 clips" in done.stdout
    assert _ids(written) == _ids(sample)
    assert list(tmp_path.iterdir()) == []


def test_an_export_keeps_the_file_name_ids(file_name_run: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    done = run_cli("export", file_name_run, export, "--no-wheels", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    test = _competition(file_name_run) / "test"
    done = run_cli("predict", export, test, "--probabilities", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = export / "predictions" / "test_probabilities.csv"
    assert done.stdout.startswith(f"probabilities: {written} (10 clips"), done.stdout
    assert _ids(written) == sorted(p.name for p in test.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
