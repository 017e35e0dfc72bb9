"""Test-time views (``model.test_views``, engine.models.view_averaging): the same features on every path that embeds."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from engine.adapted import load_adapted, save_adapted
from engine.algorithms.registry import build_algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.errors import ConfigError
from engine.evaluation import inference_backbone
from engine.export import EXPORT_FORMATS, backbone_source, classifier_source, export_source
from engine.models.folding import folded_for_inference
from engine.models.view_averaging import (VIEW_MAX_ROTATION_DEG, attach_test_views, n_test_views, view_transforms,
                                          warped_view)
from engine.sessions.adapt_compute import FeatureCache
from engine.sessions.adapt_model import open_model
from engine.training.checkpoint import load_algorithm, save_checkpoint
from tests.engine.test_export import run_exported
from tests.engine.test_folding import trained_looking

torch.set_num_threads(1)
PREP = Preprocessing(image_size=28, channels=1)


def views_config(algorithm: str = "protonet", n_views: int = 4) -> RunConfig:
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[algorithm]())
    config.task.n_way, config.model.hidden_channels, config.model.test_views = 3, 8, n_views
    return config


def glyph_like(n: int, seed: int = 0) -> torch.Tensor:
    """[n, 1, 28, 28] images: a blank background with a random dark bar, so moving them changes them."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.ones(n, 1, 28, 28)
    for i in range(n):
        row, col = torch.randint(6, 20, (2,), generator=generator).tolist()
        x[i, 0, row:row + 3, col - 5:col + 5] = 0.0
    return x


def manual_mean(backbone: torch.nn.Module, x: torch.Tensor, n_views: int) -> torch.Tensor:
    """The definition, written out: the mean of the plain network's outputs over the warped copies."""
    plain = copy.deepcopy(backbone)
    plain._forward_hooks.clear()
    outputs = [plain(warped_view(x, theta)) for theta in view_transforms(n_views)]
    return torch.stack(outputs).mean(0)


def test_views_are_seeded_the_identity_first_and_within_their_bounds() -> None:
    thetas = view_transforms(16)
    assert thetas.shape == (16, 2, 3)
    torch.testing.assert_close(thetas[0], torch.eye(2, 3))
    torch.testing.assert_close(view_transforms(16), thetas, rtol=0, atol=0)
    assert not torch.allclose(view_transforms(16, seed=1), thetas)
    linear = thetas[1:, :, :2]
    assert (linear.det() - 1).abs().max() < 0.35          # about +-10% scale per axis
    assert (linear - torch.eye(2)).abs().max() > 0.05       # the copies do move
    angle = torch.atan2(linear[:, 1, 0], linear[:, 0, 0]).abs().max()
    assert angle <= math.radians(VIEW_MAX_ROTATION_DEG) + 1e-6


def test_eval_features_are_the_mean_over_views_and_training_is_untouched() -> None:
    algorithm = build_algorithm(views_config(n_views=4), n_train_classes=4)
    backbone = trained_looking(algorithm.backbone)
    assert n_test_views(backbone) == 4
    x = glyph_like(5)
    with torch.no_grad():
        viewed = backbone.eval()(x)
        torch.testing.assert_close(viewed, manual_mean(backbone, x, 4), rtol=1e-5, atol=1e-6)
        plain = copy.deepcopy(backbone)
        plain._forward_hooks.clear()
        assert not torch.allclose(viewed, plain(x), atol=1e-4)          # the views change the features
        one_by_one = torch.cat([backbone(x[i:i + 1]) for i in range(5)])
        torch.testing.assert_close(one_by_one, viewed, rtol=1e-5, atol=1e-6)  # an image's features ignore its batch
        training = copy.deepcopy(backbone).train()    # (a training forward moves the running statistics)
        torch.testing.assert_close(training(x), plain.train()(x))       # training: one view, as before


