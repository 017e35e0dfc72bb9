"""Small builders shared by the engine tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.training.callbacks import Callback, StepMetrics
from engine.training.control import RunControl
from engine.training.process import TrainingJob
from engine.training.trainer import Trainer


def tiny_config(root: Path | str, algorithm: str = "protonet", steps: int = 12, **algo: object) -> RunConfig:
    """A config that trains in seconds on the 16-class synthetic folders of tests/conftest.py."""
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[algorithm](**algo))
    config.data.root = str(root)
    config.data.train_ratio, config.data.val_ratio = 0.5, 0.25
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 3, 2, 3, 2
    config.model.hidden_channels = 16
    config.train.steps, config.train.val_every, config.train.val_episodes = steps, 4, 5
    config.train.checkpoint_every = 4
    return config


@dataclass
class HangingJob(TrainingJob):
    """A :class:`TrainingJob` whose run hangs after reporting step ``hang_at``: its step never returns
    and no longer sees the stop flag (as a step stuck in a driver would). Picklable into a child."""

    hang_at: int = 3

    def make_trainer(self, callbacks: list[Callback], control: RunControl) -> Trainer:
        return super().make_trainer([*callbacks, _HangAtStep(self.hang_at)], control)


class _HangAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, metrics: StepMetrics) -> None:
        if metrics.step == self.step:
            time.sleep(3600)
