"""Ensembles: greedy selection over models' predictions (``selection``, pure functions),
and its use on a study's trials, seed copies and submission (``study``), given only the
parts of the study it uses (``inputs``)."""

from toolkit.ensemble.selection import EnsembleResult, blend, select_ensemble

__all__ = ["EnsembleResult", "blend", "select_ensemble"]