def test_copies_keep_the_views_folded_deep_copied_cached_and_in_evaluation() -> None:
    algorithm = build_algorithm(views_config(n_views=3), n_train_classes=4)
    backbone = trained_looking(algorithm.backbone)
    x = glyph_like(4, seed=1)
    with torch.no_grad():
        expected = backbone(x)
        folded = folded_for_inference(backbone)
        assert folded is not backbone and n_test_views(folded) == 3
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(copy.deepcopy(backbone)(x), expected, rtol=0, atol=0)
        cache = FeatureCache(backbone).eval()
        torch.testing.assert_close(cache(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cache(x[:2]), expected[:2], rtol=1e-4, atol=1e-5)  # from the cache
        assert cache.hits == 2
        with inference_backbone(algorithm):
            torch.testing.assert_close(algorithm.backbone(x), expected, rtol=1e-4, atol=1e-5)


def test_views_keep_a_channels_last_batch_channels_last() -> None:
    x = torch.rand(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    view = warped_view(x, view_transforms(2)[1])
    assert view.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(warped_view(x, view_transforms(1)[0]), x)  # the identity view is the image


def views_checkpoint(tmp_path: Path, n_views: int) -> Path:
    """A saved (untrained) ProtoNet checkpoint with ``n_views`` test-time views."""
    config = views_config(n_views=n_views)
    return save_checkpoint(tmp_path / "views.pt", build_algorithm(config, n_train_classes=4), config,
                           ClassSplit(["a", "b", "c", "d"], ["e"], ["f"]), PREP, step=1, n_train_classes=4)


def adapted_to_bars(tmp_path: Path, checkpoint: Path, seed: int) -> tuple:
    """(the loaded algorithm, its predictor for 3 classes of 2 bar images, the saved adapted classifier's path)."""
    loaded, _ = load_algorithm(checkpoint)
    images = (glyph_like(6, seed=seed) * 255).to(torch.uint8)
    labels = torch.arange(3).repeat_interleave(2)
    predictor = loaded.adapt(PREP.normalize(images), labels)
    path = save_adapted(tmp_path / "adapted.pt", checkpoint, ["x", "y", "z"], images, labels, predictor.state(),
                        algorithm=loaded)
    return loaded, predictor, path


def test_a_checkpoint_and_an_adapted_classifier_keep_the_views(tmp_path: Path) -> None:
    checkpoint = views_checkpoint(tmp_path, 4)
    loaded, predictor, path = adapted_to_bars(tmp_path, checkpoint, seed=2)
    assert n_test_views(loaded.backbone) == 4
    queries = PREP.normalize((glyph_like(4, seed=3) * 255).to(torch.uint8))
    expected = predictor.predict(queries)
    torch.testing.assert_close(load_adapted(path).predict(queries), expected)
    opened = open_model(checkpoint)  # as the Adapt view opens it: says so, and its feature cache has the views
    assert "4 test-time views" in opened.summary()
    with torch.no_grad():
        torch.testing.assert_close(opened.feature_cache.eval()(queries), loaded.backbone.eval()(queries),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_an_exported_backbone_computes_the_views(tmp_path: Path, fmt: str) -> None:
    algorithm = build_algorithm(views_config(n_views=3), n_train_classes=4)
    trained_looking(algorithm.backbone)
    prep = Preprocessing(image_size=28, channels=1)
    report = export_source(backbone_source(algorithm, prep), tmp_path / f"b{EXPORT_FORMATS[fmt][1]}", fmt)
    assert report.parity <= 1e-4
    x = prep.normalize((glyph_like(3, seed=4) * 255).to(torch.uint8))
    with torch.no_grad():
        expected = algorithm.backbone.eval()(x)
    torch.testing.assert_close(run_exported(report.path, fmt, x), expected, rtol=1e-4, atol=1e-4)


def test_an_exported_classifier_with_views_passes_parity(tmp_path: Path) -> None:
    _, _, path = adapted_to_bars(tmp_path, views_checkpoint(tmp_path, 3), seed=5)
    report = export_source(classifier_source(load_adapted(path)), tmp_path / "c.onnx", "onnx")
    assert report.parity <= 1e-4


def test_bad_view_counts_are_refused_naming_the_field() -> None:
    config = views_config(n_views=2)
    config.model.backbone = "mlp"
    with pytest.raises(ConfigError, match="model.test_views"):
        build_algorithm(config, n_train_classes=4)
    with pytest.raises(ValueError, match="model.test_views must be between 1 and 64"):
        attach_test_views(torch.nn.Identity(), 0)
    backbone = attach_test_views(torch.nn.Identity(), 2)
    with pytest.raises(ValueError, match="already attached"):
        attach_test_views(backbone, 2)
