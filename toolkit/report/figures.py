"""The report's figures, drawn with matplotlib's Agg backend (no display) as PNG bytes.

Each function draws one figure from the report's data and returns it as a PNG;
its ``figure`` attribute draws the same as a matplotlib ``Figure`` (whose
artists say what the figure shows). The parameter importances are Optuna's own
(``optuna.visualization.matplotlib``). Drawing leaves matplotlib's global
settings as it found them (Optuna's functions switch the style).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from functools import update_wrapper
from typing import Generic, ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from toolkit.metrics import Metric, get_metric
from toolkit.report.collect import ModelHistory, StudyData
from toolkit.report.scores import ClassScores
from toolkit.runs.records import EnsembleRecord
from toolkit.wording import count

matplotlib.use("Agg")  # files only: never open a window, whatever the environment says

DPI = 80
"""Pixels per inch of the PNGs: sharp enough on a screen, small and quick to draw."""

LINE_STYLES = {"pruned": "--", "failed": ":"}
"""How a model's curves are drawn by its state (solid otherwise)."""

CURVE_PANELS = (
    ("train_loss", "train loss"),
    ("val_loss", "validation loss"),
    ("lr", "learning rate"),
    ("train_accuracy", "train accuracy"),
    ("val_accuracy", "validation accuracy"),
)
"""The learning-curve panels: a ``metrics.csv`` column and its title."""

LOG_PANELS = ("train_loss", "val_loss", "lr")
"""Panels drawn on a log scale (when every value is positive): one bad epoch, such as a
first epoch's loss ten times the rest, then does not flatten the other epochs."""

BEST_EPOCH_PANELS = ("val_loss", "val_accuracy")
"""Panels where each model's best epoch (the one it kept) is marked with a star."""

BEST_EPOCH_MARKER = {
    "marker": "*",
    "markersize": 13,
    "markeredgecolor": "black",
    "markeredgewidth": 0.7,
    "linestyle": "",
}
"""How a best epoch is marked, in its model's colour."""

PRUNED_MARKER = {"facecolors": "none", "edgecolors": "grey", "linewidths": 1.2}
"""Pruned trials in the search's figures: hollow grey circles."""
PRUNED_LABEL = "pruned trial (its best value before it was stopped)"

MAX_LEGEND = 40
"""Models named in the learning curves' legend at most."""


P = ParamSpec("P")


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (without the software tag)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


class _Drawing(Generic[P]):
    """A drawing function: called, its figure as PNG bytes; ``.figure(...)``, the Figure."""

    def __init__(self, draw: Callable[P, Figure]) -> None:
        self.figure = draw
        update_wrapper(self, draw)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> bytes:
        """The figure as PNG, drawn with matplotlib's settings restored after it."""
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental and empty-plot warnings
            figure = self.figure(*args, **kwargs)
            try:
                return png(figure)
            finally:
                plt.close(figure)  # pyplot's own figures (Optuna's) stay open otherwise


