"""The Gaussian MLP policy of Finn et al. 2017: observation -> ReLU MLP (2 x 100) -> action mean, and a
learned, state-independent log standard deviation per action coordinate (starting at std 1).

Parameters are a plain dict of tensors (names below) so that many copies can run at once: the
batched functions take every tensor with a leading copy dimension ``[T, ...]`` (one copy per task,
e.g. after each task's own adaptation step) and run each layer as one ``torch.baddbmm``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import Tensor

from engine.models.mlp import batched_relu_mlp
from engine.rl.env import ACTION_SIZE, OBSERVATION_SIZE

Params = dict[str, Tensor]
HIDDEN = (100, 100)
INITIAL_STD = 1.0
LOG_2PI = math.log(2.0 * math.pi)


def param_shapes(hidden: Sequence[int] = HIDDEN) -> dict[str, tuple[int, ...]]:
    """Names and shapes, in layer order: ``layers.<i>.weight`` / ``.bias`` for each layer, then ``log_std``."""
    sizes = [OBSERVATION_SIZE, *hidden, ACTION_SIZE]
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"layers.{index}.weight"] = (fan_out, fan_in)
        shapes[f"layers.{index}.bias"] = (fan_out,)
    shapes["log_std"] = (ACTION_SIZE,)
    return shapes


def hidden_of(params: Mapping[str, Tensor]) -> tuple[int, ...]:
    """The hidden layer sizes of a parameter dict (its weights' output sizes but the last)."""
    weights = sorted((int(name.split(".")[1]), tensor) for name, tensor in params.items() if name.endswith(".weight"))
    return tuple(int(tensor.shape[-2]) for _, tensor in weights[:-1])


def init_params(seed: int, hidden: Sequence[int] = HIDDEN, dtype: torch.dtype = torch.float32) -> Params:
    """Fresh parameters: Xavier-uniform weights, zero biases, std INITIAL_STD; from a generator of their own."""
    generator = torch.Generator().manual_seed(seed)
    params: Params = {}
    for name, shape in param_shapes(hidden).items():
        if name.endswith(".weight"):
            bound = math.sqrt(6.0 / (shape[0] + shape[1]))
            params[name] = ((torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound).to(dtype)
        elif name == "log_std":
            params[name] = torch.full(shape, math.log(INITIAL_STD), dtype=dtype)
        else:
            params[name] = torch.zeros(shape, dtype=dtype)
    return params


def as_list(params: Mapping[str, Tensor]) -> list[Tensor]:
    """The tensors in layer order (``log_std`` last)."""
    return [params[name] for name in param_shapes(hidden_of(params))]


def as_dict(tensors: Sequence[Tensor], hidden: Sequence[int]) -> Params:
    return dict(zip(param_shapes(hidden), tensors))


def expand(params: Sequence[Tensor], copies: int) -> list[Tensor]:
    """One copy per task: every tensor broadcast to ``[copies, ...]`` (views, no memory)."""
    return [p.unsqueeze(0).expand(copies, *p.shape) for p in params]


def batched_mean(params: Sequence[Tensor], observations: Tensor) -> Tensor:
    """Action means of T policies: params in layer order with a leading [T] dimension, observations
    [T, M, 2] -> [T, M, 2]."""
    return batched_relu_mlp(params[:-1], observations)


def batched_log_prob(params: Sequence[Tensor], observations: Tensor, actions: Tensor) -> Tensor:
    """log pi(action | observation) of T policies: observations, actions [T, M, 2] -> [T, M]."""
    mean = batched_mean(params, observations)
    log_std = params[-1].unsqueeze(1)                     # [T, 1, 2]
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(dim=-1)
