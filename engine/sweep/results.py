"""Reading a sweep back: its trials ranked, their validation curves, the best values, the importances.

Read-only: :func:`load_sweep` never creates a storage or a study (``meta-engine sweep show`` and the
studio's Sweep view, which polls it while any process, the studio's or a CLI's, runs the sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.sweep import objective as obj
from engine.sweep.storage import open_storage

STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
_RANK = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "failed": 4}
MIN_TRIALS_FOR_IMPORTANCE = 3
"""Complete trials before the parameter importances are computed (Optuna's evaluator needs a few)."""


@dataclass(frozen=True)
class TrialRow:
    """One trial as the sweep's table shows it."""

    number: int
    state: str  # complete, pruned, failed, running, waiting
    value: float | None  # best validation accuracy (complete trials)
    best_seen: float | None  # best validation accuracy reported so far (any state)
    params: dict[str, Any]
    run_dir: str | None
    last_step: int | None  # the step of the last validation reported (a pruned trial's stop step)
    curve: tuple[tuple[int, float], ...]  # (step, validation accuracy)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "state": self.state, "best_val_accuracy": self.value,
                "best_seen": self.best_seen, "params": self.params, "run_dir": self.run_dir,
                "last_step": self.last_step, "message": self.message}


@dataclass(frozen=True)
class SweepSnapshot:
    """A study as read at one moment."""

    study_name: str
    rows: list[TrialRow]
    space: dict[str, Any] = field(default_factory=dict)
    best_params: dict[str, Any] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)

    def history(self) -> list[tuple[int, float]]:
        """(trial number, best value so far) over the complete trials, in trial order."""
        best, points = None, []
        for row in sorted(self.rows, key=lambda r: r.number):
            if row.state == "complete" and row.value is not None:
                best = row.value if best is None else max(best, row.value)
                points.append((row.number, best))
        return points


def load_sweep(storage_url: str, study_name: str, *, importances: bool = True) -> SweepSnapshot:
    """The study ``study_name`` in ``storage_url`` (ConfigError naming either when it is not there)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, create=False)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise ConfigError(f"--study {study_name}: no such study in {storage_url}") from None
    return snapshot(study, importances=importances)


def study_names(storage_url: str) -> list[str]:
    """The studies of a storage (empty when its file does not exist yet)."""
    import optuna

    try:
        storage = open_storage(storage_url, create=False)
    except ConfigError:
        return []
    return [summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)]


def snapshot(study: Any, *, importances: bool = True) -> SweepSnapshot:
    from engine.sweep.study import SPACE_ATTR, parse_json_object

    rows = sorted((trial_row(t) for t in study.get_trials(deepcopy=False)), key=rank_key)
    best = next((r.params for r in rows if r.state == "complete"), {})
    found = parameter_importances(study) if importances else {}
    space = parse_json_object(study.user_attrs.get(SPACE_ATTR, "{}"))
    return SweepSnapshot(study.study_name, rows, space, dict(best), found)


def trial_row(trial: Any) -> TrialRow:
    state = STATES.get(trial.state.name, trial.state.name.lower())
    curve = tuple(sorted((int(step), float(value)) for step, value in trial.intermediate_values.items()))
    best_seen = max((value for _, value in curve), default=None)
    return TrialRow(trial.number, state, trial.value if state == "complete" else None, best_seen,
                    dict(trial.params), trial.user_attrs.get(obj.RUN_DIR_ATTR),
                    curve[-1][0] if curve else None, curve, str(trial.user_attrs.get(obj.MESSAGE_ATTR, "")))


def rank_key(row: TrialRow) -> tuple[int, float, int]:
    """Complete trials by value, then pruned ones by the best accuracy they reached, then the rest."""
    score = row.value if row.value is not None else (row.best_seen if row.best_seen is not None else -1.0)
    return _RANK.get(row.state, 5), -score, row.number


def parameter_importances(study: Any) -> dict[str, float]:
    """Optuna's own importance evaluator over the complete trials ({} until there are enough of them, or
    when every trial took the same values)."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    try:
        return {key: float(value) for key, value in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
