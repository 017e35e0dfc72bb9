"""Small builders shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

from engine.config import ALGORITHM_CONFIGS, RunConfig


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
