"""torchvision backbones: weights found in the hub cache by torchvision's file name, loaded with their
features equal to torchvision's own model, wrong files refused naming the file; offline (random weights).

ViT-B/16 is not built here (86M parameters, seconds of initialisation on a 2-core CPU): its name, file
name and image-size rule are checked without building it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import get_model

from engine.config import ModelConfig
from engine.errors import CheckpointError, ConfigError
from engine.models import torchvision_backbones as tvb
from engine.models.registry import build_backbone

SIZE = 32


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary PyTorch hub folder (what ``torch.hub.set_dir`` sets); returns its checkpoints folder."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def _torchvision_model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_model(name, weights=None).eval()


def _imagenet_input(name: str, unit: torch.Tensor) -> torch.Tensor:
    """What torchvision's own preprocessing gives the network for [0, 1] images."""
    mean, std = tvb.default_weights(name).transforms().mean, tvb.default_weights(name).transforms().std
    return (unit - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_hub_weights_are_found_by_torchvisions_file_name_and_give_its_features(hub: Path, name: str) -> None:
    model = _torchvision_model(name)
    torch.save(model.state_dict(), hub / tvb.weights_file_name(name))
    backbone = build_backbone(ModelConfig(name, weights_path=tvb.HUB_WEIGHTS), 3, SIZE).eval()
    unit = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    tvb._remove_head(model)  # torchvision's model, its classifier replaced by the identity
    with torch.no_grad():
        expected = model(_imagenet_input(name, unit))
        ours = backbone((unit - 0.5) / 0.5)  # the studio's Preprocessing normalisation
    assert ours.shape == (2, backbone.out_features) == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_a_file_picked_by_the_user_is_loaded(tmp_path: Path) -> None:
    model = _torchvision_model("resnet18", seed=3)
    path = tmp_path / "my-resnet.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    backbone = build_backbone(ModelConfig("resnet18", weights_path=str(path)), 3, SIZE)
    torch.testing.assert_close(backbone.network.conv1.weight, model.conv1.weight)
    assert backbone.out_features == 512 and isinstance(backbone.network.fc, nn.Identity)


def test_grey_images_are_repeated_to_three_channels() -> None:
    backbone = build_backbone(ModelConfig("resnet18"), 1, SIZE).eval()
    grey = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(backbone(grey), backbone(grey.repeat(1, 3, 1, 1)))


def test_missing_hub_file_names_the_file_and_the_folder(hub: Path) -> None:
    with pytest.raises(CheckpointError) as caught:
        build_backbone(ModelConfig("resnet18", weights_path="torchvision"), 3, SIZE)
    assert "resnet18-f37072fd.pth" in str(caught.value) and str(hub) in str(caught.value)


def _other_architecture(path: Path) -> None:
    torch.save(_torchvision_model("mobilenet_v3_small").state_dict(), path)


def _truncated(path: Path) -> None:
    torch.save(_torchvision_model("resnet18").state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_a_state_dict(path: Path) -> None:
    torch.save({"epoch": 3, "name": "resnet18"}, path)


@pytest.mark.parametrize("make_file", [_other_architecture, _truncated, _not_a_state_dict],
                         ids=["other-architecture", "truncated", "not-a-state-dict"])
def test_wrong_files_are_refused_naming_the_file(hub: Path, make_file) -> None:
    path = hub / tvb.weights_file_name("resnet18")
    make_file(path)
    with pytest.raises(CheckpointError) as caught:
        build_backbone(ModelConfig("resnet18", weights_path="torchvision"), 3, SIZE)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


def test_the_config_offers_every_torchvision_backbone() -> None:
    choices = next(f for f in dataclasses.fields(ModelConfig) if f.name == "backbone").metadata["choices"]
    assert set(tvb.TORCHVISION_BACKBONES) <= set(choices)
    assert {"resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
            "convnext_tiny", "vit_b_16"} <= set(tvb.TORCHVISION_BACKBONES)


def test_image_sizes_a_backbone_cannot_take_are_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="data.image_size must be a multiple of 16"):
        tvb.check_image_size("vit_b_16", 100)
    with pytest.raises(ConfigError, match="data.image_size must be at least 32"):
        build_backbone(ModelConfig("resnet18"), 3, 28)
    assert tvb.weights_file_name("vit_b_16") == "vit_b_16-c867db91.pth"


def test_a_checkpoint_with_pretrained_weights_loads_back_without_the_weights_file(hub: Path, tmp_path: Path) -> None:
    from engine.algorithms.registry import build_algorithm
    from engine.config import ProtoNetConfig, RunConfig
    from engine.data.preprocess import Preprocessing
    from engine.data.splits import ClassSplit
    from engine.training.checkpoint import load_algorithm, save_checkpoint

    torch.save(_torchvision_model("resnet18", seed=5).state_dict(), hub / tvb.weights_file_name("resnet18"))
    config = RunConfig(algorithm=ProtoNetConfig())
    config.model.backbone, config.model.weights_path = "resnet18", tvb.HUB_WEIGHTS
    config.data.image_size, config.data.channels = SIZE, 3
    algorithm = build_algorithm(config, n_train_classes=4)
    split = ClassSplit(train=["a", "b", "c", "d"], val=["v"], test=["t"])
    path = save_checkpoint(tmp_path / "run.pt", algorithm, config, split, Preprocessing(SIZE, 3), step=0,
                           n_train_classes=4)
    (hub / tvb.weights_file_name("resnet18")).unlink()  # the checkpoint holds the weights
    loaded, _ = load_algorithm(path)
    images = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone.eval()(images), algorithm.backbone.eval()(images))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_photos_are_resized_and_centre_cropped_as_the_weights_preprocessing_does(tmp_path: Path, name: str) -> None:
    """Our decoding of a non-square photo equals torchvision's own transforms of the weights (before the
    normalisation, which the backbone applies): shorter side to resize_size, centre crop_size square."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    from engine.algorithms.recipes import apply_recipe
    from engine.config import RunConfig
    from engine.data.preprocess import Preprocessing

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (301, 417, 3), dtype=torch.uint8, generator=generator).numpy()
    path = tmp_path / "photo.png"
    Image.fromarray(pixels, "RGB").save(path)
    transform = tvb.default_weights(name).transforms()
    with Image.open(path) as image:
        resized = TF.resize(image.convert("RGB"), list(transform.resize_size), interpolation=transform.interpolation)
        expected = TF.pil_to_tensor(TF.center_crop(resized, list(transform.crop_size)))
    config = apply_recipe(RunConfig(), "pmf")
    config.model.backbone = name
    config.data.image_size, _, config.data.center_crop = tvb.weights_input(name).values()
    ours = Preprocessing.from_config(config.data).decode(path)
    assert ours.shape == expected.shape == (3, 224, 224)
    assert torch.equal(ours, expected)
    squashed = Preprocessing(image_size=224, channels=3).decode(path)
    assert not torch.equal(squashed, expected)  # the default squashes the whole photo instead


def test_photo_recipes_take_the_crop_of_their_backbones_weights() -> None:
    from engine.algorithms.recipes import apply_recipe
    from engine.config import RunConfig

    config = apply_recipe(RunConfig(), "pmf")  # ResNet-50's weights: resize 232, crop 224
    assert (config.data.image_size, config.data.channels) == (224, 3)
    assert config.data.center_crop == pytest.approx(224 / 232)
    assert apply_recipe(RunConfig(), "frozen-imagenet").data.center_crop == pytest.approx(224 / 256)


def test_checkpoints_from_before_the_crop_field_keep_squashing() -> None:
    from engine.data.preprocess import Preprocessing

    old = Preprocessing.from_dict({"image_size": 84, "channels": 3, "mean": 0.5, "std": 0.5})
    assert old.center_crop == 1.0
    with pytest.raises(ConfigError, match="center_crop"):
        Preprocessing.from_dict({"image_size": 84, "channels": 3, "center_crop": 1.5})
