"""A sweep: an Optuna study whose trials are training runs (:mod:`engine.sweep.objective`).

:func:`run_sweep` opens (or joins) the study, then asks Optuna for one trial at a time until the study
holds ``trials`` trials that are done or running, and none waits in its queue (several processes on one storage share that
count, so together they run about ``trials`` trials, each once). Optuna does the searching (seeded
TPE) and the pruning (median, successive halving or none); nothing here searches.

Kills: a trial whose process died (``kill -9``, a crash, a power cut) stays RUNNING in the storage. The
next sweep process on the same machine finds it (its pid is gone) and marks it failed; on another
machine Optuna's heartbeat (RDB storages) does. Such an interrupted trial (failed without a message of
its own) is queued again with the same values and continues its run folder from its last checkpoint,
its earlier validations reported again; a finished trial is never run twice, and a trial whose run
failed for a reason of its own (NaN loss, a bad combination) keeps its failure and its message.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.io import process_exists
from engine.sweep import objective as obj
from engine.sweep.space import SearchSpace, apply_values
from engine.sweep.storage import default_storage_url, ensure_default_folder, open_storage
from engine.training.callbacks import Callback
from engine.training.control import RunControl
from engine.training.run_store import default_runs_root

PRUNERS = ("median", "halving", "none")
SPACE_ATTR = "meta_studio_space"
ALGORITHM_ATTR = "meta_studio_algorithm"
REQUEUED_ATTR = "meta_studio_requeued"


@dataclass
class SweepSettings:
    """What a sweep searches and where its study lives. ``config``: every trial's config before the
    searched values are set (its ``train.steps`` is each trial's length)."""

    config: RunConfig
    space: SearchSpace
    trials: int
    study_name: str
    storage_url: str = ""
    runs_root: Path | None = None
    pruner: str = "median"
    startup_trials: int = 3

    def __post_init__(self) -> None:
        self.runs_root = Path(self.runs_root) if self.runs_root is not None else default_runs_root()
        if not self.storage_url:
            self.storage_url = default_storage_url(self.runs_root)
        check_settings(self)

    def trial_config(self, values: dict[str, Any]) -> RunConfig:
        return apply_values(self.config, values)


def check_settings(settings: SweepSettings) -> None:
    """Refuse what is wrong before anything is written (ConfigError naming the option)."""
    if settings.trials < 1:
        raise ConfigError(f"--trials must be at least 1 (got {settings.trials})")
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)} (got {settings.pruner!r})")
    if settings.startup_trials < 0:
        raise ConfigError(f"--startup-trials must be at least 0 (got {settings.startup_trials})")
    name = settings.study_name.strip()
    if not name or len(name) > 200:
        raise ConfigError(f"--study: give a name of 1 to 200 characters (got {settings.study_name!r})")


