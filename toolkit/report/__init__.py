"""``toolkit report``: one self-contained HTML page of a run's figures, and the figures as PNGs.

``collect`` reads a run directory, ``scores`` scores its predictions,
``stages`` says where its time went, ``figures`` draws, ``page`` writes the
HTML and ``build`` puts them together.
"""

from toolkit.report.build import FIGURES, REPORT, Report, build_report, write_report

__all__ = ["FIGURES", "REPORT", "Report", "build_report", "write_report"]
