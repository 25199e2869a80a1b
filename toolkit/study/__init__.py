"""The search: an Optuna study over variations of a recipe, run by one or more workers.

``run`` holds :class:`StudyRun` (a recipe's study and its trials), ``objective``
one trial, ``space`` the search space over recipe keys, ``settings`` which study
a recipe runs, ``storage`` and ``samplers`` Optuna's parts, ``workers`` who runs
what and whether it lives, ``profile_budget`` which profile's trial runs next,
``overrun`` whether a trial would end well past the timeout, ``live`` the view
on the terminal.

The names load on first use, so ``toolkit.study.settings`` alone imports
neither Optuna nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.study.run import StudyRun
    from toolkit.study.settings import has_study, search_settings, storage_url, study_name
    from toolkit.study.workers import WorkerReport

_HOMES = {
    "StudyRun": "toolkit.study.run",
    "WorkerReport": "toolkit.study.workers",
    "has_study": "toolkit.study.settings",
    "search_settings": "toolkit.study.settings",
    "storage_url": "toolkit.study.settings",
    "study_name": "toolkit.study.settings",
}

__all__ = [
    "StudyRun",
    "WorkerReport",
    "has_study",
    "search_settings",
    "storage_url",
    "study_name",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazily loaded ones included."""
    return sorted({*globals(), *__all__})
