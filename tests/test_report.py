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
import torch
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from tests.conftest import run_cli, write_recipe
from toolkit.cli.app import app
from toolkit.demo import DemoCompetition
from toolkit.demo.sound import CLASS_NAMES
from toolkit.leaderboard import Leaderboard
from toolkit.recipe.schema import Data
from toolkit.report import FIGURES, REPORT, Report, build_report
from toolkit.report.build import FIGURE_NAMES
from toolkit.report.collect import ModelHistory, StudyData
from toolkit.report.figures import (
    confusion,
    learning_curves,
    optimization_history,
    param_importances,
    param_slices,
)
from toolkit.report.stages import stage_times

SEARCH = """
search:
  n_trials: 4
  sampler: {name: tpe, seed: 0}
  pruner: {name: median, n_startup_trials: 2}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
    model.backbone.width: {choices: [4, 8]}
ensemble: {size: 1}
"""
"""Four trials, the median pruner free to stop some (the tests read each trial's state), and
one greedy round: the ensemble is the best trial alone, by construction, not by how the trials
happened to score."""

ALL_FIGURES = set(FIGURE_NAMES) - {"confusion_ensemble"}
"""A tiny study's report draws every figure there is, but one: its ensemble is its best trial
alone (``ensemble: {size: 1}``), whose confusion matrix the report does not draw twice."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's work folder: one cache (features computed once) and one leaderboard."""
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def study(tiny_competition: DemoCompetition, work: Path) -> Path:
    """``toolkit run`` of a 4-trial study with its ensemble; returns its run directory.

    It has a cache of its own: its stats count every clip computed, whichever of the
    module's runs comes first."""
    folder = work / "search"
    recipe = write_recipe(folder, tiny_competition.root, extra=SEARCH, name="search.yaml")
    result = run_cli("run", recipe, "--output", folder / "run", cwd=folder)
    assert result.returncode == 0, result.stderr
    page = (folder / "run" / REPORT).resolve()
    assert f"report: {page}" in result.stdout.splitlines()
    return folder / "run"


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
@pytest.mark.slow
def test_run_writes_the_report_and_its_figures(study: Path) -> None:
    html = (study / REPORT).read_text()
    assert html.startswith("<!DOCTYPE html>")
    written = {p.stem for p in (study / FIGURES).glob("*.png")}
    assert written == ALL_FIGURES
    for name in written:
        assert (study / FIGURES / f"{name}.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_every_section_is_there(study_report: Report) -> None:
    html = study_report.html()
    for name in ("summary", "curves", "search", "confusion", "ensemble", "leaderboard"):
        assert section(html, name), name
        assert f'href="#{name}"' in html
    assert set(study_report.figures) == ALL_FIGURES
    assert not study_report.notes


@pytest.mark.slow
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
    supports = table_column(html, "classes-best", 1)
    assert sum(int(n) for n in supports) == len(validation)


@pytest.mark.slow
def test_ensemble_section_matches_ensemble_json(study: Path, study_report: Report) -> None:
    summary = json.loads((study / "ensemble.json").read_text())
    members = {m["id"]: m["weight"] for m in summary["members"]}
    ensemble = study_report.contents.ensemble
    assert ensemble is not None
    assert ensemble.weights == pytest.approx(members)
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_leaderboard_section_lists_the_runs_rows(study_report: Report) -> None:
    rows = study_report.contents.rows
    assert {r.kind for r in rows} == {"trial", "ensemble"} and len(rows) == 5
    listed = section(study_report.html(), "leaderboard")
    for row in rows:
        assert row.id in listed


@pytest.mark.slow
def test_page_needs_nothing_outside_itself(study: Path) -> None:
    html = (study / REPORT).read_text()
    for outside in ("http://", "https://", "//cdn", "<script", "<link", "@import", "url("):
        assert outside not in html, outside
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == len(ALL_FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))


@pytest.mark.slow
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
@pytest.mark.slow
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


