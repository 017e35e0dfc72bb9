"""The 2-D navigation environment (engine/rl/env.py): dynamics and reward on hand-computed cases, goals."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError
from engine.rl.env import check_goal, sample_goals, step


def test_a_small_action_moves_the_point_and_the_reward_is_minus_the_distance_to_the_goal() -> None:
    position, reward = step(torch.tensor([0.0, 0.0]), torch.tensor([0.05, -0.02]), torch.tensor([0.3, 0.4]))
    torch.testing.assert_close(position, torch.tensor([0.05, -0.02]))
    assert reward.item() == pytest.approx(-math.hypot(0.25, 0.42), abs=1e-6)


def test_actions_are_clipped_to_a_tenth_per_coordinate() -> None:
    position, reward = step(torch.tensor([0.2, -0.1]), torch.tensor([3.0, -0.5]), torch.tensor([0.3, -0.2]))
    torch.testing.assert_close(position, torch.tensor([0.3, -0.2]))   # moved by (+0.1, -0.1)
    assert reward.item() == pytest.approx(0.0, abs=1e-6)              # on the goal


def test_a_batch_of_environments_steps_independently() -> None:
    positions = torch.tensor([[[0.0, 0.0], [0.1, 0.1]], [[-0.5, 0.5], [0.0, 0.0]]])   # [T=2, N=2, 2]
    actions = torch.tensor([[[0.1, 0.0], [-0.2, 0.0]], [[0.0, 0.0], [0.03, 0.04]]])
    goals = torch.tensor([[[0.0, 0.0]], [[0.0, 0.5]]])                                 # [T, 1, 2]
    moved, reward = step(positions, actions, goals)
    torch.testing.assert_close(moved, torch.tensor([[[0.1, 0.0], [0.0, 0.1]], [[-0.5, 0.5], [0.03, 0.04]]]))
    expected = torch.tensor([[-0.1, -0.1], [-0.5, -math.hypot(0.03, 0.46)]])
    torch.testing.assert_close(reward, expected)


def test_goals_are_uniform_in_the_square_and_seeded() -> None:
    goals = sample_goals(4000, torch.Generator().manual_seed(3))
    assert goals.shape == (4000, 2) and goals.min() >= -0.5 and goals.max() <= 0.5
    assert abs(goals.mean().item()) < 0.02 and goals.std().item() == pytest.approx(1 / math.sqrt(12), abs=0.01)
    torch.testing.assert_close(goals[:5], sample_goals(5, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("goal", [(0.6, 0.0), (0.0, -0.51), (float("nan"), 0.0)])
def test_a_goal_outside_the_square_is_refused_with_the_field_named(goal: tuple[float, float]) -> None:
    with pytest.raises(ConfigError, match=r"^goal: .* outside the task family's square \[-0.5, 0.5\]\^2"):
        check_goal(goal)


def test_goals_on_the_square_are_accepted() -> None:
    assert check_goal([0.5, -0.5]) == (0.5, -0.5)
    with pytest.raises(ConfigError, match="expected two numbers"):
        check_goal([0.1])
