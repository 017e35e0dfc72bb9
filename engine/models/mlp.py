"""The small regression network of Finn et al. 2017 (sinusoids): 1 -> 40 -> 40 -> 1, and
:func:`batched_relu_mlp`, a ReLU MLP for many weight copies at once (sinusoid regression, navigation policies)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """[B, in_features] -> [B, 1] with two ReLU hidden layers of ``hidden`` units."""

    def __init__(self, in_features: int = 1, hidden: int = 40, out_features: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_features),
        )
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        """[B, in_features] -> [B, out_features]."""
        return self.layers(x)


def batched_relu_mlp(params: Sequence[Tensor], x: Tensor) -> Tensor:
    """A ReLU MLP for T weight copies at once, each layer one ``torch.baddbmm``.

    params: weight/bias pairs in layer order, each with a leading copy dimension (``[T, out, in]`` and
    ``[T, out]``); x: [T, N, in] -> [T, N, out]. ReLU between layers, none after the last.
    """
    h = x
    n_layers = len(params) // 2
    for layer in range(n_layers):
        weight, bias = params[2 * layer], params[2 * layer + 1]
        h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        if layer < n_layers - 1:
            h = torch.relu(h)
    return h
