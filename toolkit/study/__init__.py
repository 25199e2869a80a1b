"""The search: an Optuna study over variations of a recipe, run by one or more workers.

``run`` holds :class:`StudyRun` (a recipe's study and its trials), ``objective``
one trial, ``space`` the search space over recipe keys, ``settings`` which study
a recipe runs, ``storage`` and ``samplers`` Optuna's parts, ``workers`` who runs
what and whether it lives, ``live`` the view on the terminal.
"""

from toolkit.study.run import StudyRun
from toolkit.study.settings import has_study, search_settings, storage_url, study_name
from toolkit.study.workers import WorkerReport

__all__ = [
    "StudyRun",
    "WorkerReport",
    "has_study",
    "search_settings",
    "storage_url",
    "study_name",
]
