"""Meta-training of navigation policies: MAML (second or first order), Reptile, and the pre-trained baseline.

Every meta-iteration draws ``meta_batch_size`` goals and runs all of them at once (one policy copy per
goal, ``[T, ...]`` tensors, :mod:`engine.rl.gradient`):

* **MAML** (Finn et al. 2017): sample ``trajectories`` episodes per goal with ``theta``, take
  ``inner_steps`` policy-gradient steps (``theta_t' = theta - inner_lr * grad surrogate_t``, each
  on fresh episodes of the current policy), sample with ``theta_t'`` and descend the mean
  post-adaptation surrogate with respect to ``theta``, through the inner steps (second order)
  or treating the inner gradients as constants (``first_order``).
* **Reptile** (Nichol et al. 2018): ``reptile_steps`` policy-gradient steps per goal from
  ``theta``, then ``theta - mean_t theta_t'`` is the outer "gradient".
* **Pre-trained**: one policy for all goals; its surrogate on the episodes of every goal is
  descended directly ("pretraining on all of the tasks", the paper's baseline).

Differences from the paper: the outer optimiser is Adam (``meta_lr``) on the surrogate, not TRPO
with a KL trust region; the meta-gradient ignores how ``theta`` changes the pre-adaptation
sampling distribution (as the paper's own implementation does); episodes do not end early at the
goal. Progress: ``progress(done, total)`` after every iteration, with the iteration's average
returns appended to ``history`` first (``(before adaptation, after one step)``; the pre-trained
policy records its one return twice); ``should_stop()`` is checked before every iteration.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from engine.errors import TrainingError
from engine.rl.config import POLICY_TITLES, NavigationConfig, validate_config
from engine.rl.env import sample_goals
from engine.rl.gradient import inner_step, rollout, surrogate
from engine.rl.policy import Params, as_dict, as_list, expand, init_params

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


@dataclass
class NavigationPolicy:
    """A trained policy: its parameters (names of :func:`engine.rl.policy.param_shapes`) and how it was made."""

    kind: str                           # "maml", "reptile" or "pretrained"
    params: Params
    config: NavigationConfig
    iterations_done: int = 0
    history: list[tuple[float, float]] = field(default_factory=list)   # (before, after one step) per iteration
    train_seconds: float = 0.0
    stopped: bool = False

    @property
    def title(self) -> str:
        title = POLICY_TITLES.get(self.kind, self.kind)
        return f"{title} (first order)" if self.kind == "maml" and self.config.first_order else title


def _sample(config: NavigationConfig, params: list[Tensor], goals: Tensor, generator: torch.Generator):
    return rollout(params, goals, config.trajectories, generator, horizon=config.horizon, gamma=config.gamma)


def maml_objective(config: NavigationConfig, theta: list[Tensor], goals: Tensor,
                   generator: torch.Generator) -> tuple[Tensor, float, float]:
    """MAML's meta-loss for one meta-batch (differentiable in ``theta``), and the average return before
    and after adaptation."""
    fast = expand(theta, goals.shape[0])
    before = after = float("nan")
    for index in range(config.inner_steps):
        batch = _sample(config, fast, goals, generator)
        if index == 0:
            before = float(batch.mean_return().mean())
        if config.first_order:
            stepped = inner_step(fast, batch, config.inner_lr)
            fast = [w + (s - w).detach() for w, s in zip(fast, stepped)]   # value theta', gradient identity
        else:
            fast = inner_step(fast, batch, config.inner_lr, create_graph=True)
    post = _sample(config, fast, goals, generator)
    after = float(post.mean_return().mean())
    return surrogate(fast, post).mean(), before, after


def reptile_direction(config: NavigationConfig, theta: list[Tensor], goals: Tensor,
                      generator: torch.Generator) -> tuple[list[Tensor], float, float]:
    """``theta - mean of the adapted weights`` (Reptile's outer gradient), and the returns before and after one step."""
    fast = expand([p.detach() for p in theta], goals.shape[0])
    returns = []
    for _ in range(config.reptile_steps):
        batch = _sample(config, fast, goals, generator)
        returns.append(float(batch.mean_return().mean()))
        fast = inner_step(fast, batch, config.inner_lr)
    if len(returns) < 2:
        returns.append(float(_sample(config, fast, goals, generator).mean_return().mean()))
    return [p.detach() - f.mean(dim=0) for p, f in zip(theta, fast)], returns[0], returns[1]


def pretrained_objective(config: NavigationConfig, theta: list[Tensor], goals: Tensor,
                         generator: torch.Generator) -> tuple[Tensor, float, float]:
    """The multi-goal surrogate of one shared policy, and its average return."""
    shared = expand(theta, goals.shape[0])
    batch = _sample(config, shared, goals, generator)
    value = float(batch.mean_return().mean())
    return surrogate(shared, batch).mean(), value, value


def train_policy(config: NavigationConfig, progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                 history: list[tuple[float, float]] | None = None) -> NavigationPolicy:
    """Train one policy with ``config.algorithm`` for ``config.meta_iters`` iterations (module docstring)."""
    validate_config(config)
    started = time.perf_counter()
    initial = init_params(config.seed, (config.hidden, config.hidden))
    theta = [p.clone().requires_grad_() for p in as_list(initial)]
    optimizer = torch.optim.Adam(theta, lr=config.meta_lr)
    goal_generator = torch.Generator().manual_seed(config.seed + 1)
    noise_generator = torch.Generator().manual_seed(config.seed + 2)
    history = [] if history is None else history
    done, stopped = 0, False
    with torch.enable_grad():
        for iteration in range(config.meta_iters):
            if should_stop is not None and should_stop():
                stopped = True
                break
            goals = sample_goals(config.meta_batch_size, goal_generator)
            optimizer.zero_grad(set_to_none=True)
            if config.algorithm == "reptile":
                direction, before, after = reptile_direction(config, theta, goals, noise_generator)
                for p, d in zip(theta, direction):
                    p.grad = d
            else:
                objective = maml_objective if config.algorithm == "maml" else pretrained_objective
                loss, before, after = objective(config, theta, goals, noise_generator)
                loss.backward()
            _check_finite(config, iteration, theta)
            optimizer.step()
            history.append((before, after))
            done = iteration + 1
            if progress is not None:
                progress(done, config.meta_iters)
    params = as_dict([p.detach().clone() for p in theta], (config.hidden, config.hidden))
    return NavigationPolicy(config.algorithm, params, config, done, list(history),
                            time.perf_counter() - started, stopped)


def _check_finite(config: NavigationConfig, iteration: int, theta: list[Tensor]) -> None:
    for p in theta:
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise TrainingError(f"{POLICY_TITLES[config.algorithm]} training: the gradient became non-finite at "
                                f"iteration {iteration + 1}; lower rl.meta_lr or rl.inner_lr")
    if not all(math.isfinite(float(p.detach().abs().max())) for p in theta):
        raise TrainingError(f"{POLICY_TITLES[config.algorithm]} training: the weights became non-finite at "
                            f"iteration {iteration + 1}")
