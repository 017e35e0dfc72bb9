"""The 2-D navigation task family of Finn et al. 2017 (section 5.3), batched over environments as tensors.

A point robot starts at the origin; its observation is its position; an action is a velocity,
clipped to [-0.1, 0.1] per coordinate, added to the position; the reward of a step is minus the
distance between the new position and the task's goal; an episode lasts 100 steps. A task is a
goal drawn uniformly from [-0.5, 0.5]^2. (The paper's rllab environment also ends an episode once
the point is within 0.01 of the goal in both coordinates; here every episode runs the full horizon,
so every trajectory is a [H, 2] tensor and a batch of them one tensor.)
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from engine.errors import ConfigError

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
ACTION_LIMIT = 0.1
HORIZON = 100
OBSERVATION_SIZE = 2
ACTION_SIZE = 2


def check_goal(goal: Sequence[float], name: str = "goal") -> tuple[float, float]:
    """A goal of the family as a pair of floats; ConfigError naming ``name`` when it is outside the square."""
    try:
        x, y = (float(v) for v in goal)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected two numbers x, y, got {goal!r}") from None
    for value in (x, y):
        if not GOAL_LOW <= value <= GOAL_HIGH:  # also false for NaN
            raise ConfigError(f"{name}: ({x:g}, {y:g}) is outside the task family's square "
                              f"[{GOAL_LOW:g}, {GOAL_HIGH:g}]^2")
    return x, y


def sample_goals(n: int, generator: torch.Generator) -> Tensor:
    """``n`` goals drawn uniformly from the square: [n, 2] float32."""
    return GOAL_LOW + (GOAL_HIGH - GOAL_LOW) * torch.rand(n, 2, generator=generator)


def step(position: Tensor, action: Tensor, goal: Tensor) -> tuple[Tensor, Tensor]:
    """One step of every environment: (new position, reward).

    position, action: [..., 2]; goal: broadcastable to position. The action is clipped to
    [-ACTION_LIMIT, ACTION_LIMIT] per coordinate; the reward is ``-|new position - goal|``.
    """
    moved = position + action.clamp(-ACTION_LIMIT, ACTION_LIMIT)
    return moved, -(moved - goal).norm(dim=-1)
