"""Backbones: output shapes, and loading starting weights with clear errors."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from engine.config import ModelConfig
from engine.errors import CheckpointError, ConfigError
from engine.models.conv4 import Conv4
from engine.models.mlp import MLP
from engine.models.registry import build_backbone, load_weights
from engine.models.resnet import ResNet12

torch.set_num_threads(1)


@pytest.mark.parametrize("image_size, channels, hidden, expected", [
    (28, 1, 64, 64), (84, 3, 64, 1600), (84, 3, 8, 8 * 25), (32, 1, 4, 4 * 4),
])
def test_conv4_output_features(image_size: int, channels: int, hidden: int, expected: int) -> None:
    torch.manual_seed(0)
    model = Conv4(channels, image_size, hidden)
    out = model(torch.randn(2, channels, image_size, image_size))
    assert model.out_features == expected
    assert out.shape == (2, expected)


@pytest.mark.parametrize("image_size, channels", [(28, 1), (84, 3)])
def test_resnet12_output_features(image_size: int, channels: int) -> None:
    torch.manual_seed(0)
    model = ResNet12(channels, hidden_channels=4)
    out = model(torch.randn(2, channels, image_size, image_size))
    assert model.out_features == 32
    assert out.shape == (2, 32)
    assert torch.isfinite(out).all()


def test_resnet12_default_widths() -> None:
    model = ResNet12(3)
    widths = [block.body[0].out_channels for block in model.blocks]
    assert widths == [64, 128, 256, 512]
    assert model.out_features == 512


def test_mlp_is_the_sinusoid_network() -> None:
    model = MLP()
    assert model(torch.randn(10, 1)).shape == (10, 1)
    assert model.out_features == 1
    sizes = [(layer.in_features, layer.out_features) for layer in model.layers if isinstance(layer, torch.nn.Linear)]
    assert sizes == [(1, 40), (40, 40), (40, 1)]


def test_conv4_works_with_functional_call() -> None:
    torch.manual_seed(0)
    model = Conv4(1, 28, 8)
    x = torch.randn(4, 1, 28, 28)
    params = {n: p * 2 for n, p in model.named_parameters()}
    out = functional_call(model, params, (x,))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    assert torch.allclose(out, model(x), atol=1e-5)


def test_build_backbone_by_name() -> None:
    assert isinstance(build_backbone(ModelConfig("conv4", 8), 1, 28), Conv4)
    assert isinstance(build_backbone(ModelConfig("resnet12", 4), 3, 28), ResNet12)
    assert isinstance(build_backbone(ModelConfig("mlp"), 1, 28), MLP)
    assert build_backbone(ModelConfig("conv4", 8), 3, 84).out_features == 8 * 25


def test_build_backbone_rejects_tiny_images() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        build_backbone(ModelConfig("conv4", 8), 1, 8)


def test_load_weights_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    source = Conv4(1, 28, 8)
    source(torch.randn(4, 1, 28, 28))  # move the BN running stats away from their defaults
    raw_path, wrapped_path = tmp_path / "raw.pt", tmp_path / "wrapped.pt"
    torch.save(source.state_dict(), raw_path)
    torch.save({"state_dict": source.state_dict()}, wrapped_path)
    for path in (raw_path, wrapped_path):
        torch.manual_seed(1)
        target = Conv4(1, 28, 8)
        load_weights(target, path)
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), key


def test_build_backbone_loads_weights_path(tmp_path) -> None:
    torch.manual_seed(0)
    source = Conv4(1, 28, 8)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    built = build_backbone(ModelConfig("conv4", 8, str(path)), 1, 28)
    assert torch.equal(built.blocks[0][0].weight, source.blocks[0][0].weight)


def test_load_weights_shape_mismatch_names_file_and_key(tmp_path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(Conv4(1, 28, 16).state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_weights(Conv4(1, 28, 8), path)
    assert str(path) in str(error.value)
    assert "blocks.0.0.weight" in str(error.value)


def test_load_weights_unexpected_and_missing_keys(tmp_path) -> None:
    state = Conv4(1, 28, 8).state_dict()
    extra = tmp_path / "extra.pt"
    torch.save({**state, "bogus.weight": torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match="bogus.weight"):
        load_weights(Conv4(1, 28, 8), extra)
    missing = tmp_path / "missing.pt"
    torch.save({k: v for k, v in state.items() if k != "blocks.3.1.bias"}, missing)
    with pytest.raises(CheckpointError, match="blocks.3.1.bias"):
        load_weights(Conv4(1, 28, 8), missing)


def test_load_weights_missing_file_is_named(tmp_path) -> None:
    path = tmp_path / "nowhere.pt"
    with pytest.raises(CheckpointError, match="nowhere.pt"):
        load_weights(Conv4(1, 28, 8), path)


def test_load_weights_rejects_garbage_and_pickled_code(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_weights(Conv4(1, 28, 8), garbage)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": Conv4(1, 28, 8).state_dict(), "obj": ModelConfig()}, unsafe)
    with pytest.raises(CheckpointError, match="unsafe.pt"):
        load_weights(Conv4(1, 28, 8), unsafe)


def test_conv4_block_order_equals_the_textbook_conv_bn_relu_pool():
    import torch
    from torch import nn

    from engine.models.conv4 import Conv4

    torch.manual_seed(0)
    model = Conv4(in_channels=1, image_size=28, hidden_channels=8).train()
    x = torch.randn(10, 1, 28, 28)
    out = model(x)
    h = x
    for block in model.blocks:
        conv, bn = block[0], block[1]
        h = nn.functional.max_pool2d(torch.relu(bn(conv(h))), 2)
    assert torch.allclose(out, h.flatten(1), atol=1e-6)
