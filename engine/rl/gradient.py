"""Rollouts, the linear feature baseline and the vanilla policy-gradient surrogate (the inner loop).

Everything is batched over T tasks (one goal and one policy copy each) and N trajectories per
task: a :class:`Batch` holds ``[T, N, H, ...]`` tensors. The baseline is rllab's
``LinearFeatureBaseline`` as in the paper's code: per task, a ridge regression of the discounted
returns-to-go on the features ``[o, o^2, t, t^2, t^3, 1]`` (o the observation clipped to
[-10, 10], t = step / 100), fitted on that task's trajectories. Advantages are returns-to-go minus
the baseline, then centred and scaled per task (rllab's ``center_adv``).

The surrogate of task t is ``-mean over its trajectories and steps of log pi(a|s) * A``: its gradient
is the REINFORCE estimate of minus the gradient of the expected discounted return, and an inner
step is plain gradient descent on it, ``theta_t' = theta - lr * grad``. With ``create_graph`` the
step stays differentiable in ``theta`` (second-order MAML through the surrogate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from engine.rl.env import HORIZON, step
from engine.rl.policy import batched_log_prob

BASELINE_RIDGE = 1e-5
ADVANTAGE_EPS = 1e-8


@dataclass
class Batch:
    """Trajectories of T tasks x N trajectories x H steps."""

    observations: Tensor   # [T, N, H, 2] position before each step
    actions: Tensor        # [T, N, H, 2] the sampled (unclipped) actions
    rewards: Tensor        # [T, N, H]
    advantages: Tensor     # [T, N, H] normalised per task

    @property
    def returns(self) -> Tensor:
        """Undiscounted return of each trajectory: [T, N]."""
        return self.rewards.sum(dim=-1)

    def mean_return(self) -> Tensor:
        """Average return per task over its trajectories: [T]."""
        return self.returns.mean(dim=-1)


def rollout(params: Sequence[Tensor], goals: Tensor, n_trajectories: int, generator: torch.Generator, *,
            horizon: int = HORIZON, gamma: float = 0.99) -> Batch:
    """Sample ``n_trajectories`` episodes per task with T policies (params with a leading [T] dimension,
    goals [T, 2]), from the origin, actions ``mean + std * noise``; advantages from the linear baseline."""
    params = [p.detach() for p in params]
    n_tasks = goals.shape[0]
    noise = torch.randn(n_tasks, n_trajectories, horizon, 2, generator=generator, dtype=params[0].dtype)
    std = torch.exp(params[-1]).unsqueeze(1)              # [T, 1, 2]
    position = torch.zeros(n_tasks, n_trajectories, 2, dtype=params[0].dtype)
    goal = goals.to(params[0].dtype).unsqueeze(1)        # [T, 1, 2]
    observations, actions, rewards = [], [], []
    layers = [(w.transpose(1, 2).contiguous(), b.unsqueeze(1)) for w, b in zip(params[:-1:2], params[1:-1:2])]
    scaled_noise = std.unsqueeze(2) * noise                 # [T, N, H, 2]
    with torch.no_grad():
        for t in range(horizon):
            action = _policy_mean(layers, position) + scaled_noise[:, :, t]
            observations.append(position)
            actions.append(action)
            position, reward = step(position, action, goal)
            rewards.append(reward)
    obs, acts, rews = torch.stack(observations, 2), torch.stack(actions, 2), torch.stack(rewards, 2)
    return Batch(obs, acts, rews, advantages(obs, rews, gamma))


def _policy_mean(layers: list[tuple[Tensor, Tensor]], observations: Tensor) -> Tensor:
    """:func:`engine.rl.policy.batched_mean` with the weights transposed once per rollout (no autograd)."""
    h = observations
    for index, (weight_t, bias) in enumerate(layers):
        h = torch.baddbmm(bias, h, weight_t)
        if index < len(layers) - 1:
            h = torch.relu_(h)
    return h


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """Returns-to-go ``R_t = sum_{j >= t} gamma^(j - t) r_j`` along the last dimension."""
    horizon = rewards.shape[-1]
    index = torch.arange(horizon, dtype=rewards.dtype)
    power = index.unsqueeze(1) - index.unsqueeze(0)            # [j, t] = j - t
    discount = torch.where(power >= 0, torch.tensor(gamma, dtype=rewards.dtype) ** power.clamp(min=0),
                           torch.zeros((), dtype=rewards.dtype))
    return rewards @ discount


def baseline_features(observations: Tensor) -> Tensor:
    """rllab's linear baseline features of every step: [..., H, 2] -> [..., H, 8]."""
    obs = observations.clamp(-10.0, 10.0)
    horizon = observations.shape[-2]
    time = (torch.arange(horizon, dtype=observations.dtype) / 100.0).reshape(horizon, 1)
    time = time.expand(*observations.shape[:-1], 1)
    return torch.cat([obs, obs.pow(2), time, time.pow(2), time.pow(3), torch.ones_like(time)], dim=-1)


def fit_baseline(observations: Tensor, returns: Tensor) -> Tensor:
    """Per task, the ridge regression of returns on the features, evaluated on the same steps: [T, N, H]."""
    n_tasks = observations.shape[0]
    features = baseline_features(observations).reshape(n_tasks, -1, 8).double()
    targets = returns.reshape(n_tasks, -1, 1).double()
    gram = features.transpose(1, 2) @ features + BASELINE_RIDGE * torch.eye(8, dtype=torch.float64)
    weights = torch.linalg.solve(gram, features.transpose(1, 2) @ targets)
    return (features @ weights).reshape(returns.shape).to(returns.dtype)


def advantages(observations: Tensor, rewards: Tensor, gamma: float) -> Tensor:
    """Returns-to-go minus the linear baseline, centred and scaled per task: [T, N, H]."""
    returns = discounted_returns(rewards, gamma)
    raw = returns - fit_baseline(observations, returns)
    flat = raw.reshape(raw.shape[0], -1)
    mean, std = flat.mean(dim=1), flat.std(dim=1, unbiased=False)
    return (raw - mean.reshape(-1, 1, 1)) / (std.reshape(-1, 1, 1) + ADVANTAGE_EPS)


def surrogate(params: Sequence[Tensor], batch: Batch) -> Tensor:
    """The policy-gradient surrogate loss of each task: [T] (params with a leading [T] dimension)."""
    n_tasks = batch.observations.shape[0]
    obs = batch.observations.reshape(n_tasks, -1, 2)
    acts = batch.actions.reshape(n_tasks, -1, 2)
    log_prob = batched_log_prob(params, obs, acts)
    return -(log_prob * batch.advantages.reshape(n_tasks, -1)).mean(dim=1)


def inner_step(params: Sequence[Tensor], batch: Batch, lr: float, *, create_graph: bool = False) -> list[Tensor]:
    """One vanilla policy-gradient step per task: ``theta_t - lr * grad surrogate_t``.

    ``params`` with a leading [T] dimension. With ``create_graph`` the result is differentiable
    in ``params`` (second order); otherwise it is detached.
    """
    with torch.enable_grad():
        live = list(params) if create_graph else [p.detach().requires_grad_() for p in params]
        if create_graph and not all(p.requires_grad for p in live):
            raise ValueError("inner_step(create_graph=True) needs parameters that require grad")
        grads = torch.autograd.grad(surrogate(live, batch).sum(), live, create_graph=create_graph)
    stepped = [p - lr * g for p, g in zip(live, grads)]
    return stepped if create_graph else [p.detach() for p in stepped]