def history(**columns: list[float]) -> pd.DataFrame:
    """A ``metrics.csv`` of ``len`` epochs: the given columns, the others made up."""
    epochs = len(next(iter(columns.values())))
    made_up = {
        "epoch": list(range(1, epochs + 1)),
        "lr": [0.01] * epochs,
        "train_loss": np.linspace(1.5, 0.5, epochs).tolist(),
        "train_accuracy": np.linspace(0.3, 0.8, epochs).tolist(),
        "val_loss": np.linspace(1.4, 0.9, epochs).tolist(),
        "val_accuracy": np.linspace(0.3, 0.6, epochs).tolist(),
    }
    return pd.DataFrame({**made_up, **columns})


def panels(figure: Figure) -> dict[str, Axes]:
    """The learning curves' panels by title (without a scale note)."""
    return {ax.get_title().removesuffix(" (log scale)"): ax for ax in figure.axes if ax.get_title()}


def curves(ax: Axes) -> list[Line2D]:
    """The lines of a panel, best-epoch stars left out."""
    return [line for line in ax.get_lines() if line.get_marker() != "*"]


def stars(ax: Axes) -> list[tuple[float, float]]:
    """Where a panel's best-epoch stars are."""
    return [
        (float(x), float(y))
        for line in ax.get_lines()
        if line.get_marker() == "*"
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)
    ]


def test_learning_curves_losses_on_a_log_scale_and_best_epochs_starred() -> None:
    bad_start = history(val_loss=[9.0, 1.2, 1.0, 1.1], val_accuracy=[0.2, 0.5, 0.6, 0.6])
    pruned = history(val_loss=[1.5, 1.4], val_accuracy=[0.3, 0.3])
    models = [
        ModelHistory("t0000", 0, "complete", bad_start, best_epoch=3),
        ModelHistory("t0001", 1, "pruned", pruned),
    ]
    figure = learning_curves.figure(models, "accuracy")
    shown = panels(figure)
    for title in ("train loss", "validation loss", "learning rate"):
        assert shown[title].get_yscale() == "log"
        assert shown[title].get_title().endswith(" (log scale)")
    for title in ("train accuracy", "validation accuracy"):
        assert shown[title].get_yscale() == "linear"
    for title, ax in shown.items():
        assert len(curves(ax)) == 2, title  # a line per model
    # the epoch the model kept, starred where the validation curves pass it; none when pruned
    assert stars(shown["validation loss"]) == [(3.0, 1.0)]
    assert stars(shown["validation accuracy"]) == [(3.0, 0.6)]
    assert stars(shown["train loss"]) == []
    legend = figure.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "t0000, best epoch 3",
        "t0001 (pruned)",
        "best epoch, kept (by validation accuracy)",
    ]
    assert learning_curves(models, "accuracy").startswith(PNG_MAGIC)


def test_learning_curves_draw_one_line_per_fold() -> None:
    folds = pd.concat(
        [
            history(fold=[1, 1, 1], val_loss=[1.3, 1.2, 1.1], val_accuracy=[0.3, 0.4, 0.5]),
            history(fold=[2, 2, 2], val_loss=[1.4, 1.0, 1.2], val_accuracy=[0.2, 0.5, 0.4]),
        ]
    )
    # a cross-validated model keeps the mean of its folds' best epochs (3 and 2: 2)
    figure = learning_curves.figure([ModelHistory("t0000", 0, "complete", folds, 2)], "accuracy")
    shown = panels(figure)
    assert all(len(curves(ax)) == 2 for ax in shown.values())  # a thin line per fold
    assert stars(shown["validation loss"]) == [(2.0, 1.2), (2.0, 1.0)]
    one = [ModelHistory("t0000", 0, "complete", folds, 2)]
    assert learning_curves(one, "accuracy").startswith(PNG_MAGIC)


