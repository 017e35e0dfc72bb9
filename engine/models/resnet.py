"""ResNet-12 backbone (Oreshkin et al. 2018 / Lee et al. 2019 style)."""

from __future__ import annotations

from torch import Tensor, nn

from engine.models.batchnorm import EpisodeBatchNorm2d


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """Three 3x3 conv+BN (LeakyReLU 0.1 between), 1x1 conv+BN shortcut, add, LeakyReLU, 2x2 max-pool.

    [B, in, H, W] -> [B, out, H//2, W//2].
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv3x3(in_channels, out_channels), EpisodeBatchNorm2d(out_channels), nn.LeakyReLU(0.1),
            _conv3x3(out_channels, out_channels), EpisodeBatchNorm2d(out_channels), nn.LeakyReLU(0.1),
            _conv3x3(out_channels, out_channels), EpisodeBatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), EpisodeBatchNorm2d(out_channels),
        )
        self.activation = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.activation(self.body(x) + self.shortcut(x)))


class ResNet12(nn.Module):
    """Four residual blocks of widths ``hidden_channels * (1, 2, 4, 8)``, then global average pooling.

    [B, C, H, W] -> [B, out_features] with ``out_features = 8 * hidden_channels``
    (512 for the default width 64); works for any image size >= 16 (28, 84, ...).
    """

    def __init__(self, in_channels: int = 3, hidden_channels: int = 64) -> None:
        super().__init__()
        widths = [hidden_channels * factor for factor in (1, 2, 4, 8)]
        blocks = []
        previous = in_channels
        for width in widths:
            blocks.append(ResidualBlock(previous, width))
            previous = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = widths[-1]
        self.map_channels = widths[-1]

    def feature_map(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, map_channels, s, s], the map before global pooling (Relation Networks)."""
        return self.blocks(x)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, 8 * hidden_channels]."""
        return self.pool(self.blocks(x)).flatten(1)