def make_pruner(name: str, startup_trials: int) -> Any:
    """Optuna's pruner called ``name`` (median, halving = successive halving, none)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def open_study(settings: SweepSettings) -> Any:
    """Create the study or join it; ConfigError when the name holds a sweep of another space or algorithm.
    The storage is opened (and, by default, its SQLite file created) only after every check of the
    settings passed."""
    import optuna

    if settings.storage_url == default_storage_url(settings.runs_root):
        ensure_default_folder(settings.runs_root)
    storage = open_storage(settings.storage_url)
    _check_existing(storage, settings)
    study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="maximize",
                                pruner=make_pruner(settings.pruner, settings.startup_trials),
                                load_if_exists=True)
    attrs = study.user_attrs
    if SPACE_ATTR not in attrs:
        study.set_user_attr(SPACE_ATTR, settings.space.canonical())
        study.set_user_attr(ALGORITHM_ATTR, settings.config.algorithm.name)
    # seeded TPE; a process joining a study with trials in it draws its own sequence (no duplicate values)
    seed = settings.config.train.seed + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(settings.startup_trials, 1))
    return study


def _check_existing(storage: Any, settings: SweepSettings) -> None:
    import optuna

    try:
        study_id = storage.get_study_id_from_name(settings.study_name)
    except KeyError:
        return
    attrs = storage.get_study_user_attrs(study_id)
    space = attrs.get(SPACE_ATTR)
    if space is not None and space != settings.space.canonical():
        theirs = " ".join(f"{k}={v}" for k, v in sorted(parse_json_object(space).items()))
        raise ConfigError(f"--study {settings.study_name}: this study already searches another space ({theirs}); "
                          "use another --study name")
    algorithm = attrs.get(ALGORITHM_ATTR)
    if algorithm is not None and algorithm != settings.config.algorithm.name:
        raise ConfigError(f"--study {settings.study_name}: this study sweeps algorithm {algorithm!r}, not "
                          f"{settings.config.algorithm.name!r}; use another --study name")
    directions = storage.get_study_directions(study_id)
    if directions != [optuna.study.StudyDirection.MAXIMIZE]:
        raise ConfigError(f"--study {settings.study_name}: not a sweep study (it does not maximise one value)")


def parse_json_object(text: str) -> dict[str, Any]:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recover_interrupted(study: Any) -> list[int]:
    """Fail the RUNNING trials of this machine whose process is gone, and queue every interrupted
    trial again (once) to continue its run; returns the numbers of the trials queued again."""
    import optuna
    from optuna.trial import TrialState

    host, me = socket.gethostname(), os.getpid()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get(obj.PID_ATTR)
        if trial.user_attrs.get(obj.HOST_ATTR) == host and isinstance(pid, int) and pid != me \
                and not process_exists(pid):
            try:
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another process got there first
    requeued = list(study.user_attrs.get(REQUEUED_ATTR, []))
    again = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.number in requeued or obj.MESSAGE_ATTR in trial.user_attrs or not trial.params:
            continue
        requeued.append(trial.number)
        study.set_user_attr(REQUEUED_ATTR, requeued)
        attrs = {obj.RESUME_ATTR: trial.user_attrs[obj.RUN_DIR_ATTR]} if obj.RUN_DIR_ATTR in trial.user_attrs else {}
        study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)
        again.append(trial.number)
    return again


def wants_more_trials(study: Any, target: int) -> bool:
    """Whether to ask for another trial: fewer than ``target`` trials done (complete, pruned, failed on
    their own) or running, or a trial waiting in the queue (an interrupted trial to continue, or values
    enqueued by hand). An interrupted trial does not count (its queued continuation does)."""
    from optuna.trial import TrialState

    counted = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.WAITING:
            return True
        if trial.state != TrialState.FAIL or obj.MESSAGE_ATTR in trial.user_attrs:
            counted += 1
    return counted < target


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep process did: the study's name, the trials it ran, and why it ended."""

    study_name: str
    storage_url: str
    trials_run: int
    status: str  # "finished" (the study holds its trials) or "stopped"
    best_value: float | None
    best_params: dict[str, Any]


def run_sweep(settings: SweepSettings, *, callbacks: Sequence[Callback] = (), control: RunControl | None = None,
              data_loader: Callable[[Any], Any] | None = None, on_trial: Callable[[Any, Any], None] | None = None,
              study: Any = None) -> SweepOutcome:
    """Run trials until the study holds ``settings.trials`` of them or ``control`` stops the sweep.

    ``callbacks`` hear every trial's run (as a training run's callbacks do); ``on_trial(study, trial)``
    each finished trial (Optuna's FrozenTrial). ``data_loader(data_config)``: the decoded data set of
    trials that keep the config's data section (default: loaded once here)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    control = control or RunControl()
    data_for = _data_cache(settings.config, data_loader)
    data_for(settings.config)  # a data set that cannot be read is refused before the study is written
    study = study if study is not None else open_study(settings)
    runner = obj.TrialRunner(settings.runs_root, settings.study_name, control, callbacks, data_for)
    ran, status = 0, "finished"

    def objective(trial: Any) -> float:
        try:
            config = settings.trial_config(settings.space.suggest(trial))
        except ConfigError as error:  # a combination the config refuses (e.g. two ratios summing over 1)
            trial.set_user_attr(obj.MESSAGE_ATTR, str(error))
            raise obj.TrialFailed(str(error)) from None
        return runner(trial, config)

    while True:
        recover_interrupted(study)
        if control.stop_requested:
            status = "stopped"
            break
        if not wants_more_trials(study, settings.trials):
            break
        try:
            study.optimize(objective, n_trials=1, catch=(obj.TrialFailed,),
                           callbacks=[on_trial] if on_trial else None)
        except obj.TrialInterrupted:
            status = "stopped"
            break
        finally:
            ran += 1
    return SweepOutcome(settings.study_name, settings.storage_url, ran, status, *_best(study))


def _best(study: Any) -> tuple[float | None, dict[str, Any]]:
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None, {}
    return best.value, dict(best.params)


def _data_cache(base: RunConfig, loader: Callable[[Any], Any] | None) -> Callable[[RunConfig], Any]:
    """The decoded data set for a trial's config: loaded once for every trial that keeps the base config's
    data section; None (the trainer loads it) for a trial that searches a data field."""
    from engine.data.dataset import load_data

    cached: list[Any] = []

    def data_for(config: RunConfig) -> Any:
        if config.data != base.data:
            return None
        if not cached:
            cached.append(loader(base.data) if loader is not None else load_data(base.data, progress=None))
        return cached[0]

    return data_for
