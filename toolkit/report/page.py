"""The report as one self-contained HTML page: styles inline, figures as base64 PNGs.

Nothing on the page refers to anything outside it (no stylesheet, script,
font or image to fetch), so it opens the same in any browser, offline.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from toolkit.leaderboard.columns import REPEATED_METRICS
from toolkit.leaderboard.store import Row
from toolkit.leaderboard.view import plain_table
from toolkit.metrics import METRICS, best_key
from toolkit.progress import format_seconds
from toolkit.report.collect import RunContents
from toolkit.report.scores import ClassScores
from toolkit.report.stages import Stage, stage_times
from toolkit.runs.model_key import ModelKey
from toolkit.runs.records import PseudoLabelsRecord
from toolkit.wording import count

SECTIONS = {
    "summary": "Summary",
    "curves": "Learning curves",
    "search": "The search",
    "confusion": "Where the model confuses classes",
    "ensemble": "The ensemble",
    "leaderboard": "Leaderboard",
}
"""Each section's anchor and heading, in page order."""

LEADERBOARD_COLUMNS = (
    "id",
    "state",
    "val_accuracy",
    "val_loss",
    "metric",
    "estimate",
    "fold_mean",
    "public_score",
    "backbone",
    "data",
    "epochs",
    "seconds",
    "params",
)
"""The leaderboard table's columns on the page (the run's recipe and files are said above)."""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1f2328; background: #ffffff; }
header { background: #24292f; color: #ffffff; padding: 16px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #d0d7de; font-size: 13px; }
nav { padding: 8px 32px; background: #f6f8fa; border-bottom: 1px solid #d0d7de; }
nav a { margin-right: 18px; color: #0969da; text-decoration: none; font-size: 14px; }
main { padding: 0 32px 32px 32px; max-width: 1280px; }
section { border-bottom: 1px solid #d8dee4; padding: 8px 0 16px 0; }
p { font-size: 14px; }
h2 { font-size: 20px; margin: 20px 0 10px 0; }
h3 { font-size: 16px; margin: 16px 0 8px 0; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eaeef2; text-align: left;
         white-space: nowrap; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pruned td { color: #8c959f; }
tr.failed td { color: #cf222e; }
tr.ensemble td { font-weight: 600; }
td.id { white-space: pre; font-family: ui-monospace, monospace; }
p.note { color: #9a6700; background: #fff8c5; padding: 4px 8px; display: inline-block;
         margin: 4px 0; font-size: 13px; }
.scroll { overflow-x: auto; }
#leaderboard-rows td:last-child { white-space: normal; min-width: 320px; font-size: 12px; }
"""


def render_page(
    contents: RunContents,
    scores: dict[str, ClassScores],
    figures: dict[str, bytes],
    notes: dict[str, list[str]],
) -> str:
    """The whole page: a section per kind of data the run has, each with its figures and notes.

    ``scores`` holds the ``best`` model's and the ``ensemble``'s, when there;
    ``figures`` PNG bytes by name; ``notes`` one-line remarks by section.
    """
    bodies = {
        "summary": _summary(contents, scores),
        "curves": _curves(contents, figures),
        "search": _search(contents, figures),
        "confusion": _confusion(contents, scores, figures),
        "ensemble": _ensemble(contents, figures),
        "leaderboard": _leaderboard(contents.rows),
    }
    shown = [key for key in SECTIONS if bodies[key] or notes.get(key)]
    parts = [
        f'<section id="{key}"><h2>{SECTIONS[key]}</h2>'
        + "".join(f'<p class="note">{_e(note)}</p>' for note in notes.get(key, []))
        + bodies[key]
        + "</section>"
        for key in shown
    ]
    nav = "".join(f'<a href="#{key}">{SECTIONS[key]}</a>' for key in shown)
    title = f"Report: {contents.recipe.name}"
    made = datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(_path(contents.run_dir))} · made {made}</p></header>"
        f"<nav>{nav}</nav><main>{''.join(parts)}</main></body></html>\n"
    )


# -------------------------------------------------------------------- sections
def _summary(contents: RunContents, scores: dict[str, ClassScores]) -> str:
    run = [("recipe", contents.recipe.name), ("run directory", _path(contents.run_dir))]
    if contents.trained_on is not None:
        run.append(("data", contents.trained_on.describe()))
    if contents.study is not None:
        counts = contents.study.counts()
        done = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        run.append(
            (
                "study",
                f"{contents.study.name}: {count(len(contents.study.trials), 'trial')} ({done})",
            )
        )
    elif not contents.is_study:
        run.append(("kind", "a single model (no search)"))
    run.append(("metric", contents.metric))
    if contents.folds > 1:
        run.append(("validation", f"{contents.folds}-fold cross-validation (out of fold)"))
    if contents.leaderboard is not None:
        run.append(("leaderboard", _path(contents.leaderboard)))
    parts = [_table([], [[_t(k), _t(v)] for k, v in run], header=False)]
    parts.append(_data(contents))
    parts.append(_sources(contents))
    parts.append(_results(contents, scores))
    parts.append("<h3>Time and cache</h3>" + _stages(stage_times(contents)))
    return "".join(parts)


def _data(contents: RunContents) -> str:
    data = contents.data
    if data is None:
        return ""
    held = "out of fold" if data.folds > 1 else "validation"
    headers = ["class"]
    if data.train is not None:
        headers.append("train CSV")
        if data.folds == 1:
            headers.append("trained on")
    headers.append(held)
    lines = []
    for c in data.classes:
        cells = [_t(contents.class_name(c))]
        if data.train is not None:
            cells.append(_n(data.train.get(c, 0)))
            if data.folds == 1:
                cells.append(_n(data.train.get(c, 0) - data.validation.get(c, 0)))
        cells.append(_n(data.validation.get(c, 0)))
        lines.append(cells)
    total = ["<td><b>all</b></td>"]
    if data.train is not None:
        total.append(_n(sum(data.train.values())))
        if data.folds == 1:
            total.append(_n(sum(data.train.values()) - sum(data.validation.values())))
    total.append(_n(sum(data.validation.values())))
    lines.append(total)
    test = f"<p>Test clips: {data.test}</p>" if data.test is not None else ""
    return "<h3>Data</h3>" + _table(headers, lines) + test


def _sources(contents: RunContents) -> str:
    found = contents.sources
    if not found:
        return ""
    pairs, straddled = int(found["pairs"]), int(found["straddled"])
    share = f" ({straddled / pairs:.0%})" if pairs else ""
    capped = (
        f" {found['refused']} link(s) were not followed to keep groups under {found['cap']} clips."
        if found.get("refused")
        else ""
    )
    return (
        "<h3>Clips that share a source</h3>"
        f"<p>split.groups: auto found {count(found['groups'], 'group')} among "
        f"{count(found['clips'], 'train clip')} (the largest {found['largest']}, "
        f"{found['alone']} alone); every split keeps each group on one side. Of the "
        f"{count(pairs, 'pair')} of clips in one group, the split "
        f"without groups put {straddled}{share} on both sides.{_e(capped)} "
        "<code>toolkit leaks RECIPE</code> compares a linear probe with and without the "
        "groups.</p>"
    )


def _results(contents: RunContents, scores: dict[str, ClassScores]) -> str:
    held = "out-of-fold" if contents.folds > 1 else "validation"
    columns = [m.history_key for m in METRICS.values()]
    headers = ["model", *(f"{held} {m.name.replace('_', ' ')}" for m in METRICS.values())]
    headers.append("public score")
    lines = []
    for key, label in (("best", "best single model"), ("ensemble", "ensemble")):
        if key not in scores:
            continue
        row = contents.best_row if key == "best" else _ensemble_row(contents)
        public = row.public_score if row is not None else None
        cells = (_f(scores[key].metrics[c]) for c in columns)
        lines.append([_t(f"{label}: {scores[key].name}"), *cells, _f(public, 5, "—")])
    if not lines:
        return ""
    return "<h3>Results</h3>" + _table(headers, lines)


def _stages(stages: Sequence[Stage]) -> str:
    lines = [[_t(s.name), _duration(s.seconds), _t(s.detail)] for s in stages]
    return _table(["stage", "wall time", "what it did"], lines)


def _curves(contents: RunContents, figures: dict[str, bytes]) -> str:
    if "learning_curves" not in figures:
        return ""
    many = len(contents.histories) > 1
    what = "one line per trial; pruned trials dashed" if many else "the run's model"
    folds = any("fold" in h.history.columns for h in contents.histories)
    if folds:
        what += "; a thin line per fold"
    kept = "the mean of its folds' best epochs" if folds else "the epoch whose weights it kept"
    return _img(
        figures,
        "learning_curves",
        f"Per epoch ({what}). Losses and learning rate on a log scale. A star marks each "
        f"model's best epoch ({kept}, by validation {contents.metric}).",
    )


def _search(contents: RunContents, figures: dict[str, bytes]) -> str:
    parts = [_search_figures(figures)]
    study = contents.study
    if study is None or not study.profiles:
        return "".join(parts)
    parts.append(
        "<p>Each trial drew a profile (a model family), then that profile's values; the "
        "pruner compared it with its own profile's trials.</p>"
    )
    parts.append(_profile_table(contents))
    for profile in study.profiles:
        parts.append(f'<h3 id="search-{_e(profile)}">Profile {_e(profile)}</h3>')
        parts.append(_search_figures(figures, f"-{profile}"))
    return "".join(parts)


def _profile_table(contents: RunContents) -> str:
    """A line per profile: its trials by state, its best trial and the time its trials took."""
    assert contents.study is not None
    lines = []
    for profile in contents.study.profiles:
        view = contents.study.of_profile(profile)
        counts = view.counts()
        done = [t for t in view.trials if t.state.name == "COMPLETE" and t.value is not None]
        number = best_key(((t.number, float(t.value or 0.0)) for t in done), contents.metric)
        run = contents.run_dir.name
        best = next((t for t in done if t.number == number), None)
        lines.append(
            [
                _t(profile),
                _n(counts["complete"]),
                _n(counts["pruned"]),
                _n(counts["failed"]),
                _f(None if best is None else best.value),
                _t("" if best is None else ModelKey.of_trial(run, best.number).name),
                _duration(view.seconds()),
            ]
        )
    headers = ["profile", "complete", "pruned", "failed", f"best {contents.metric}", "trial"]
    return _table([*headers, "time"], lines, id="profiles")


def _search_figures(figures: dict[str, bytes], suffix: str = "") -> str:
    """The search's figures (of one profile's trials, with ``suffix``), captioned."""
    parts = []
    for name, caption in (
        (
            "optimization_history",
            "Each trial's metric, and the best so far; pruned trials are hollow grey circles,"
            " at the best value they reported before they were stopped.",
        ),
        (
            "param_importances",
            "How much of the metric's variation each searched key explains (complete trials).",
        ),
        (
            "param_slices",
            "Each searched key's values against the trials' metric; pruned trials hollow grey.",
        ),
    ):
        if name + suffix in figures:
            parts.append(_img(figures, name + suffix, caption))
    return "".join(parts)


def _confusion(
    contents: RunContents, scores: dict[str, ClassScores], figures: dict[str, bytes]
) -> str:
    held = "out-of-fold" if contents.folds > 1 else "validation"
    parts = []
    alone = contents.lone_member()
    for key, label in (("best", "Best single model"), ("ensemble", "Ensemble")):
        if key not in scores:
            continue
        if key == "ensemble" and alone is not None:
            parts.append(
                f"<p>The ensemble is trial {_e(alone)} alone: its figures are the best model's.</p>"
            )
            continue
        s = scores[key]
        parts.append(f"<h3>{label} ({_e(s.name)}): {held} predictions</h3>")
        parts.append(_img(figures, f"confusion_{key}", ""))
        lines = [
            [_t(c), _n(int(s.support[i])), _f(s.precision[i]), _f(s.recall[i]), _f(s.f1[i])]
            for i, c in enumerate(s.classes)
        ]
        parts.append(
            _table(["class", "clips", "precision", "recall", "F1"], lines, id=f"classes-{key}")
        )
    return "".join(parts)


def _ensemble(contents: RunContents, figures: dict[str, bytes]) -> str:
    data = contents.ensemble
    if data is None:
        return ""
    lines = [
        [_t(m), _f(w, 4)]
        for m, w in sorted(data.weights.items(), key=lambda item: (-item[1], item[0]))
    ]
    text = (
        f"<p>{_e(data.id)}: validation {_e(data.metric)} {data.val_metric:.4f} against "
        f"{data.best_trial_metric:.4f} for the best trial ({_e(data.best_trial)}); "
        f"{count(data.candidates, 'candidate')}, {count(len(data.picks), 'greedy pick')}.</p>"
    )
    if data.estimate:
        estimate = data.estimate
        also = "" if estimate.metric == "accuracy" else f", accuracy {estimate.accuracy:.4f}"
        text += (
            f"<p><b>Estimate: {_e(estimate.metric)} {estimate.value:.4f}"
            f"{also}</b>, the number to expect on new "
            f"clips: the selection repeated on {len(estimate.parts)} parts of the clips, "
            "each chosen without the part it is scored on (the validation score above was "
            "measured on the predictions that chose the ensemble).</p>"
        )
    if len(data.estimates) > 1:
        both = ", ".join(
            f"{_e(m)} {e.value:.4f}" for m, e in sorted(data.estimates.items())
        )
        kept = (
            "a logistic regression over the trials' held-out probabilities (each member's "
            "weight: its share of the regression's coefficients)"
            if data.method == "stack"
            else "the greedy selection's weighted average"
        )
        text += (
            f"<p>Method ({_e(data.method)}): {kept}; estimates, each cross-validated over the "
            f"same parts: {both}.</p>"
        )
    if data.pseudo_labels:
        text += _pseudo_labels(data.pseudo_labels)
    members = _table(["member", "weight"], lines, id="ensemble-members")
    return text + _img(figures, "ensemble", "") + members


def _pseudo_labels(record: PseudoLabelsRecord) -> str:
    """The pseudo-label round in a paragraph."""
    clips = max(record.test_clips, default=0)
    if record.estimate_after is None:
        return (
            f"<p>Pseudo-labels: no test clip reached the confidence {record.threshold}; "
            "no second round was trained.</p>"
        )
    verdict = "kept: the ensemble above includes them" if record.kept else "not kept"
    return (
        f"<p>Pseudo-labels: {len(record.models)} chosen trials trained again with up to "
        f"{clips} of {record.of} test clips (confidence ≥ {record.threshold}, power "
        f"{record.power}); estimate {_e(record.metric)} "
        f"{record.estimate_before:.4f} before, "
        f"{record.estimate_after:.4f} with them: {verdict}.</p>"
    )


def _leaderboard(rows: list[Row]) -> str:
    if not rows:
        return ""
    columns = list(LEADERBOARD_COLUMNS)
    if {r.metric for r in rows if r.metric} <= REPEATED_METRICS:
        columns.remove("metric")  # the val acc or val loss column already shows it
    if not any(r.folds for r in rows):
        columns.remove("fold_mean")
    if not any(r.estimate is not None for r in rows):
        columns.remove("estimate")
    headers, lines = plain_table(rows, columns)
    body = "".join(
        f'<tr class="{"ensemble" if line.row.kind == "ensemble" else line.row.state}">'
        + "".join(_t(cell, "id" if i == 0 else "") for i, cell in enumerate(line.cells))
        + "</tr>"
        for line in lines
    )
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<div class="scroll"><table id="leaderboard-rows"><tr>{head}</tr>{body}</table></div>'


# --------------------------------------------------------------------- helpers
def _path(path: Path) -> str:
    """A path as the reader typed it: relative to the current folder when inside it."""
    absolute = path.resolve()
    return (
        str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(path)
    )


def _ensemble_row(contents: RunContents) -> Row | None:
    if contents.ensemble is None:
        return None
    return next((r for r in contents.rows if r.id == contents.ensemble.id), None)


def _img(figures: dict[str, bytes], name: str, caption: str) -> str:
    data = base64.b64encode(figures[name]).decode("ascii")
    text = f"<p>{_e(caption)}</p>" if caption else ""
    return f'<img alt="{name}" src="data:image/png;base64,{data}">{text}'


def _table(
    headers: Sequence[str],
    lines: Iterable[Sequence[str]],
    header: bool = True,
    id: str | None = None,
) -> str:
    """A table whose lines are lists of ``<td>`` cells (made by ``_t``, ``_n``, ``_f``)."""
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(line) + "</tr>" for line in lines)
    attr = f' id="{id}"' if id else ""
    return f"<table{attr}>{head}{body}</table>"


def _t(text: object, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{_e(text)}</td>"


def _n(value: int) -> str:
    return f'<td class="num">{value}</td>'


def _f(value: float | None, digits: int = 4, missing: str = "") -> str:
    if value is None:
        return f'<td class="num">{missing}</td>'
    text = f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    return f'<td class="num">{text}</td>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return '<td class="num">—</td>'
    text = f"{seconds:.1f}s" if seconds < 60 else format_seconds(seconds)
    return f'<td class="num">{text}</td>'


def _e(text: object) -> str:
    return html.escape(str(text))
