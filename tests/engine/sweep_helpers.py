"""What the sweep tests share: a glyph run that trains in seconds, as flags and as a config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.config import RunConfig

REPO = Path(__file__).resolve().parents[2]
TINY_FLAGS = ["--dataset", "builtin:glyphs", "--image-size", "16", "--val-every", "2", "--val-episodes", "4",
              "--n-way", "3", "--n-shot", "1", "--n-query", "2", "--meta-batch-size", "1", "--hidden-channels", "8",
              "--num-threads", "1"]


def tiny_glyph_config(steps: int = 4) -> RunConfig:
    config = RunConfig()
    config.data.image_size = 16
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 3, 1, 2, 1
    config.model.hidden_channels = 8
    config.train.steps, config.train.val_every, config.train.val_episodes = steps, 2, 4
    config.train.num_threads = 1
    return config


def sweep_command(runs: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "engine", "sweep", *TINY_FLAGS, "--runs-dir", str(runs), *args]


def start_sweep(runs: Path, *args: str) -> subprocess.Popen:
    """A ``meta-engine sweep`` in its own process (its output in files under ``runs``'s parent)."""
    log = open(runs.parent / f"sweep-{os.getpid()}-{len(list(runs.parent.iterdir()))}.log", "w")
    return subprocess.Popen(sweep_command(runs, *args), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def study_of(runs: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'sweeps' / 'optuna.db'}")
