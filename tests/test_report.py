"""``toolkit report``: the page of a tiny study and of a plain run, its numbers, and its rendering.

One study (``toolkit run``, which writes the report at its end) and one plain
run are shared by the tests of this module. The page is checked for what it
shows (sections, the confusion matrix's cells, the ensemble's weights), for
needing nothing outside itself, and rendered by headless Chromium when it is
installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import run_cli, write_recipe
from toolkit.cli import app
from toolkit.demo import DemoCompetition
from toolkit.report import FIGURES, REPORT, Report, build_report
from toolkit.report.build import FIGURE_NAMES
from toolkit.report.collect import ModelHistory, StudyData
from toolkit.report.figures import learning_curves, param_importances, param_slices
from toolkit.report.stages import stage_times

pytestmark = pytest.mark.slow  # every test reads a trained run

SEARCH = """
search:
  n_trials: 4
  sampler: {name: tpe, seed: 0}
  pruner: {name: median, n_startup_trials: 2}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
    model.backbone.width: {choices: [4, 8]}
ensemble: {size: 10}
"""

ALL_FIGURES = set(FIGURE_NAMES)
"""A tiny study's report draws every figure there is."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's work folder: one cache (features computed once) and one leaderboard."""
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def study(tiny_competition: DemoCompetition, work: Path) -> Path:
    """``toolkit run`` of a 4-trial study with its ensemble; returns its run directory."""
    recipe = write_recipe(work, tiny_competition.root, extra=SEARCH, name="search.yaml")
    result = run_cli("run", recipe, "--output", work / "run", cwd=work)
    assert result.returncode == 0, result.stderr
    page = (work / "run" / REPORT).resolve()
    assert f"report: {page}" in result.stdout.splitlines()
    return work / "run"


@pytest.fixture(scope="module")
def study_report(study: Path) -> Report:
    return build_report(study)


@pytest.fixture(scope="module")
def plain(tiny_competition: DemoCompetition, work: Path) -> Path:
    """A plain run (no search) made with ``--no-report``; returns its run directory."""
    recipe = write_recipe(work, tiny_competition.root, name="plain.yaml")
    result = run_cli("run", recipe, "--output", work / "plain", "--no-report", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "report:" not in result.stdout
    assert not (work / "plain" / REPORT).exists()
    return work / "plain"


def invoke(*args: object) -> tuple[int, str, str]:
    """Run a ``toolkit`` command in this process: its exit code, stdout and stderr."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def section(html: str, name: str) -> str:
    """The HTML of one section of the page (empty when it is not there)."""
    found = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    return found.group(1) if found else ""


