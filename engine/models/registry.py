"""Build a backbone from the model config and load optional starting weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.config import ModelConfig
from engine.errors import CheckpointError, ConfigError
from engine.io import verify_zip_records
from engine.models.conv4 import Conv4, pooled_size
from engine.models.mlp import MLP
from engine.models.resnet import ResNet12
from engine.models.torchvision_backbones import build_torchvision_backbone, is_torchvision_backbone

MIN_IMAGE_SIZE = 16
"""Conv4 and ResNet12 halve the image four times; smaller images would vanish."""


def build_backbone(cfg: ModelConfig, in_channels: int, image_size: int) -> nn.Module:
    """The configured network with ``out_features``; loads ``cfg.weights_path`` when set.

    conv4/resnet12: [B, in_channels, image_size, image_size] -> [B, out_features];
    mlp: [B, 1] -> [B, 1] (sinusoid regression; ``in_channels``/``image_size`` ignored).
    torchvision networks (``torchvision_backbones.py``): [B, 1 or 3, H, W] -> [B, out_features];
    their ``weights_path`` is torchvision's file of the whole network, or ``"torchvision"`` (hub cache).
    """
    if is_torchvision_backbone(cfg.backbone):
        return build_torchvision_backbone(cfg.backbone, image_size, cfg.weights_path)
    if cfg.backbone in ("conv4", "resnet12") and pooled_size(image_size, 4) < 1:
        raise ConfigError(f"data.image_size must be at least {MIN_IMAGE_SIZE} for model.backbone "
                          f"{cfg.backbone!r} (got {image_size})")
    if cfg.backbone == "conv4":
        module: nn.Module = Conv4(in_channels, image_size, cfg.hidden_channels)
    elif cfg.backbone == "resnet12":
        module = ResNet12(in_channels, cfg.hidden_channels)
    elif cfg.backbone == "mlp":
        module = MLP()
    else:
        raise ConfigError(f"model.backbone: unknown backbone {cfg.backbone!r}; choose conv4, resnet12, mlp "
                          f"or a torchvision network")
    if cfg.weights_path:
        load_weights(module, cfg.weights_path)
    return module


def load_weights(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a state dict (raw or under ``"state_dict"``) into ``module`` with strict key and shape checks.

    Raises CheckpointError naming the file: missing, unreadable/unsafe, not a state
    dict, or the first missing, unexpected or differently shaped key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    verify_zip_records(path)
    try:
        raw: Any = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # corrupt file, pickle with code (unsafe), ...
        raise CheckpointError(f"cannot read weights file {path}: {error}") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} does not hold a state dict of tensors")
    _check_keys(module, state, path)
    module.load_state_dict(state, strict=True)


def _check_keys(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"weights file {path} does not fit the backbone: missing key {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"weights file {path} does not fit the backbone: key {key!r} has shape "
                                  f"{tuple(state[key].shape)}, expected {tuple(tensor.shape)}")
    for key in state:
        if key not in expected:
            raise CheckpointError(f"weights file {path} does not fit the backbone: unexpected key {key!r}")
