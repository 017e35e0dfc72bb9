"""BatchNorm folded into convolutions for inference (engine.models.folding) and its use by FeatureCache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.config import ModelConfig
from engine.models.folding import folded_for_inference
from engine.models.registry import build_backbone
from engine.sessions.adapt_compute import FeatureCache


def trained_looking(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm running statistics and an affine map far from the identity, as after training."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            n = layer.num_features
            layer.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)
    return module.eval()


def n_norms(module: nn.Module) -> int:
    return sum(isinstance(layer, nn.BatchNorm2d) for layer in module.modules())


@pytest.mark.parametrize("name, channels, size", [("conv4", 1, 28), ("resnet12", 3, 32), ("resnet18", 3, 32),
                                                  ("mobilenet_v3_small", 3, 32)])
def test_the_folded_copy_computes_the_same_features_without_batchnorm(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    backbone = trained_looking(build_backbone(_config(name), channels, size))
    norms_before = n_norms(backbone)
    x = torch.randn(4, channels, size, size)
    with torch.no_grad():
        expected = backbone(x)
        folded = folded_for_inference(backbone)
        got = folded(x)
    assert folded is not backbone and norms_before > 0
    assert n_norms(folded) == 0                      # every conv -> BatchNorm pair was folded
    assert n_norms(backbone) == norms_before         # the original is left alone
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), expected, rtol=0, atol=0)


def test_the_copy_keeps_channels_last_weights() -> None:
    backbone = trained_looking(build_backbone(ModelConfig(), 1, 28)).to(memory_format=torch.channels_last)
    folded = folded_for_inference(backbone)
    convs = [layer for layer in folded.modules() if isinstance(layer, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


class SharedConvOutput(nn.Module):
    """The convolution's output feeds the BatchNorm AND the residual sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.norm(y) + y


def test_a_convolution_used_elsewhere_is_not_folded_and_nothing_to_fold_gives_the_same_module() -> None:
    model = trained_looking(SharedConvOutput())
    assert folded_for_inference(model) is model
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    assert folded_for_inference(plain) is plain
    no_stats = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    assert folded_for_inference(no_stats) is no_stats   # batch statistics even in eval mode: not an affine map


def test_the_feature_cache_embeds_missing_images_with_the_folded_copy() -> None:
    backbone = trained_looking(build_backbone(ModelConfig(), 1, 28))
    cache = FeatureCache(backbone).eval()
    assert n_norms(cache.embedder) == 0
    assert list(cache.parameters()) == list(backbone.parameters())   # the copy is not a submodule
    calls = []
    cache.embedder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        first = cache(x)
        again = cache(x[:3])
        expected = backbone(x)
    assert calls == [5]                                # the second call is served from the cache
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, first[:3], rtol=0, atol=0)


class ViewThenActivation(nn.Module):
    """The activation's input is a view of a tensor the output also reads: it must not work in place."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.act = nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.LeakyReLU(0.1)
        self.act_after_sum = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        flat = y.flatten(1)
        return torch.cat([self.act(flat), y.flatten(1), self.act_after_sum(y + 1).flatten(1)], 1)


def test_activations_work_in_place_only_on_fresh_tensors_nothing_else_reads() -> None:
    model = trained_looking(ViewThenActivation())
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
        folded = folded_for_inference(model)
        got = folded(x)
    assert not folded.act.inplace and folded.act_after_sum.inplace
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    resnet12 = folded_for_inference(trained_looking(build_backbone(_config("resnet12"), 3, 32)))
    assert all(layer.inplace for layer in resnet12.modules() if isinstance(layer, nn.LeakyReLU))


def _config(backbone: str) -> ModelConfig:
    config = ModelConfig()
    config.backbone = backbone
    return config


def test_evaluation_embeds_through_a_folded_copy_and_gives_the_same_result(tiny_flat, monkeypatch) -> None:
    """evaluate() folds the backbone of an algorithm with cacheable features, then gives its own back."""
    import engine.evaluation as evaluation
    from engine.algorithms.registry import build_algorithm
    from engine.data.dataset import load_data
    from tests.engine.helpers import tiny_config

    config = tiny_config(tiny_flat, "protonet")
    data = load_data(config.data)
    torch.manual_seed(0)
    algorithm = build_algorithm(config, n_train_classes=len(data.class_ids("train")))
    trained_looking(algorithm.backbone, seed=5)
    original, seen, probabilities = algorithm.backbone, [], evaluation.episode_probabilities
    monkeypatch.setattr(evaluation, "episode_probabilities",
                        lambda alg, task: seen.append(alg.backbone) or probabilities(alg, task))
    shape = dict(part="train", episodes=20, n_way=3, n_shot=1, n_query=2, seed=4)
    folded = evaluation.evaluate(algorithm, data, **shape)
    assert algorithm.backbone is original
    assert len(seen) == 20 and all(b is seen[0] and n_norms(b) == 0 for b in seen)
    monkeypatch.setattr(evaluation, "folded_for_inference", lambda backbone: backbone)
    plain = evaluation.evaluate(algorithm, data, **shape)
    assert seen[-1] is original
    assert len(set(plain.episode_accuracies)) > 1 and folded.episode_accuracies == plain.episode_accuracies
