"""The report's figures, drawn with matplotlib's Agg backend (no display) as PNG bytes.

Each function draws one figure from the report's data and returns it as a PNG;
the search's figures are Optuna's own (``optuna.visualization.matplotlib``).
Drawing leaves matplotlib's global settings as it found them (Optuna's
functions switch the style).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from functools import wraps
from typing import ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from toolkit.metrics import get_metric
from toolkit.report.collect import EnsembleData, ModelHistory, StudyData
from toolkit.report.scores import ClassScores

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

MAX_LEGEND = 40
"""Models named in the learning curves' legend at most."""


P = ParamSpec("P")


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (without the software tag)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _as_png(draw: Callable[P, Figure]) -> Callable[P, bytes]:
    """Run a drawing function with matplotlib's settings restored after it; return its PNG."""

    @wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> bytes:
        with matplotlib.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental and empty-plot warnings
            figure = draw(*args, **kwargs)
            try:
                return png(figure)
            finally:
                plt.close(figure)  # pyplot's own figures (Optuna's) stay open otherwise

    return drawn


@_as_png
def learning_curves(histories: list[ModelHistory]) -> Figure:
    """Train and validation loss and accuracy, and learning rate, per epoch: a line per model.

    Pruned models are dashed, failed ones dotted. A history with a ``fold``
    column (k-fold cross-validation) has a thin line per fold.
    """
    figure = Figure(figsize=(13, 7), layout="constrained")
    axes = figure.subplots(2, 3).flatten()
    colours = matplotlib.colormaps["tab10" if len(histories) <= 10 else "tab20"]
    handles = []
    for i, model in enumerate(histories):
        style = LINE_STYLES.get(model.state, "-")
        for fold, part in _folds(model.history):
            width = 1.8 if fold is None else 0.9
            for ax, (column, _) in zip(axes, CURVE_PANELS, strict=False):
                if column not in part.columns or "epoch" not in part.columns:
                    continue
                (line,) = ax.plot(
                    part["epoch"],
                    part[column],
                    color=colours(i % colours.N),
                    linestyle=style,
                    linewidth=width,
                    marker="o" if len(part) == 1 else None,
                )
                if fold in (None, _first_fold(model.history)) and column == "val_loss":
                    suffix = f" ({model.state})" if model.state not in ("", "complete") else ""
                    line.set_label(f"{model.name}{suffix}")
                    handles.append(line)
    for ax, (column, title) in zip(axes, CURVE_PANELS, strict=False):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if _log_scale(histories, column):
            ax.set_yscale("log")
        if column.endswith("accuracy"):
            ax.set_ylim(-0.02, 1.02)
    legend_axes = axes[-1]
    legend_axes.axis("off")
    shown = handles[:MAX_LEGEND]
    title = "model" if len(histories) == 1 else "trial (dashed: pruned)"
    if len(handles) > len(shown):
        title += f", first {len(shown)} of {len(handles)}"
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
    """Whether a panel reads better on a log scale: the learning rate, or values spread over
    more than a factor of 20 (one diverging trial), when all are positive."""
    parts = [h.history[column].to_numpy(dtype=float) for h in histories if column in h.history]
    values = np.concatenate(parts) if parts else np.zeros(0)
    if not values.size or (values <= 0).any():
        return False
    return column == "lr" or values.max() / values.min() > 20


@_as_png
def optimization_history(study: StudyData) -> Figure:
    """Optuna's optimization history: each trial's metric and the best so far."""
    from optuna.visualization.matplotlib import plot_optimization_history

    ax = plot_optimization_history(study.study, target_name=study.metric)
    return _sized(ax.figure, 8, 4.5)


@_as_png
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
    evaluator = FanovaImportanceEvaluator(n_trees=32, seed=0)
    try:
        ax = plot_param_importances(study.study, evaluator=evaluator, target_name=study.metric)
    except RuntimeError as exc:  # fANOVA finds no variance: every trial scored the same
        raise ValueError(f"the complete trials' metric does not vary ({exc})") from None
    return _sized(ax.figure, 8, max(2.5, 0.6 * len(study.space) + 1.5))


@_as_png
def param_slices(study: StudyData) -> Figure:
    """Optuna's slice plot: each searched key's values against the trials' metric.

    Raises ``ValueError`` when no complete trial has searched values.
    """
    from optuna.visualization.matplotlib import plot_slice

    if not any(t.params for t in study.trials if t.state.name == "COMPLETE"):
        raise ValueError("no complete trial has searched values")

    axes = plot_slice(study.study, target_name=study.metric)
    first = np.asarray(axes).flatten()[0]
    count = np.asarray(axes).size
    return _sized(first.figure, min(max(5.0 * count, 8.0), 16.0), 4.2)


def _sized(figure: Figure, width: float, height: float) -> Figure:
    figure.set_size_inches(width, height)  # saved cropped to what is drawn (Optuna's layout)
    return figure


@_as_png
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
    matrix_ax.set_title(f"{title}: {int(counts.sum())} clips")
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


@_as_png
def ensemble(data: EnsembleData) -> Figure:
    """The ensemble's members by weight beside the greedy trajectory (metric after each pick)."""
    figure = Figure(figsize=(12, max(3.5, 0.35 * len(data.members) + 1.5)), layout="constrained")
    weights_ax, path_ax = figure.subplots(1, 2)
    members = sorted(data.members.items(), key=lambda item: (-item[1], item[0]))
    names = [name.rsplit("/", 1)[-1] for name, _ in members]
    weights_ax.barh(names[::-1], [w for _, w in members][::-1], color="tab:blue")
    weights_ax.set_xlabel("weight")
    weights_ax.set_title(f"{len(members)} members")
    weights_ax.grid(axis="x", alpha=0.3)
    if data.trajectory:
        rounds = np.arange(1, len(data.trajectory) + 1)
        path_ax.plot(rounds, data.trajectory, marker="o", label="ensemble")
        metric = get_metric(data.metric)
        best = metric.best(data.trajectory)
        kept = int(np.flatnonzero(np.isclose(data.trajectory, best, rtol=0, atol=1e-12))[0]) + 1
        path_ax.plot([kept], [best], marker="*", markersize=14, color="tab:red", linestyle="")
        path_ax.annotate(
            f"kept: {kept} picks", (kept, best), textcoords="offset points", xytext=(6, -14)
        )
    path_ax.axhline(data.best_trial_metric, color="grey", linestyle="--", label="best trial")
    path_ax.set_xlabel("greedy round (pick)")
    path_ax.set_ylabel(f"validation {data.metric}")
    path_ax.set_title("greedy selection")
    path_ax.grid(alpha=0.3)
    path_ax.legend(
        loc="lower right" if get_metric(data.metric).direction == "maximize" else "upper right"
    )
    return figure