def searched_study() -> StudyData:
    """An in-memory study over lr (log) and width (choices): 3 complete and 2 pruned trials."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    space = {
        "train.optimizer.lr": FloatDistribution(0.001, 0.01, log=True),
        "model.backbone.width": CategoricalDistribution([4, 8]),
    }
    for lr, width, state, value, steps in [
        (0.002, 8, TrialState.COMPLETE, 0.70, {1: 0.5, 2: 0.7}),
        (0.005, 4, TrialState.PRUNED, None, {1: 0.30, 2: 0.25}),
        (0.008, 8, TrialState.COMPLETE, 0.60, {1: 0.6, 2: 0.6}),
        (0.001, 4, TrialState.PRUNED, None, {1: 0.20}),
        (0.004, 8, TrialState.COMPLETE, 0.75, {1: 0.6, 2: 0.75}),
    ]:
        params = {"train.optimizer.lr": lr, "model.backbone.width": width}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=space,
                value=value,
                state=state,
                intermediate_values=steps,
            )
        )
    return StudyData("s", "memory", study, "accuracy", list(space), study.get_trials())


def points(ax: Axes) -> dict[str, list[tuple[float, float]]]:
    """A panel's scatter points by legend label, and whether they are hollow."""
    out = {}
    for collection in ax.collections:
        offsets = [(float(x), float(y)) for x, y in collection.get_offsets()]
        hollow = len(collection.get_facecolors()) == 0 or collection.get_facecolors()[0][3] == 0
        out[f"{collection.get_label()}{' (hollow)' if hollow else ''}"] = offsets
    return out


def test_search_figures_show_pruned_trials_hollow_and_say_so() -> None:
    data = searched_study()
    history_ax = optimization_history.figure(data).axes[0]
    pruned = "pruned trial (its best value before it was stopped) (hollow)"
    assert points(history_ax) == {
        "complete trial": [(0.0, 0.70), (2.0, 0.60), (4.0, 0.75)],
        pruned: [(1.0, 0.30), (3.0, 0.20)],  # the best each reported before it was stopped
    }
    (best,) = [line for line in history_ax.get_lines() if line.get_label() == "best so far"]
    assert list(best.get_ydata()) == [0.70, 0.70, 0.75]
    legend = [t.get_text() for t in history_ax.get_legend().get_texts()]
    assert "pruned trial (its best value before it was stopped)" in legend

    lr_ax, width_ax = param_slices.figure(data).axes
    assert (lr_ax.get_title(), width_ax.get_title()) == (
        "train.optimizer.lr",
        "model.backbone.width",
    )
    assert lr_ax.get_xscale() == "log"
    assert points(lr_ax) == {
        "complete trial": [(0.002, 0.70), (0.008, 0.60), (0.004, 0.75)],
        pruned: [(0.005, 0.30), (0.001, 0.20)],
    }
    assert [t.get_text() for t in width_ax.get_xticklabels()] == ["4", "8"]
    assert points(width_ax) == {  # a position per choice: 4 -> 0, 8 -> 1
        "complete trial": [(1.0, 0.70), (1.0, 0.60), (1.0, 0.75)],
        pruned: [(0.0, 0.30), (0.0, 0.20)],
    }
    assert optimization_history(data).startswith(PNG_MAGIC)
    assert param_slices(data).startswith(PNG_MAGIC)


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


@pytest.mark.slow
def test_best_epochs_marked_are_those_the_models_kept(study: Path, study_report: Report) -> None:
    rows = Leaderboard(study.parent / "leaderboard.db").rows(run_dir=study, kind="trial")
    recorded = {r.trial_number: r.best_epoch for r in rows}
    contents = study_report.contents
    assert {h.trial: h.best_epoch for h in contents.histories} == recorded
    for row in rows:  # a finished trial kept that epoch's weights; a pruned one kept none
        weights = study / "trials" / f"t{row.trial_number:04d}" / "best.pt"
        assert row.state in ("complete", "pruned")
        if row.state == "complete":
            assert torch.load(weights, weights_only=True)["best_epoch"] == row.best_epoch
        else:
            assert not weights.exists()
    shown = panels(learning_curves.figure(contents.histories, contents.metric))
    expected = sorted(
        (float(epoch), float(h.history.set_index("epoch").loc[epoch, "val_loss"]))
        for h in contents.histories
        for epoch in [recorded[h.trial]]  # type: ignore[index]
    )
    found = sorted(stars(shown["validation loss"]))
    assert [x for x, _ in found] == [x for x, _ in expected]
    assert [y for _, y in found] == pytest.approx([y for _, y in expected])


