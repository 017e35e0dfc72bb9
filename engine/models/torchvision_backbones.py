"""torchvision's ImageNet networks as few-shot backbones (the pre-train, then fine-tune recipe).

A backbone here is a torchvision model whose classifier (its last ``nn.Linear``) is replaced by
the identity, so it returns the penultimate representation (``out_features`` wide). Its weights
are random or torchvision's own weight files read from disk, never downloaded: the PyTorch hub
cache (``torch.hub.get_dir()/checkpoints/``, under torchvision's file name, the basename of the
weights' ``url``) when ``model.weights_path`` is :data:`HUB_WEIGHTS`, else the file named there.

Input normalisation: this module is the one owner of what these networks expect. Every backbone
of the studio takes images normalised by ``engine.data.preprocess.Preprocessing`` ((x/255 - 0.5) / 0.5);
:class:`TorchvisionBackbone` maps them to the normalisation of the weights' own preprocessing
(``weights.transforms()``: ImageNet mean and std) as its first operation, so training, the Adapt
view and every export see the same numbers. Grey images are repeated to three channels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.errors import CheckpointError, ConfigError
from engine.io import verify_zip_records

TORCHVISION_BACKBONES: tuple[str, ...] = (
    "resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
    "convnext_tiny", "vit_b_16",
)
"""The torchvision builders offered as ``model.backbone`` (names of ``torchvision.models.get_model``)."""

HUB_WEIGHTS = "torchvision"
"""``model.weights_path`` value meaning: torchvision's ImageNet weights from the PyTorch hub cache."""

PATCH_SIZE = 16
MIN_CNN_IMAGE_SIZE = 32
"""The CNNs here downsample 32 times; smaller images vanish."""

STANDARD_MEAN = 0.5
STANDARD_STD = 0.5
"""The normalisation every studio backbone's input has (``Preprocessing``'s defaults)."""


def is_torchvision_backbone(name: str) -> bool:
    return name in TORCHVISION_BACKBONES


def default_weights(name: str) -> Any:
    """torchvision's recommended weights enum member of ``name`` (``ResNet18_Weights.DEFAULT`` ...)."""
    from torchvision.models import get_model_weights
    return get_model_weights(name).DEFAULT


def weights_file_name(name: str) -> str:
    """torchvision's own file name of ``name``'s default weights, e.g. ``resnet18-f37072fd.pth``."""
    return default_weights(name).url.rsplit("/", 1)[-1]


def hub_checkpoints_folder() -> Path:
    """Where torchvision keeps downloaded weights: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_weights_path(name: str) -> Path:
    """The hub-cache file of ``name``'s weights; CheckpointError naming the file and folder when absent."""
    path = hub_checkpoints_folder() / weights_file_name(name)
    if not path.is_file():
        raise CheckpointError(f"model.weights_path {HUB_WEIGHTS!r}: {name}'s ImageNet weights {path.name} are not "
                              f"in {path.parent} (the studio never downloads: copy torchvision's file there, "
                              f"or pick the file as model.weights_path)")
    return path


