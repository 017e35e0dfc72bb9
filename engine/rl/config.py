"""The settings of meta-RL on 2-D navigation: one dataclass, declared with :func:`engine.config.param`.

Defaults follow Finn et al. 2017 (section 5.3 and appendix A.2) where the paper gives them: 20
tasks per meta-batch, 20 trajectories per task and gradient step, horizon 100, inner step size 0.1,
one inner step in training, a 2 x 100 ReLU policy. The outer optimiser is Adam on the policy-gradient
surrogate, not TRPO (see :mod:`engine.rl.training`), and far fewer meta-iterations are needed for the
clear effect the view shows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.config import check_field, describe_fields, param
from engine.errors import ConfigError

POLICY_KINDS = ("maml", "reptile", "pretrained")
POLICY_TITLES = {"maml": "MAML", "reptile": "Reptile", "pretrained": "pre-trained"}
SECTION = "rl"


@dataclass
class NavigationConfig:
    """How a navigation policy is (meta-)trained and evaluated."""

    algorithm: str = param("maml", "maml: MAML's meta-gradient through one policy-gradient step; reptile: "
                           "move towards each task's adapted weights; pretrained: one policy trained on all goals.",
                           choices=POLICY_KINDS)
    first_order: bool = param(False, "MAML only: drop the second-order term (the inner gradient is treated as a "
                              "constant).")
    meta_iters: int = param(300, "Outer (meta-training) iterations.", min=1, max=1_000_000)
    meta_batch_size: int = param(20, "Goals (tasks) per meta-iteration (the paper: 20).", min=1, max=10_000)
    trajectories: int = param(20, "Trajectories sampled per task for each gradient step (the paper: 20).",
                              min=1, max=10_000)
    horizon: int = param(100, "Steps per episode (the paper: 100).", min=1, max=10_000)
    gamma: float = param(0.99, "Discount of the returns-to-go in the policy gradient.", min=0.0, max=1.0)
    inner_lr: float = param(0.1, "Step size of the policy-gradient adaptation step, in training and at test "
                            "(the paper: 0.1).", min=0.0, exclusive_min=True, max=100.0)
    inner_steps: int = param(1, "Adaptation steps inside MAML's meta-objective (the paper: 1).", min=1, max=10)
    reptile_steps: int = param(3, "Reptile only: policy-gradient steps per task before moving towards them.",
                               min=1, max=100)
    meta_lr: float = param(0.003, "Adam learning rate of the outer loop (all three algorithms; 0.01 learns faster "
                           "but MAML and Reptile then fall back after about 40 iterations).", min=0.0,
                           exclusive_min=True, max=1.0)
    hidden: int = param(100, "Units in each of the policy's two hidden layers (the paper: 100).", min=1, max=4096)
    seed: int = param(0, "Seed of the initial weights, the training goals and the action noise.", min=0)
    eval_goals: int = param(100, "Held-out goals of the evaluation.", min=1, max=100_000)
    eval_steps: int = param(3, "Adaptation steps evaluated (0..eval_steps).", min=0, max=20)
    eval_seed: int = param(1_000_003, "Seed of the held-out goals and their action noise (apart from training).",
                           min=0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> "NavigationConfig":
        """Build and validate from a dict; an unknown key is an error naming it."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{SECTION} config must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown field")
        return validate_config(cls(**raw))


def validate_config(config: NavigationConfig) -> NavigationConfig:
    """Every field's type and bounds; ConfigError naming the field (``rl.<name>``)."""
    for spec in describe_fields(NavigationConfig, SECTION):
        value = getattr(config, spec.name)
        if spec.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{spec.key} must be an integer (got {value!r})")
        if spec.kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{spec.key} must be true or false (got {value!r})")
        message = check_field(spec, value)
        if message:
            raise ConfigError(message)
    return config
