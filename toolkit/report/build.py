"""A run's report: read the run, score its predictions, draw its figures, write the page."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.data.cache import atomic_write
from toolkit.report import figures as draw
from toolkit.report.collect import RunContents, StudyData, collect
from toolkit.report.page import render_page
from toolkit.report.scores import ClassScores, score

REPORT = "report.html"
"""The page, in the run directory."""

FIGURES = "figures"
"""The folder of the run directory that holds the figures as PNG files."""

FIGURE_NAMES = (
    "learning_curves",
    "optimization_history",
    "param_importances",
    "param_slices",
    "confusion_best",
    "confusion_ensemble",
    "ensemble",
)
"""Every figure the report may draw (``figures/<name>.png``); with profiles, the search's
figures also once per profile (``optimization_history-NAME``, ...)."""


@dataclass
class Report:
    """What the page shows: the run's contents, scores, figures (PNG bytes) and notes."""

    contents: RunContents
    scores: dict[str, ClassScores] = field(default_factory=dict)
    """The ``best`` single model's and the ``ensemble``'s, when their predictions are there."""
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def html(self) -> str:
        """The self-contained page."""
        return render_page(self.contents, self.scores, self.figures, self.notes)


def build_report(run_dir: Path | str, storage: str | None = None, db: Path | None = None) -> Report:
    """Read a run directory (finished or not) and make every figure its data allows.

    ``storage`` and ``db`` name the study's storage and the leaderboard when
    they are not where the run's recipe says (see :func:`collect`).
    """
    started = time.perf_counter()
    contents = collect(run_dir, storage, db)
    report = Report(contents, notes={k: list(v) for k, v in contents.notes.items()})
    for key, predictions in (("best", contents.best), ("ensemble", contents.ensemble_predictions)):
        if predictions is not None:
            report.scores[key] = score(predictions, contents.class_name)
    if contents.histories:
        _figure(
            report,
            "learning_curves",
            lambda: draw.learning_curves(contents.histories, contents.metric),
        )
    study = contents.study
    if study is not None and contents.recipe.search is not None:
        if any(t.state.name == "COMPLETE" for t in study.trials):
            _search_figures(report, study)
            for profile in study.profiles:  # each profile's search, drawn apart
                view = study.of_profile(profile)
                if any(t.state.name == "COMPLETE" for t in view.trials):
                    _search_figures(report, view, f"-{profile}")
        else:
            report.notes.setdefault("search", []).append("No trial has completed yet.")
    alone = contents.lone_member() is not None  # the ensemble's figures would be the best's
    for key, title in (("best", "best single model"), ("ensemble", "ensemble")):
        if key in report.scores and not (key == "ensemble" and alone):
            scores = report.scores[key]
            _figure(report, f"confusion_{key}", lambda s=scores, t=title: draw.confusion(s, t))
    if contents.ensemble is not None:
        ensemble = contents.ensemble
        _figure(report, "ensemble", lambda: draw.ensemble(ensemble))
    report.seconds = time.perf_counter() - started
    return report


def _search_figures(report: Report, study: StudyData, suffix: str = "") -> None:
    """The search's figures of ``study`` (a profile's view: named with ``suffix``); with
    profiles, the whole study's importances are left out (only ``profile`` is in every
    trial)."""
    _figure(report, f"optimization_history{suffix}", lambda: draw.optimization_history(study))
    _figure(report, f"param_slices{suffix}", lambda: draw.param_slices(study), "search")
    if not study.profiles:
        importances = f"param_importances{suffix}"
        _figure(report, importances, lambda: draw.param_importances(study), "search")


def _figure(
    report: Report, name: str, make: Callable[[], bytes], section: str | None = None
) -> None:
    """Draw one figure; with ``section``, a figure that cannot be drawn is a note there."""
    try:
        report.figures[name] = make()
    except ValueError as exc:
        if section is None:
            raise
        what = name.replace("_", " ")
        report.notes.setdefault(section, []).append(f"No {what}: {exc}")


def write_report(run_dir: Path | str, storage: str | None = None, db: Path | None = None) -> Path:
    """Write ``RUN_DIR/report.html`` (one self-contained file) and ``RUN_DIR/figures/*.png``.

    Returns the page's path. Figures of an earlier report that this one does
    not draw are removed, so the folder matches the page. Each file is written
    whole or not at all: a report killed while writing leaves the earlier files.
    """
    report = build_report(run_dir, storage, db)
    out = report.contents.run_dir
    folder = out / FIGURES
    folder.mkdir(exist_ok=True)
    for path in folder.glob("*.png"):  # a figure of an earlier report (a profile's too)
        if path.stem not in report.figures:
            path.unlink(missing_ok=True)
    for name, png in report.figures.items():
        atomic_write(folder / f"{name}.png", lambda handle, png=png: handle.write(png))
    page = out / REPORT
    html = report.html().encode("utf-8")
    atomic_write(page, lambda handle: handle.write(html))
    return page
