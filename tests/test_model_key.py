"""One value names every model: ids, folders and kinds, and back."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from toolkit.leaderboard import Leaderboard, Row
from toolkit.runs.model_key import KINDS, ModelKey
from toolkit.runs.run_dir import RunDir

RUN = Path("/work/runs/demo-search")


def every_kind() -> list[tuple[ModelKey, str, Path]]:
    """One key of each kind, with the id and the folder it must have."""
    trial = ModelKey.of_trial("demo-search", 3)
    plain = ModelKey.plain_run("demo", datetime(2026, 11, 28, 13, 15, 2, 118_000))
    return [
        (plain, "demo/r20261128-131502-118", RUN),
        (trial, "demo-search/t0003", RUN / "trials" / "t0003"),
        (trial.seed_copy(2), "demo-search/t0003-s2", RUN / "trials" / "t0003" / "seed2"),
        (trial.bag(), "demo-search/t0003-bag", RUN / "trials" / "t0003" / "bag"),
        (trial.refit(), "demo-search/t0003-refit", RUN / "trials" / "t0003" / "refit"),
        (trial.pseudo_labelled(), "demo-search/t0003-pseudo", RUN / "trials" / "t0003" / "pseudo"),
        (ModelKey.ensemble("demo-search", 12), "demo-search/e12", RUN),
        (trial.reproduction(1), "demo-search/t0003-again1", RUN / "reproduce" / "t0003-again1"),
        (
            trial.seed_copy(1).reproduction(2),
            "demo-search/t0003-s1-again2",
            RUN / "reproduce" / "t0003-s1-again2",
        ),
        (
            plain.reproduction(1),
            "demo/r20261128-131502-118-again1",
            RUN / "reproduce" / "r20261128-131502-118-again1",
        ),
        (ModelKey.of_trial("demo-search", 12345), "demo-search/t12345", RUN / "trials" / "t12345"),
    ]


@pytest.mark.parametrize(("key", "id", "folder"), every_kind(), ids=lambda v: str(v))
def test_every_kind_of_key_makes_its_id_and_folder_and_parses_back(
    key: ModelKey, id: str, folder: Path
) -> None:
    assert key.id == id
    assert key.folder(RUN) == folder
    assert RunDir(RUN).model(key).path == folder
    assert ModelKey.parse(id) == key  # the id alone says which model it is
    assert ModelKey.kind_of(id) == key.kind


def test_every_kind_is_covered_and_the_leaderboard_stores_and_finds_it(tmp_path: Path) -> None:
    assert {key.kind for key, _, _ in every_kind()} == set(KINDS)
    board = Leaderboard(tmp_path / "leaderboard.db")  # a real SQLite store
    for key, _, folder in every_kind():
        row = Row(id=key.id, kind=key.kind, recipe="r", run_dir=str(folder), state="running")
        board.upsert(row)
    for kind in KINDS:  # each kind's rows, and only those, come back under its filter
        expected = {key.id for key, _, _ in every_kind() if key.kind == kind}
        assert {row.id for row in board.rows(kind=kind)} == expected
        assert all(ModelKey.kind_of(row.id) == kind for row in board.rows(kind=kind))


def test_variants_know_their_trial() -> None:
    trial = ModelKey.of_trial("r", 7)
    for variant in (trial.seed_copy(1), trial.bag(), trial.refit()):
        assert variant.trial_key() == trial
    with pytest.raises(ValueError, match="not made from a trial"):
        ModelKey.ensemble("r", 1).seed_copy(1)


@pytest.mark.parametrize("id", ["no-slash", "/t0003", "run/x0003", "run/t12", "run/t0003-s"])
def test_ids_no_kind_makes_are_refused(id: str) -> None:
    with pytest.raises(ValueError):
        ModelKey.parse(id)
    assert ModelKey.kind_of(id) is None
