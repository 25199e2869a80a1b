"""A recipe's Optuna study in its storage: opened once, checked against the recipe, read."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from toolkit.errors import SearchError, error_at
from toolkit.metrics import best_key, get_metric
from toolkit.study.samplers import build_pruner, build_sampler
from toolkit.study.settings import StudySettings
from toolkit.study.storage import open_storage
from toolkit.study.workers import trial_counts

OnStale = Callable[[optuna.Study, FrozenTrial], None]
"""Told of each trial the storage fails for want of a heartbeat."""


class StudyHandle:
    """The Optuna study of a recipe: created in its storage on first use, or loaded.

    A study made for another metric, direction or validation set is refused with
    a one-line error saying to start a new study.
    """

    def __init__(self, settings: StudySettings, on_stale: OnStale | None = None) -> None:
        self.settings = settings
        self.on_stale = on_stale
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        """The study, opened on first use."""
        if self._study is None:
            self._study = self._open()
        return self._study

    def _open(self) -> optuna.Study:
        s = self.settings
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        storage = open_storage(s.storage, self.on_stale)
        wanted = get_metric(s.metric).direction
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=s.name,
                direction=wanted,  # type: ignore[arg-type]
                sampler=build_sampler(s.search.sampler),
                pruner=build_pruner(s.search.pruner, s.max_steps, bool(s.search.profiles)),
                load_if_exists=True,
            )
        except Exception as exc:  # noqa: BLE001
            raise SearchError(error_at(f"study {s.name} in {s.storage}", exc)) from None
        have = "maximize" if study.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
        if have != wanted:
            raise SearchError(
                f"study {s.name} in {s.storage} was made to {have}; this recipe's metric "
                f"{s.metric} would {wanted}: set search.study_name to start a new study"
            )
        metric = study.user_attrs.get("metric")
        if metric is None:
            study.set_user_attr("metric", s.metric)
            study.set_user_attr("recipe", s.recipe_name)
        elif metric != s.metric:
            raise SearchError(
                f"study {s.name} in {s.storage} measures {metric}, this recipe {s.metric}: "
                "set search.study_name to start a new study"
            )
        return study

    def check_validation(self, digest: str) -> None:
        """Refuse a study made on another validation set (see
        :func:`toolkit.training.data_views.validation_digest`); a new study records ``digest``."""
        known = self.study.user_attrs.get("validation")
        if known is None:
            self.study.set_user_attr("validation", digest)
        elif known != digest:
            raise SearchError(
                f"study {self.settings.name} in {self.settings.storage} was run on another "
                "validation set (data or split changed): set search.study_name to start a new study"
            )

    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials (fresh from the storage), optionally of some states."""
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states else None)

    def counts(self) -> dict[str, int]:
        """The study's trials by state."""
        return trial_counts(self.trials())

    def best_trial(self, trials: Sequence[FrozenTrial] | None = None) -> FrozenTrial | None:
        """The complete trial with the best value (the rule of :func:`toolkit.metrics.best_key`:
        ties to the lowest number), if any."""
        done = {t.number: t for t in (trials or self.trials()) if t.state == TrialState.COMPLETE}
        values = ((n, float(t.value or 0.0)) for n, t in done.items())
        number = best_key(values, self.settings.metric)
        return None if number is None else done[number]

    def surplus(self, number: int) -> bool:
        """Whether ``n_trials`` trials numbered below ``number`` are finished or running."""
        ahead = [
            t
            for t in self.trials((TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
            if t.number < number and not t.user_attrs.get("surplus")
        ]
        return len(ahead) >= self.settings.search.n_trials
