"""Evaluation of navigation policies: the average return after 0..k adaptation steps on held-out goals,
and one goal's adaptation for the view.

At test time every policy adapts the same way, whatever trained it: sample ``trajectories`` episodes
with the current weights, record their average (undiscounted) return, take one policy-gradient step
at ``inner_lr`` on them, repeat. The return "after k steps" is that of the episodes sampled with the
weights after k steps (Finn et al. 2017, Figure 4). Goals and action noise come from ``eval_seed``
and are the same for every policy; the 95% confidence interval is 1.96 standard errors over goals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from engine.errors import ConfigError
from engine.evaluation import mean_ci95
from engine.rl.config import POLICY_TITLES
from engine.rl.env import ACTION_LIMIT, HORIZON, check_goal, sample_goals
from engine.rl.gradient import Batch, inner_step, rollout
from engine.rl.policy import as_list, expand, hidden_of

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


@dataclass
class ReturnStat:
    """Mean return over the goals and its 95% confidence half-width."""

    mean: float
    ci95: float


@dataclass
class NavigationEvaluation:
    """Average return per policy (key of the mapping evaluated) and adaptation step, on the same goals."""

    returns: dict[str, dict[int, ReturnStat]]
    n_goals: int
    trajectories: int
    inner_lr: float
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {"n_goals": self.n_goals, "trajectories": self.trajectories, "inner_lr": self.inner_lr,
                "seed": self.seed,
                "returns": {name: {str(s): dataclasses.asdict(stat) for s, stat in by_step.items()}
                            for name, by_step in self.returns.items()}}


def adaptation_returns(params: Mapping[str, Tensor], goals: Tensor, *, steps: int, trajectories: int,
                       inner_lr: float, generator: torch.Generator, horizon: int = HORIZON,
                       gamma: float = 0.99) -> Tensor:
    """Average return per goal after 0..``steps`` adaptation steps: [steps + 1, G]."""
    fast = expand(as_list(params), goals.shape[0])
    returns = []
    for index in range(steps + 1):
        batch = rollout(fast, goals, trajectories, generator, horizon=horizon, gamma=gamma)
        returns.append(batch.mean_return())
        if index < steps:
            fast = inner_step(fast, batch, inner_lr)
    return torch.stack(returns)


def evaluate_policies(policies: Mapping[str, Mapping[str, Tensor]], *, n_goals: int = 100, steps: int = 3,
                      trajectories: int = 20, inner_lr: float = 0.1, seed: int = 1_000_003,
                      progress: ProgressFn | None = None, should_stop: StopFn | None = None
                      ) -> NavigationEvaluation:
    """Mean return +- 95% CI after 0..``steps`` steps on ``n_goals`` held-out goals, per policy.

    ``policies``: name -> parameter dict. Each policy sees the same goals and the same action noise.
    """
    if isinstance(n_goals, bool) or not isinstance(n_goals, int) or n_goals < 1:
        raise ConfigError(f"rl.eval_goals must be an integer >= 1, got {n_goals!r}")
    goals = sample_goals(n_goals, torch.Generator().manual_seed(seed))
    stats: dict[str, dict[int, ReturnStat]] = {}
    for done, (name, params) in enumerate(policies.items(), start=1):
        if should_stop is not None and should_stop():
            break
        per_goal = adaptation_returns(params, goals, steps=steps, trajectories=trajectories, inner_lr=inner_lr,
                                      generator=torch.Generator().manual_seed(seed + 1))
        stats[name] = {s: ReturnStat(*mean_ci95(per_goal[s].tolist())) for s in range(steps + 1)}
        if progress is not None:
            progress(done, len(policies))
    return NavigationEvaluation(stats, n_goals, trajectories, inner_lr, seed)


@dataclass
class GoalAdaptation:
    """One goal, each policy adapted 0..steps times: its sampled episodes, their average path and return."""

    goal: tuple[float, float]
    episodes: dict[str, Tensor]      # name -> [steps + 1, N, H + 1, 2] sampled episodes from the origin
    paths: dict[str, Tensor]         # name -> [steps + 1, H + 1, 2] average position over the episodes
    returns: dict[str, Tensor]       # name -> [steps + 1] average return of the episodes


def adapt_to_goal(policies: Mapping[str, Mapping[str, Tensor]], goal: Sequence[float], *, steps: int = 3,
                  trajectories: int = 20, inner_lr: float = 0.1, seed: int = 0) -> GoalAdaptation:
    """Adapt every policy to ``goal`` (checked to lie in the square), all policies in one batch when their
    shapes agree: at each step sample ``trajectories`` episodes, then take one policy-gradient step on them."""
    x, y = check_goal(goal)
    names = list(policies)
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in names:
        groups.setdefault(hidden_of(policies[name]), []).append(name)
    episodes: dict[str, Tensor] = {}
    returns: dict[str, Tensor] = {}
    for members in groups.values():
        stacked = [torch.stack(tensors) for tensors in zip(*(as_list(policies[n]) for n in members))]
        goals = torch.tensor([[x, y]], dtype=torch.float32).expand(len(members), 2)
        generator = torch.Generator().manual_seed(seed)
        step_episodes, step_returns, fast = [], [], stacked
        for index in range(steps + 1):
            batch = rollout(fast, goals, trajectories, generator)
            step_episodes.append(episode_positions(batch))
            step_returns.append(batch.mean_return())
            if index < steps:
                fast = inner_step(fast, batch, inner_lr)
        for position, name in enumerate(members):
            episodes[name] = torch.stack([e[position] for e in step_episodes])
            returns[name] = torch.stack([r[position] for r in step_returns])
    return GoalAdaptation((x, y), {n: episodes[n] for n in names}, {n: episodes[n].mean(dim=1) for n in names},
                          {n: returns[n] for n in names})


def episode_positions(batch: Batch) -> Tensor:
    """Every episode's positions from the origin to its end: [T, N, H + 1, 2] (the clipped moves summed)."""
    last_move = batch.actions[:, :, -1].clamp(-ACTION_LIMIT, ACTION_LIMIT)
    final = (batch.observations[:, :, -1] + last_move).unsqueeze(2)
    return torch.cat([batch.observations, final], dim=2)


def format_table(evaluation: NavigationEvaluation, titles: Mapping[str, str] | None = None) -> str:
    """Plain text: average return +- 95% CI per policy and adaptation step."""
    titles = dict(POLICY_TITLES, **(titles or {}))
    steps = sorted(next(iter(evaluation.returns.values()), {}))
    lines = [f"2-D navigation: {evaluation.n_goals} held-out goals, {evaluation.trajectories} trajectories per step, "
             f"policy-gradient step size {evaluation.inner_lr:g}; average return (higher is better)",
             f"{'policy':<24}" + "".join(f"{f'{s} step' + ('s' if s != 1 else ''):>18}" for s in steps)]
    for name, by_step in evaluation.returns.items():
        lines.append(f"{titles.get(name, name):<24}"
                     + "".join(f"{f'{by_step[s].mean:.1f} ± {by_step[s].ci95:.1f}':>18}" for s in steps))
    return "\n".join(lines)