def weights_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel of ``name``'s weights' preprocessing (``weights.transforms()``)."""
    transform = default_weights(name).transforms()
    return tuple(float(v) for v in transform.mean), tuple(float(v) for v in transform.std)


def weights_input(name: str) -> dict[str, int | float]:
    """Dotted data-config fields for the images ``name``'s weights expect: their crop size, colour, and the
    share the centre crop keeps, crop_size / resize_size of the weights' preprocessing
    (``{"data.image_size": 224, "data.channels": 3, "data.center_crop": 0.875}``: 224 of 256 for ResNet-18)."""
    transform = default_weights(name).transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return {"data.image_size": crop, "data.channels": 3, "data.center_crop": crop / resize}


def check_image_size(name: str, image_size: int) -> None:
    """ConfigError naming data.image_size when ``name`` cannot take ``image_size`` squared images."""
    if name.startswith("vit_"):
        if image_size % PATCH_SIZE or image_size < PATCH_SIZE:
            raise ConfigError(f"data.image_size must be a multiple of {PATCH_SIZE} for model.backbone {name!r} "
                              f"(got {image_size}; 224 for its ImageNet weights)")
    elif image_size < MIN_CNN_IMAGE_SIZE:
        raise ConfigError(f"data.image_size must be at least {MIN_CNN_IMAGE_SIZE} for model.backbone {name!r} "
                          f"(got {image_size}; 224 for its ImageNet weights)")


class TorchvisionBackbone(nn.Module):
    """[B, 1 or 3, H, W] normalised as ``Preprocessing`` -> [B, out_features] penultimate features.

    ``network`` is the torchvision model with its head replaced by ``nn.Identity``; the affine
    map to the weights' normalisation uses non-persistent buffers, so the state dict holds the
    network's tensors only (under ``network.``).
    """

    def __init__(self, name: str, network: nn.Module, out_features: int) -> None:
        super().__init__()
        mean, std = weights_normalisation(name)
        self.name = name
        self.network = network
        self.out_features = out_features
        scale = torch.tensor([STANDARD_STD / s for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([(STANDARD_MEAN - m) / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.network(x * self.input_scale + self.input_shift)


def build_torchvision_backbone(name: str, image_size: int, weights_path: str = "") -> TorchvisionBackbone:
    """``name``'s torchvision model, random or loaded from ``weights_path`` (or the hub cache), headless."""
    from torchvision.models import get_model
    if not is_torchvision_backbone(name):
        raise ConfigError(f"model.backbone: {name!r} is not a torchvision backbone; choose one of "
                          f"{', '.join(TORCHVISION_BACKBONES)}")
    check_image_size(name, image_size)
    extra = {"image_size": image_size} if name.startswith("vit_") else {}
    network = get_model(name, weights=None, **extra)
    if weights_path:
        path = hub_weights_path(name) if weights_path.strip() == HUB_WEIGHTS else Path(weights_path).expanduser()
        load_torchvision_weights(network, name, path, image_size)
    out_features = _remove_head(network)
    return TorchvisionBackbone(name, network, out_features)


def _remove_head(network: nn.Module) -> int:
    """Replace the last ``nn.Linear`` (the ImageNet classifier) by ``nn.Identity``; its input width."""
    last_name, last = "", None
    for module_name, module in network.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = module_name, module
    if last is None:
        raise ConfigError("model.backbone: this torchvision network has no linear classifier to remove")
    parent_name, _, child = last_name.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, nn.Identity())
    return int(last.in_features)


def load_torchvision_weights(network: nn.Module, name: str, path: Path, image_size: int) -> None:
    """Load torchvision's state dict file ``path`` into the full ``network`` (head included), keys and
    shapes checked; CheckpointError naming the file for a missing, unreadable or different file."""
    state = read_state_dict(path)
    if name.startswith("vit_") and "encoder.pos_embedding" in state:
        state = _fit_position_embedding(state, image_size)
    expected = network.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"weights file {path} is not {name}'s: missing key {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"weights file {path} is not {name}'s: key {key!r} has shape "
                                  f"{tuple(state[key].shape)}, expected {tuple(tensor.shape)}")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise CheckpointError(f"weights file {path} is not {name}'s: unexpected key {unexpected[0]!r}")
    network.load_state_dict(state, strict=True)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict of tensors read with ``weights_only=True``; CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    verify_zip_records(path)
    try:
        raw: Any = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # truncated, corrupt, or a pickle with code (refused by weights_only)
        raise CheckpointError(f"cannot read weights file {path}: {str(error).splitlines()[0]}") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} does not hold a state dict of tensors")
    return state


def _fit_position_embedding(state: dict[str, Tensor], image_size: int) -> dict[str, Tensor]:
    """ViT weights trained at 224 px used at another multiple of 16: interpolate the position embedding."""
    from torchvision.models.vision_transformer import interpolate_embeddings
    tokens = (image_size // PATCH_SIZE) ** 2 + 1
    if state["encoder.pos_embedding"].shape[1] == tokens:
        return state
    try:
        return dict(interpolate_embeddings(image_size, PATCH_SIZE, state))
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"weights file's position embedding cannot be resized to {image_size} px: "
                              f"{error}") from None
