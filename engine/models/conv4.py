"""Conv4: the four-block convolutional backbone of Vinyals et al. 2016 / Snell et al. 2017."""

from __future__ import annotations

from torch import Tensor, nn

from engine.models.batchnorm import EpisodeBatchNorm2d


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (padding 1) -> BatchNorm2d -> ReLU -> 2x2 max-pool: [B, in, H, W] -> [B, out, H//2, W//2].

    The ReLU runs after the max-pool: the two commute (max of rectified values equals the
    rectified max), and the ReLU then touches a quarter of the values, which is measurably
    faster on CPU. Parameter keys (0 = conv, 1 = batch-norm) are those of the textbook order.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        EpisodeBatchNorm2d(out_channels),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=False),
    )


def pooled_size(image_size: int, n_pools: int) -> int:
    """Side length after ``n_pools`` 2x2 max-pools (each floors: 28 -> 14 -> 7 -> 3 -> 1)."""
    for _ in range(n_pools):
        image_size //= 2
    return image_size


class Conv4(nn.Module):
    """Four conv blocks then flatten: [B, C, H, W] -> [B, out_features].

    ``out_features = hidden_channels * s * s`` with ``s = image_size`` halved (floored)
    four times: 64 features at 28x28, 1600 at 84x84 for 64 filters.
    Plain ``nn.Module`` with no in-place tricks, so it works with
    ``torch.func.functional_call`` (MAML).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden_channels: int = 64) -> None:
        super().__init__()
        side = pooled_size(image_size, 4)
        if side < 1:
            raise ValueError(f"Conv4 needs images of at least 16 pixels, got {image_size}")
        self.blocks = nn.Sequential(
            _conv_block(in_channels, hidden_channels),
            _conv_block(hidden_channels, hidden_channels),
            _conv_block(hidden_channels, hidden_channels),
            _conv_block(hidden_channels, hidden_channels),
        )
        self.out_features = hidden_channels * side * side
        self.map_channels = hidden_channels

    def feature_map(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, map_channels, s, s], the map before flattening (Relation Networks)."""
        return self.blocks(x)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, out_features]."""
        return self.blocks(x).flatten(1)
