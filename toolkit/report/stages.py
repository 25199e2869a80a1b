"""Where a run's time went, stage by stage, and how much of its audio work the cache saved."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.report.collect import RunContents, model_kind
from toolkit.wording import count


@dataclass(frozen=True)
class Stage:
    """One stage of the run: its wall time (``None`` when not recorded) and what it did."""

    name: str
    seconds: float | None
    detail: str


def stage_times(contents: RunContents) -> list[Stage]:
    """Separation, features, training and (for a study) the ensemble, as the run recorded them.

    Separation and features come from ``stats.json`` (what this run's process
    computed or found in the cache); training is the models' leaderboard times
    added up (for a plain run, less the data preparation its time includes).
    """
    stats = contents.stats or {}
    separation = _seconds(stats, "separation_seconds")
    features = _seconds(stats, "features_seconds")
    stages = [
        Stage(
            "separation",
            separation,
            _stems(stats),
        ),
        Stage(
            "features",
            features,
            _counts(stats, "features", "computed", "reused from the cache")
            + "; "
            + _counts(stats, "splits", "assembled", "reused"),
        ),
    ]
    if contents.is_study:
        models = [r for r in contents.rows if r.kind != "ensemble" and r.seconds is not None]
        copies = sum(1 for r in models if model_kind(r) == "seed")
        refits = sum(1 for r in models if r.kind == "refit")
        detail = count(len(models) - copies - refits, "trial")
        detail += f", {count(copies, 'seed copy', 'seed copies')}" if copies else ""
        detail += f", {count(refits, 'refit')} on every clip" if refits else ""
        training = sum(float(r.seconds or 0.0) for r in models) if models else None
        stages.append(Stage("training", training, f"{detail}, added up"))
        if contents.ensemble is not None:
            chosen = contents.ensemble
            row = next((r for r in contents.rows if r.id == chosen.id), None)
            detail = f"selection over {count(chosen.candidates, 'candidate')}"
            stages.append(Stage("ensemble", row.seconds if row else None, detail))
        return stages
    row = contents.best_row
    training = None
    if row is not None and row.seconds is not None:
        training = max(0.0, float(row.seconds) - (separation or 0.0) - (features or 0.0))
    epochs = count(row.epochs, "epoch") if row is not None and row.epochs else "one model"
    stages.append(Stage("training", training, epochs))
    return stages


def _seconds(stats: dict[str, float], key: str) -> float | None:
    value = stats.get(key)
    return float(value) if isinstance(value, int | float) else None


def _stems(stats: dict[str, float]) -> str:
    """What separation did; a run whose features all came from the cache (or from memory)
    needed no stem at all, and says so rather than "0 computed, 0 reused"."""
    made, kept = int(stats.get("stems_computed", 0)), int(stats.get("stems_reused", 0))
    if "stems_computed" in stats and made == kept == 0:
        if stats.get("views_reused"):
            return "stems: not needed, the data was already in memory"
        if stats.get("features_reused") and not stats.get("features_computed"):
            return "stems: not needed, every clip's features were cached"
    return _counts(stats, "stems", "computed", "reused from the cache")


def _counts(stats: dict[str, float], what: str, done: str, reused: str) -> str:
    if f"{what}_{done}" not in stats:
        return f"{what}: not recorded"
    made, kept = int(stats[f"{what}_{done}"]), int(stats.get(f"{what}_reused", 0))
    return f"{what}: {made} {done}, {kept} {reused}"
