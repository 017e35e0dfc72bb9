"""The small regression network of Finn et al. 2017 (sinusoids): 1 -> 40 -> 40 -> 1."""

from __future__ import annotations

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