@_Drawing
def learning_curves(histories: list[ModelHistory], metric: str) -> Figure:
    """Train and validation loss and accuracy, and learning rate, per epoch: a line per model.

    Pruned models are dashed, failed ones dotted. A history with a ``fold``
    column (k-fold cross-validation) has a thin line per fold. The losses and
    the learning rate are on a log scale (see :data:`LOG_PANELS`). Each model's
    best epoch, the one whose weights it kept (chosen by ``metric``; with folds,
    their mean best epoch), is a star on the validation panels.
    """
    figure = Figure(figsize=(13, 7), layout="constrained")
    axes = figure.subplots(2, 3).flatten()
    colours = matplotlib.colormaps["tab10" if len(histories) <= 10 else "tab20"]
    handles = []
    starred = False
    for i, model in enumerate(histories):
        style = LINE_STYLES.get(model.state, "-")
        colour = colours(i % colours.N)
        for fold, part in _folds(model.history):
            width = 1.8 if fold is None else 0.9
            for ax, (column, _) in zip(axes, CURVE_PANELS, strict=False):
                if column not in part.columns or "epoch" not in part.columns:
                    continue
                (line,) = ax.plot(
                    part["epoch"],
                    part[column],
                    color=colour,
                    linestyle=style,
                    linewidth=width,
                    marker="o" if len(part) == 1 else None,
                )
                if fold in (None, _first_fold(model.history)) and column == "val_loss":
                    line.set_label(_curve_label(model))
                    handles.append(line)
                kept = part[part["epoch"] == model.best_epoch]
                if column in BEST_EPOCH_PANELS and len(kept):
                    ax.plot(kept["epoch"], kept[column], color=colour, **BEST_EPOCH_MARKER)
                    starred = True
    for ax, (column, title) in zip(axes, CURVE_PANELS, strict=False):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if _log_scale(histories, column):
            ax.set_yscale("log")
            for formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                formatter(LogFormatter(labelOnlyBase=False))  # 1.5, not 1.5x10^0
            title += " (log scale)"
        ax.set_title(title)
        if column.endswith("accuracy"):
            ax.set_ylim(-0.02, 1.02)
    legend_axes = axes[-1]
    legend_axes.axis("off")
    shown = handles[:MAX_LEGEND]
    title = "model" if len(histories) == 1 else "trial (dashed: pruned)"
    if len(handles) > len(shown):
        title += f", first {len(shown)} of {len(handles)}"
    if starred:
        star = Line2D([], [], color="grey", **BEST_EPOCH_MARKER)
        shown = [*shown, star]
        star.set_label(f"best epoch, kept (by validation {metric.replace('_', ' ')})")
    legend_axes.legend(
        shown,
        [h.get_label() for h in shown],
        loc="center",
        ncols=1 if len(shown) <= 12 else 2,
        title=title,
        frameon=False,
        fontsize="small",
    )
    return figure


def _curve_label(model: ModelHistory) -> str:
    """A model's name in the learning curves' legend, with its state and best epoch."""
    label = model.name
    if model.state not in ("", "complete"):
        label += f" ({model.state})"
    if model.best_epoch is not None:
        label += f", best epoch {model.best_epoch}"
    return label


def _folds(history: pd.DataFrame) -> Iterator[tuple[int | None, pd.DataFrame]]:
    """The history whole, or per fold when it has a ``fold`` column."""
    if "fold" not in history.columns:
        yield None, history
        return
    for fold, part in history.groupby("fold", sort=True):
        yield int(fold), part  # type: ignore[call-overload]


def _first_fold(history: pd.DataFrame) -> int | None:
    return int(history["fold"].min()) if "fold" in history.columns else None


def _log_scale(histories: list[ModelHistory], column: str) -> bool:
    """Whether a panel is drawn on a log scale: one of :data:`LOG_PANELS` whose values are
    all positive."""
    if column not in LOG_PANELS:
        return False
    parts = [h.history[column].to_numpy(dtype=float) for h in histories if column in h.history]
    values = np.concatenate(parts) if parts else np.zeros(0)
    values = values[~np.isnan(values)]
    return bool(values.size) and bool((values > 0).all())


@_Drawing
def optimization_history(study: StudyData) -> Figure:
    """Each finished trial's metric by trial number, and the best so far.

    Complete trials are filled dots; pruned ones hollow grey circles at the
    best value they reported before the pruner stopped them (the value their
    leaderboard row keeps). The best so far follows the complete trials.
    """
    metric = get_metric(study.metric)
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    ax = figure.subplots()
    complete = sorted(_complete_values(study.trials))
    if complete:
        numbers, values = (np.array(v, dtype=float) for v in zip(*complete, strict=True))
        best = (np.maximum if metric.direction == "maximize" else np.minimum).accumulate(values)
        ax.plot(numbers, best, color="tab:red", drawstyle="steps-post", label="best so far")
        ax.scatter(numbers, values, color="tab:blue", zorder=3, label="complete trial")
    pruned = sorted(_pruned_values(study.trials, metric))
    if pruned:
        numbers, values = (np.array(v, dtype=float) for v in zip(*pruned, strict=True))
        ax.scatter(numbers, values, zorder=3, label=PRUNED_LABEL, **PRUNED_MARKER)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {study.metric}")
    ax.set_title("optimization history")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return figure