@pytest.mark.slow
def test_a_one_member_ensemble_says_so_instead_of_repeating_figures(
    study: Path, study_report: Report, tmp_path: Path
) -> None:
    contents = study_report.contents
    assert contents.ensemble is not None and contents.best is not None
    assert list(contents.ensemble.weights) == [contents.ensemble.best_trial]
    assert contents.lone_member() == contents.best.name
    html = study_report.html()
    shown = section(html, "confusion")
    sentence = (
        f"The ensemble is trial {contents.best.name} alone: its figures are the best model's."
    )
    assert shown.count(sentence) == 1
    assert 'id="classes-ensemble"' not in shown and 'id="classes-best"' in shown
    assert "confusion_ensemble" not in study_report.figures
    assert "ensemble: run/e1" in section(html, "summary")  # its numbers are still given
    # an ensemble of two members has figures of its own
    pair = Path(shutil.copytree(study, tmp_path / "pair"))
    summary = json.loads((pair / "ensemble.json").read_text())
    # trials 0 and 1 are the pruner's startup trials: finished, whatever they scored
    other = next(f"run/t{n:04d}" for n in range(2) if f"run/t{n:04d}" != summary["best_trial"])
    summary["members"] = [
        {"id": summary["best_trial"], "weight": 0.5},
        {"id": other, "weight": 0.5},
    ]
    (pair / "ensemble.json").write_text(json.dumps(summary))
    report = build_report(pair)
    assert report.contents.lone_member() is None
    assert {"confusion_best", "confusion_ensemble"} <= set(report.figures)
    assert "alone" not in section(report.html(), "confusion")
    assert 'id="classes-ensemble"' in section(report.html(), "confusion")


@pytest.mark.slow
def test_class_names_of_the_recipe_in_matrices_and_tables(plain: Path, tmp_path: Path) -> None:
    named = Path(shutil.copytree(plain, tmp_path / "named"))
    recipe = yaml.safe_load((named / "recipe.yaml").read_text())
    recipe["data"]["class_names"] = dict(enumerate(CLASS_NAMES))
    (named / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    report = build_report(named)
    shown = [f"{name} ({label})" for label, name in enumerate(CLASS_NAMES)]
    scores = report.scores["best"]
    assert scores.classes == shown
    matrix, bars = confusion.figure(scores, "best single model").axes
    assert [t.get_text() for t in matrix.get_yticklabels()] == shown  # true classes
    assert [t.get_text() for t in matrix.get_xticklabels()] == shown  # predicted
    assert [t.get_text() for t in bars.get_xticklabels()] == shown
    html = report.html()
    assert table_column(html, "classes-best", 0) == shown
    assert all(f"<td>{name}</td>" in section(html, "summary") for name in shown)  # the data table
    unnamed = build_report(plain)  # without class_names: the labels themselves
    assert unnamed.scores["best"].classes == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_a_demo_run_shows_the_demo_class_names(plain: Path, tmp_path: Path) -> None:
    demo = Path(shutil.copytree(plain, tmp_path / "demo"))
    recipe = yaml.safe_load((demo / "recipe.yaml").read_text())
    recipe["data"]["demo"] = {"folder": recipe["data"]["root"]}  # the run read the demo's folder
    (demo / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    shown = [f"{name} ({label})" for label, name in enumerate(CLASS_NAMES)]
    assert build_report(demo).scores["best"].classes == shown


def test_demo_recipes_take_the_class_names_from_the_demo(tmp_path: Path) -> None:
    recipes = Path(__file__).resolve().parent.parent / "recipes"
    names = {str(label): name for label, name in enumerate(CLASS_NAMES)}
    for name in ("demo", "demo-search", "pretrained", "strong", "finetune"):
        data = yaml.safe_load((recipes / f"{name}.yaml").read_text())["data"]
        assert "class_names" not in data, name  # nothing another folder's labels must match
        assert Data.model_validate(data).label_names == names, name
        assert Data.model_validate({**data, "root": tmp_path}).label_names == {}, name


# ---------------------------------------------------------------- a plain run
@pytest.mark.slow
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
@pytest.mark.slow
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