def table_column(html: str, table_id: str, column: int) -> list[str]:
    """The cells of one column of a table of the page, header row left out."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert table, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)[1:]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[column] for row in rows]


# ------------------------------------------------------------------ a study
def test_run_writes_the_report_and_its_figures(study: Path) -> None:
    html = (study / REPORT).read_text()
    assert html.startswith("<!DOCTYPE html>")
    written = {p.stem for p in (study / FIGURES).glob("*.png")}
    assert written == ALL_FIGURES
    for name in written:
        assert (study / FIGURES / f"{name}.png").read_bytes().startswith(PNG_MAGIC)


def test_every_section_is_there(study_report: Report) -> None:
    html = study_report.html()
    for name in ("summary", "curves", "search", "confusion", "ensemble", "leaderboard"):
        assert section(html, name), name
        assert f'href="#{name}"' in html
    assert set(study_report.figures) == ALL_FIGURES
    assert not study_report.notes


def test_confusion_matrices_count_every_validation_clip(study: Path, study_report: Report) -> None:
    validation = pd.read_csv(study / "val_probs.csv")
    summary = json.loads((study / "ensemble.json").read_text())
    best, ensemble = study_report.scores["best"], study_report.scores["ensemble"]
    for scores in (best, ensemble):
        assert scores.confusion.sum() == len(validation)
        assert list(scores.support) == list(scores.confusion.sum(axis=1))
        truth = [scores.classes.index(c) for c in validation["label"].astype(str)]
        assert list(scores.support) == list(np.bincount(truth, minlength=len(scores.classes)))
    # the best single model is the trial the ensemble compared itself with, scored alike
    assert summary["best_trial"].endswith(best.name)
    assert best.metrics["val_accuracy"] == pytest.approx(summary["best_trial_metric"])
    assert ensemble.metrics["val_accuracy"] == pytest.approx(summary["val_accuracy"])
    html = study_report.html()
    for key in ("best", "ensemble"):
        supports = table_column(html, f"classes-{key}", 1)
        assert sum(int(n) for n in supports) == len(validation)


def test_ensemble_section_matches_ensemble_json(study: Path, study_report: Report) -> None:
    summary = json.loads((study / "ensemble.json").read_text())
    members = {m["id"]: m["weight"] for m in summary["members"]}
    ensemble = study_report.contents.ensemble
    assert ensemble is not None
    assert ensemble.members == pytest.approx(members)
    assert ensemble.trajectory == summary["trajectory"] and ensemble.picks == summary["picks"]
    html = study_report.html()
    shown = dict(
        zip(
            table_column(html, "ensemble-members", 0),
            (float(w) for w in table_column(html, "ensemble-members", 1)),
            strict=True,
        )
    )
    assert shown == pytest.approx(members, abs=5e-5)


def test_curves_and_search_follow_the_study(study: Path, study_report: Report) -> None:
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study / 'study.db'}").trials
    contents = study_report.contents
    states = {t.number: t.state.name.lower().replace("fail", "failed") for t in trials}
    assert {h.trial: h.state for h in contents.histories} == states
    for h in contents.histories:
        folder = study / "trials" / f"t{h.trial:04d}"
        assert h.history.equals(pd.read_csv(folder / "metrics.csv"))
    assert contents.study is not None
    assert sorted(contents.study.space) == ["model.backbone.width", "train.optimizer.lr"]
    assert len(contents.study.trials) == 4


def test_summary_counts_clips_and_times(study: Path, study_report: Report) -> None:
    data = study_report.contents.data
    assert data is not None and data.folds == 1
    assert sum(data.train.values()) == 32 and data.test == 10  # type: ignore[union-attr]
    assert sum(data.validation.values()) == len(pd.read_csv(study / "val_probs.csv"))
    stages = {s.name: s for s in stage_times(study_report.contents)}
    stats = json.loads((study / "stats.json").read_text())
    assert stages["separation"].seconds == stats["separation_seconds"]
    assert stages["features"].seconds == stats["features_seconds"]
    trial_rows = [r for r in study_report.contents.rows if r.kind == "trial"]
    assert len(trial_rows) == 4
    assert stages["training"].seconds == pytest.approx(sum(r.seconds or 0 for r in trial_rows))
    assert "ensemble" in stages
    summary = section(study_report.html(), "summary")
    assert "42 computed" in summary  # every clip's stem and features computed once


def test_leaderboard_section_lists_the_runs_rows(study_report: Report) -> None:
    rows = study_report.contents.rows
    assert {r.kind for r in rows} == {"trial", "ensemble"} and len(rows) == 5
    listed = section(study_report.html(), "leaderboard")
    for row in rows:
        assert row.id in listed


def test_page_needs_nothing_outside_itself(study: Path) -> None:
    html = (study / REPORT).read_text()
    for outside in ("http://", "https://", "//cdn", "<script", "<link", "@import", "url("):
        assert outside not in html, outside
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == len(ALL_FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))


def test_chromium_renders_the_page_offline(study: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium)")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # any request leaving the file would fail
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            (study / REPORT).resolve().as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[::3, ::3, :3]
    assert pixels.shape[:2] == (1000, 400)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # text, tables and figures, not a blank page
    assert (pixels.min(axis=2) < 0.9).mean() > 0.05  # a good share of the page is not white


# ------------------------------------------------------ a study still going
def test_report_of_a_study_still_running(study: Path, tmp_path: Path) -> None:
    going = Path(shutil.copytree(study, tmp_path / "going"))
    for name in ("ensemble.json", "val_probs.csv", "test_probs.csv", "submission.csv"):
        (going / name).unlink()
    storage = f"sqlite:///{going / 'study.db'}"
    optuna.load_study(study_name="tiny", storage=storage).ask()  # a fifth trial, running
    (going / "trials" / "t0004").mkdir()  # which has written nothing but its recipe yet
    shutil.copy(going / "recipe.yaml", going / "trials" / "t0004" / "recipe.yaml")
    code, stdout, stderr = invoke("report", going, "--db", tmp_path / "none.db")
    assert code == 0, stderr
    assert stdout.strip() == str((going / REPORT).resolve())
    html = (going / REPORT).read_text()
    assert "The ensemble is not built yet" in section(html, "ensemble")
    assert "1 running" in section(html, "summary")
    assert not section(html, "leaderboard")  # this copy has no rows
    written = {p.stem for p in (going / FIGURES).glob("*.png")}
    assert written == ALL_FIGURES - {"confusion_ensemble", "ensemble"}  # stale ones removed
    report = build_report(going, db=tmp_path / "none.db")
    assert [h.trial for h in report.contents.histories] == [0, 1, 2, 3]
    assert report.contents.study is not None and report.contents.study.counts()["running"] == 1
    assert set(report.scores) == {"best"}


def test_learning_curves_draw_one_line_per_fold() -> None:
    epochs = [1, 2, 3, 1, 2, 3]
    history = pd.DataFrame(
        {
            "fold": [1, 1, 1, 2, 2, 2],
            "epoch": epochs,
            "lr": [0.01] * 6,
            "train_loss": [1.2, 1.0, 0.8, 1.3, 1.1, 0.9],
            "train_accuracy": [0.3, 0.5, 0.6, 0.2, 0.4, 0.6],
            "val_loss": [1.3, 1.2, 1.1, 1.4, 1.2, 1.0],
            "val_accuracy": [0.3, 0.4, 0.5, 0.2, 0.4, 0.5],
        }
    )
    png = learning_curves([ModelHistory("t0000", 0, "complete", history)])
    assert png.startswith(PNG_MAGIC)


def test_search_figures_that_cannot_be_drawn_say_why() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    flat = optuna.create_study(direction="maximize")  # every trial scores the same
    flat.optimize(lambda trial: 0.5 + 0 * trial.suggest_float("lr", 0.001, 0.01), n_trials=3)
    data = StudyData("flat", "memory", flat, "accuracy", ["lr"], flat.get_trials())
    assert param_slices(data).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="does not vary"):
        param_importances(data)
    bare = optuna.create_study(direction="maximize")  # nothing searched
    bare.optimize(lambda trial: 0.5, n_trials=2)
    data = StudyData("bare", "memory", bare, "accuracy", [], bare.get_trials())
    for draw in (param_slices, param_importances):
        with pytest.raises(ValueError, match="searched values"):
            draw(data)


# ---------------------------------------------------------------- a plain run
def test_report_of_a_plain_run(plain: Path) -> None:
    board = plain.parent / "leaderboard.db"
    code, listing, _ = invoke("leaderboard", plain, "--db", board, "--json")
    (row,) = json.loads(listing)
    code, _, stderr = invoke("leaderboard", "record", row["id"], "0.7956", "--db", board)
    assert code == 0, stderr
    code, _, stderr = invoke("report", plain)
    assert code == 0, stderr
    html = (plain / REPORT).read_text()
    for name in ("summary", "curves", "confusion", "leaderboard"):
        assert section(html, name), name
    for name in ("search", "ensemble"):
        assert not section(html, name), name
    assert "0.79560" in section(html, "summary")  # the public score
    report = build_report(plain)
    assert set(report.figures) == {"learning_curves", "confusion_best"}
    validation = pd.read_csv(plain / "val_probs.csv")
    assert report.scores["best"].confusion.sum() == len(validation)
    assert report.scores["best"].metrics["val_accuracy"] == pytest.approx(row["val_accuracy"])
    stages = {s.name: s.seconds for s in stage_times(report.contents)}
    preparation = (stages["separation"] or 0) + (stages["features"] or 0)
    assert stages["training"] == pytest.approx(row["seconds"] - preparation)


# ------------------------------------------------------ a cross-validated run
def test_report_of_a_cross_validated_run(tiny_competition: DemoCompetition, work: Path) -> None:
    recipe = write_recipe(work, tiny_competition.root, name="cv.yaml")
    out = work / "cv"
    code, stdout, stderr = invoke("run", recipe, "--output", out, "--set", "split.folds=2")
    assert code == 0, stderr
    assert f"report: {(out / REPORT).resolve()}" in stdout.splitlines()
    report = build_report(out)
    contents = report.contents
    assert contents.folds == 2 and contents.data is not None
    assert sum(contents.data.validation.values()) == 32  # every train clip, out of fold
    assert report.scores["best"].confusion.sum() == 32
    (history,) = contents.histories
    assert sorted(set(history.history["fold"])) == [1, 2]
    html = report.html()
    assert "2-fold cross-validation" in section(html, "summary")
    assert "trained on" not in section(html, "summary")
    assert "out-of-fold predictions" in section(html, "confusion")
    assert "thin line per fold" in section(html, "curves")
