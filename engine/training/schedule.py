"""Outer learning-rate schedules: a pure function of the step, so a resumed run
follows exactly the curve it would have followed without the interruption."""

from __future__ import annotations

import math

from engine.config import TrainConfig


def lr_factor(train: TrainConfig, step: int) -> float:
    """The multiplier of the configured learning rate at 1-based ``step``.

    constant: 1. step: ``lr_decay_factor ** ((step - 1) // lr_decay_every)`` (steps
    1..every at the full rate). cosine: from 1 at step 1 down to 0 after ``train.steps``.
    """
    if train.lr_schedule == "step":
        return float(train.lr_decay_factor ** ((max(step, 1) - 1) // train.lr_decay_every))
    if train.lr_schedule == "cosine":
        progress = min(max(step - 1, 0) / max(train.steps, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
