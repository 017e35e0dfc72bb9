"""How long a run will take on this computer, measured rather than guessed.

:func:`measure_training_time` trains a few real steps of the run's own config on its own data and runs
one short validation, writing nothing (no run folder), and times them. The estimate of the whole run
(:meth:`TrainingTimeEstimate.total_seconds`) is ``setup + steps x step time + validations x episodes x
episode time``; checkpoint writes are not counted (milliseconds for the small backbones).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from engine.config import RunConfig, TrainConfig
from engine.errors import TrainingError
from engine.training.callbacks import Callback, RunInfo, StepMetrics, ValidationResult
from engine.training.trainer import Trainer

TRIAL_STEPS = 6
TRIAL_VALIDATION_EPISODES = 10


@dataclass(frozen=True)
class TrainingTimeEstimate:
    """Measured costs of one config on this computer (seconds): set-up, one training step, one validation
    episode; ``timed_steps``: how many steps the step time is the median of."""

    setup_s: float
    step_s: float
    validation_episode_s: float
    timed_steps: int

    def validations(self, train: TrainConfig) -> int:
        """How many validations a run of ``train`` makes (every ``val_every`` steps, and at the end)."""
        if not train.val_every:
            return 1
        return train.steps // train.val_every + (1 if train.steps % train.val_every else 0)

    def total_seconds(self, train: TrainConfig) -> float:
        """Seconds a run of ``train`` (its steps, validations and validation episodes) should take."""
        validation_s = self.validations(train) * train.val_episodes * self.validation_episode_s
        return self.setup_s + train.steps * self.step_s + validation_s


class _Clock(Callback):
    """When the trial run finished its set-up, each step, and its validation."""

    def __init__(self) -> None:
        self.set_up: float | None = None
        self.steps: list[float] = []
        self.validated: float | None = None

    def on_run_start(self, info: RunInfo) -> None:
        self.set_up = time.perf_counter()

    def on_step(self, metrics: StepMetrics) -> None:
        self.steps.append(time.perf_counter())

    def on_validation(self, result: ValidationResult) -> None:
        self.validated = time.perf_counter()


def measure_training_time(config: RunConfig, data: Any = None, *, trial_steps: int = TRIAL_STEPS,
                          trial_validation_episodes: int = TRIAL_VALIDATION_EPISODES,
                          should_stop: Callable[[], bool] | None = None) -> TrainingTimeEstimate | None:
    """Time ``trial_steps`` training steps of ``config`` (on ``data``, a decoded FewShotData, or the data
    its config names) and a validation of ``trial_validation_episodes`` episodes after the last. The set-up
    (model, samplers) and what the first step costs beyond the others (first-call costs) count as set-up;
    the median of the other steps is the step time. None when ``should_stop()`` became true; TrainingError
    when the trial run fails (its message names the field)."""
    trial = copy.deepcopy(config)
    trial.train.steps = max(3, int(trial_steps))
    trial.train.val_every = 0  # one validation, after the last step
    trial.train.val_episodes = max(1, int(trial_validation_episodes))
    clock = _Clock()
    trainer = Trainer(trial, run_dir=None, data=data, callbacks=[clock])
    started = time.perf_counter()
    steps = trainer.steps()
    try:
        for _ in steps:
            if should_stop is not None and should_stop():
                return None
    finally:
        steps.close()
    if trainer.summary is not None and trainer.summary.status == "failed":
        raise TrainingError(trainer.summary.message)
    assert clock.set_up is not None and clock.validated is not None and len(clock.steps) == trial.train.steps
    step_times = [later - earlier for earlier, later in zip(clock.steps[1:], clock.steps[2:])]
    step_s = statistics.median(step_times)
    first_step_extra = max(0.0, clock.steps[0] - clock.set_up - step_s)
    return TrainingTimeEstimate(setup_s=clock.set_up - started + first_step_extra, step_s=step_s,
                                validation_episode_s=(clock.validated - clock.steps[-1]) / trial.train.val_episodes,
                                timed_steps=len(step_times))