def _complete_values(trials: list[FrozenTrial]) -> list[tuple[int, float]]:
    """(number, metric) of each complete trial."""
    return [
        (t.number, float(t.value))
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None
    ]


def _pruned_values(trials: list[FrozenTrial], metric: Metric) -> list[tuple[int, float]]:
    """(number, best reported value) of each pruned trial that reported one."""
    return [
        (t.number, metric.best(t.intermediate_values.values()))
        for t in trials
        if t.state == TrialState.PRUNED and t.intermediate_values
    ]


@_Drawing
def param_importances(study: StudyData) -> Figure:
    """Optuna's parameter importances (fANOVA) over the complete trials.

    Raises ``ValueError`` when they cannot be computed (fewer than two complete
    trials, no parameter searched, or the same metric for every trial).
    """
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2 or not any(t.params for t in complete):
        raise ValueError("parameter importances need two complete trials with searched values")
    params = None  # every key all complete trials have; a profile's: its own keys
    if study.profile is not None:
        params = [k for k in study.space if all(k in t.params for t in complete)]
        if not params:
            raise ValueError(f"profile {study.profile} searches no key its trials all have")
    evaluator = FanovaImportanceEvaluator(n_trees=32, seed=0)
    try:
        ax = plot_param_importances(
            study.study, evaluator=evaluator, params=params, target_name=study.metric
        )
    except RuntimeError as exc:  # fANOVA finds no variance: every trial scored the same
        raise ValueError(f"the complete trials' metric does not vary ({exc})") from None
    return _sized(ax.figure, 8, max(2.5, 0.6 * len(study.space) + 1.5))


@_Drawing
def param_slices(study: StudyData) -> Figure:
    """Each searched key's values against the trials' metric, a panel per key.

    Complete trials are filled dots, pruned ones hollow grey circles at their
    best reported value (as in :func:`optimization_history`). A key of choices
    has a position per choice; a key searched on a log scale, a log axis.
    Raises ``ValueError`` when no complete trial has searched values.
    """
    if not any(t.params for t in study.trials if t.state == TrialState.COMPLETE):
        raise ValueError("no complete trial has searched values")
    metric = get_metric(study.metric)
    shown = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    seen = {key for t in shown for key in t.params}
    keys = [k for k in study.space if k in seen]
    if not study.profiles and study.profile is None:  # a key the recipe no longer searches
        keys += sorted(seen - set(study.space))
    if not keys:
        raise ValueError("no searched key has values")
    figure = Figure(figsize=(min(max(4.5 * len(keys), 8.0), 16.0), 4.2), layout="constrained")
    axes = figure.subplots(1, len(keys), sharey=True, squeeze=False)[0]
    values = {
        "complete": dict(_complete_values(shown)),
        "pruned": dict(_pruned_values(shown, metric)),
    }
    for ax, key in zip(axes, keys, strict=True):
        distribution = next(t.distributions[key] for t in shown if key in t.distributions)
        for state, style in (
            ("complete", {"color": "tab:blue", "label": "complete trial"}),
            ("pruned", {"label": PRUNED_LABEL, **PRUNED_MARKER}),
        ):
            points = [
                (t.params[key], values[state][t.number])
                for t in shown
                if key in t.params and t.number in values[state]
            ]
            if not points:
                continue
            x = [p for p, _ in points]
            if isinstance(distribution, CategoricalDistribution):
                x = [list(distribution.choices).index(p) for p in x]
            ax.scatter(x, [v for _, v in points], zorder=3, **style)
        if isinstance(distribution, CategoricalDistribution):
            ax.set_xticks(range(len(distribution.choices)), [str(c) for c in distribution.choices])
            ax.set_xlim(-0.5, len(distribution.choices) - 0.5)
        elif getattr(distribution, "log", False):
            ax.set_xscale("log")
            ax.tick_params(axis="x", which="both", labelrotation=30)  # 2x10^-3 3x10^-3 ...
        ax.set_title(key.removeprefix(f"{study.profile}:") if study.profile else key)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"validation {study.metric}")
    axes[-1].legend(loc="best", fontsize="small")
    return figure


