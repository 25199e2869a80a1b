"""The typed records of what a run leaves: ``model.json`` of every kind of model and
``ensemble.json`` of every kind of ensemble, written and read back; ``ensemble.json`` files
written before the record had a version (tests/data/ensemble_v1, made by the toolkit before
the records existed) still read and predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_predicts_own_test_probs, one_error_line, run_cli
from toolkit import predict
from toolkit.demo import DemoCompetition
from toolkit.deploy.chosen import chosen_models
from toolkit.errors import ModelError
from toolkit.leaderboard.store import Leaderboard
from toolkit.report.collect import collect
from toolkit.runs.model_key import ModelKey
from toolkit.runs.records import (
    ENSEMBLE_VERSION,
    EnsembleRecord,
    Member,
    ModelRecord,
    read_ensemble,
    read_model,
    write_ensemble,
    write_model,
)
from toolkit.runs.run_dir import ENSEMBLE, RunDir

OLD = Path(__file__).parent / "data" / "ensemble_v1"
"""``ensemble.json`` files (and what predict reads of their runs) written by the toolkit
before records: ``seeds`` (greedy, seed bags, refit), ``stack`` (``method: stack``) and
``pseudo`` (2 folds, a pseudo-label round)."""

KEYS = {
    "run": ModelKey.plain_run("tiny"),
    "trial": ModelKey.of_trial("study", 3),
    "seed": ModelKey.of_trial("study", 3).seed_copy(1),
    "bag": ModelKey.of_trial("study", 3).bag(),
    "refit": ModelKey.of_trial("study", 3).refit(),
    "pseudo": ModelKey.of_trial("study", 3).pseudo_labelled(),
    "reproduction": ModelKey.of_trial("study", 3).reproduction(1),
}


def saved_model(folder: RunDir, validated: bool = True) -> None:
    """A model's probabilities and history, as a trained model leaves them."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=4)
    if validated:
        folder.write_probabilities("val", list("abcd"), probs, ["x", "y", "z"], np.arange(4) % 3)
    folder.write_probabilities("test", list("efgh"), probs, ["x", "y", "z"])
    folder.write_history([{"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0}])


@pytest.mark.parametrize("kind", [*KEYS, "fold"])
def test_a_model_record_of_every_kind_is_written_and_read_back(kind: str, tmp_path: Path) -> None:
    key = KEYS.get(kind, KEYS["trial"])
    folder = RunDir(key.folder(tmp_path)).create()
    if kind == "fold":
        folder = folder.fold(2).create()
    saved_model(folder, validated=kind != "refit")
    record = ModelRecord(
        id=key.id,
        kind=key.kind,
        fold=2 if kind == "fold" else None,
        metric="log_loss",
        metric_value=None if kind == "refit" else 0.75,
        best_epoch=1,
        epochs=1,
        seconds=2.5,
        folds=2 if kind == "trial" else None,
        fold_values=[0.5, 1.0] if kind == "trial" else [],
        members=[Member(id=f"study/t0003-s{i}", weight=0.5) for i in (1, 2)]
        if kind == "bag"
        else [],
    )
    written = write_model(folder, record)
    assert written.files.history == "metrics.csv"
    assert ("val_probs.npy" in written.files.probabilities) == (kind != "refit")
    again = read_model(folder)
    assert again == written and again.key == key and again.validated == (kind != "refit")
    assert json.loads(folder.file("model.json").read_text())["best_epoch"] == 1


def test_a_model_folder_of_an_earlier_toolkit_reads_as_its_files(tmp_path: Path) -> None:
    key = ModelKey.of_trial("study", 0)
    folder = RunDir(key.folder(tmp_path)).create()
    assert read_model(folder, key) is None  # nothing there: not a finished model
    saved_model(folder)
    old = read_model(folder, key)
    assert old is not None and old.id == key.id and old.kind == "trial"
    assert old.best_epoch is None and old.validated and old.files.history == "metrics.csv"
    folder.file("model.json").write_text("{")
    with pytest.raises(ModelError, match="model.json: damaged model record"):
        read_model(folder, key)


@pytest.mark.slow
def test_a_studys_models_leave_records_their_rows_agree_with(tiny_study: Path) -> None:
    board = Leaderboard(tiny_study.parent / "leaderboard.db")
    rows = [r for r in board.rows(run_dir=tiny_study) if r.kind != "ensemble"]
    assert {r.kind for r in rows} >= {"trial", "seed", "bag", "refit"}
    for row in rows:
        key = ModelKey.parse(row.id)
        record = read_model(RunDir(key.folder(tiny_study)))
        assert record is not None and record.id == row.id and record.kind == row.kind
        assert record.best_epoch == row.best_epoch and record.metric_value == row.metric_value
        assert str(RunDir(key.folder(tiny_study)).file("submission.csv").resolve()) == (
            row.submission
        )
        if key.kind == "bag":
            assert [m.model_dump() for m in record.members] == row.members
        else:
            assert record.files.weights == ["best.pt"] and record.epochs == row.epochs


@pytest.mark.slow
def test_the_report_reads_best_epochs_from_the_records_not_the_weights(
    tiny_study: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(tiny_study, copy)
    for weights in copy.rglob("best.pt"):
        weights.unlink()  # the report must not need them
    contents = collect(copy, db=tmp_path / "no-rows.db")  # no rows: the records alone
    trials = {h.name: h.best_epoch for h in contents.histories}
    assert trials and all(epoch is not None for epoch in trials.values())
    for name, epoch in trials.items():
        record = read_model(RunDir(copy / "trials" / name))
        assert record is not None and epoch == record.best_epoch


@pytest.mark.parametrize("name", ["seeds", "stack", "pseudo"])
def test_an_ensemble_json_without_a_version_reads_as_version_1_and_writes_as_2(
    name: str, tmp_path: Path
) -> None:
    original = json.loads((OLD / name / ENSEMBLE).read_text())
    assert "version" not in original
    record = read_ensemble(RunDir(OLD / name))
    assert record is not None and record.version == 1
    assert record.weights == {m["id"]: m["weight"] for m in original["members"]}
    assert record.method == original["method"] and record.refit == original["refit"]
    folder = RunDir(tmp_path)
    write_ensemble(folder, record)
    written = json.loads(folder.file(ENSEMBLE).read_text())
    assert written.pop("version") == ENSEMBLE_VERSION == 2
    assert written == original  # every field kept, the members in one shape
    assert list(written) == list(original)
    again = read_ensemble(folder)
    assert again == record.model_copy(update={"version": 2})


def test_each_kind_of_ensemble_keeps_its_own_fields() -> None:
    greedy, stacked, pseudo = (read_ensemble(RunDir(OLD / n)) for n in ("seeds", "stack", "pseudo"))
    assert greedy is not None and stacked is not None and pseudo is not None
    assert greedy.method == "greedy" and greedy.refit and greedy.seeds == 2 and not greedy.stack
    assert stacked.method == "stack" and stacked.stack is not None and stacked.stack.kept
    assert stacked.stack.model is not None and set(stacked.stack.inputs) <= set(stacked.weights)
    assert set(stacked.estimates) == {"greedy", "stack"}
    assert pseudo.folds == 2 and pseudo.pseudo_labels is not None
    assert pseudo.pseudo_labels.models == ["run/t0000-pseudo"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seeds", "stack"])
def test_a_run_with_an_old_ensemble_json_still_predicts_its_test_probs(
    name: str, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    run = shutil.copytree(OLD / name, tmp_path / "run")
    choice = chosen_models(run)
    assert (choice.stack is not None) == (name == "stack")
    if name == "seeds":  # the refits of the chosen trials predict
        assert all(m.folder.path.name == "refit" for m in choice.models)
    if name == "seeds":
        assert_predicts_own_test_probs(run, tiny_competition.test_audio)
    else:  # a stack's level-2 model predicts within 1e-10 of the run (as it did before)
        prediction = predict(run, tiny_competition.test_audio).probability_table()
        expected = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
        got = prediction.set_index("id").loc[expected.index]
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-10)


def test_an_ensemble_json_of_a_newer_toolkit_is_one_line(tmp_path: Path) -> None:
    run = shutil.copytree(OLD / "seeds", tmp_path / "run")
    summary = json.loads((run / ENSEMBLE).read_text())
    (run / ENSEMBLE).write_text(json.dumps({**summary, "version": 3}))
    done = run_cli("predict", run, tmp_path / "clips")
    line = one_error_line(done.stderr)
    assert done.returncode == 2
    assert line.endswith("ensemble.json: ensemble file version 3, newer than this toolkit reads "
                         "(2); upgrade the toolkit")  # fmt: skip
    (run / ENSEMBLE).write_text(json.dumps({**summary, "members": [{"id": "run/t0001"}]}))
    line = one_error_line(run_cli("predict", run, tmp_path / "clips").stderr)
    assert line.endswith("ensemble.json: damaged ensemble file (members.0.weight: Field required)")


def test_a_record_is_the_schema_of_what_it_writes() -> None:
    fields = set(EnsembleRecord.model_fields)
    original = json.loads((OLD / "stack" / ENSEMBLE).read_text())
    assert fields == {"version", *original}  # every field main wrote is a typed field