def _sized(figure: Figure, width: float, height: float) -> Figure:
    figure.set_size_inches(width, height)  # saved cropped to what is drawn (Optuna's layout)
    return figure


@_Drawing
def confusion(scores: ClassScores, title: str) -> Figure:
    """The confusion matrix (counts, coloured by share of the true class) beside each class's
    precision and recall."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    matrix_ax, bars_ax = figure.subplots(1, 2, width_ratios=[1, 1.3])
    counts = scores.confusion
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    matrix_ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, column), n in np.ndenumerate(counts):
        colour = "white" if share[row, column] > 0.55 else "black"
        matrix_ax.text(column, row, str(n), ha="center", va="center", color=colour)
    ticks = range(len(scores.classes))
    matrix_ax.set_xticks(ticks, scores.classes, rotation=30, ha="right")
    matrix_ax.set_yticks(ticks, scores.classes)
    matrix_ax.set_xlabel("predicted")
    matrix_ax.set_ylabel("true")
    matrix_ax.set_title(f"{title}: {count(int(counts.sum()), 'clip')}")
    x = np.arange(len(scores.classes))
    bars_ax.bar(x - 0.2, scores.precision, width=0.4, label="precision")
    bars_ax.bar(x + 0.2, scores.recall, width=0.4, label="recall")
    bars_ax.set_xticks(x, scores.classes, rotation=30, ha="right")
    bars_ax.set_ylim(0, 1.2)
    bars_ax.set_yticks(np.linspace(0, 1, 6))
    bars_ax.set_title("per class")
    bars_ax.grid(axis="y", alpha=0.3)
    bars_ax.legend(loc="upper right", ncols=2)
    return figure


@_Drawing
def ensemble(data: EnsembleRecord) -> Figure:
    """The ensemble's members by weight beside the greedy trajectory (metric after each pick)."""
    figure = Figure(figsize=(12, max(3.5, 0.35 * len(data.members) + 1.5)), layout="constrained")
    weights_ax, path_ax = figure.subplots(1, 2)
    members = sorted(data.weights.items(), key=lambda item: (-item[1], item[0]))
    names = [name.rsplit("/", 1)[-1] for name, _ in members]
    weights_ax.barh(names[::-1], [w for _, w in members][::-1], color="tab:blue")
    weights_ax.set_xlabel("weight")
    weights_ax.set_title(count(len(members), "member"))
    weights_ax.grid(axis="x", alpha=0.3)
    if data.trajectory:
        rounds = np.arange(1, len(data.trajectory) + 1)
        path_ax.plot(rounds, data.trajectory, marker="o", label="ensemble")
        metric = get_metric(data.metric)
        best = metric.best(data.trajectory)
        kept = int(np.flatnonzero(np.isclose(data.trajectory, best, rtol=0, atol=1e-12))[0]) + 1
        path_ax.plot([kept], [best], marker="*", markersize=14, color="tab:red", linestyle="")
        path_ax.annotate(
            f"kept: {count(kept, 'pick')}",
            (kept, best),
            textcoords="offset points",
            xytext=(6, -14),
        )
    path_ax.axhline(data.best_trial_metric, color="grey", linestyle="--", label="best trial")
    path_ax.set_xlabel("greedy round (pick)")
    path_ax.set_ylabel(f"validation {data.metric}")
    stacked = data.method == "stack"  # the members' weights are then the stack's shares
    path_ax.set_title("greedy selection" + (" (not kept: the stack was)" if stacked else ""))
    if stacked:
        weights_ax.set_xlabel("share of the stack's coefficients")
    path_ax.grid(alpha=0.3)
    path_ax.legend(
        loc="lower right" if get_metric(data.metric).direction == "maximize" else "upper right"
    )
    return figure
