"""The capabilities each algorithm class declares hold for its implementation, and the registry is the only list.

Views, the trainer and the race ask these flags instead of keeping lists of names, so a flag that lies
breaks them silently: each test checks a flag against what the algorithm really does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from engine.algorithms import registry
from engine.algorithms.base import Algorithm
from engine.algorithms.registry import ALGORITHMS, algorithm_class, build_algorithm, display_title
from engine.algorithms.reptile import Reptile
from engine.config import ALGORITHM_CONFIGS, ReptileConfig, RunConfig
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError
from engine.training.memory import estimate_maml_memory
from engine.training.sampling import build_training_sampler
from tests.engine.test_algorithms import N_TRAIN_CLASSES, TRAIN_POOL, build, make_task

ALL = sorted(ALGORITHMS)


class _CountingBackbone(nn.Module):
    """Wraps a backbone; counts forward calls and can embed a batch one image at a time."""

    def __init__(self, inner: nn.Module, one_at_a_time: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.out_features = getattr(inner, "out_features", None)
        self.one_at_a_time = one_at_a_time
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.one_at_a_time:
            return torch.cat([self.inner(image[None]) for image in x])
        return self.inner(x)


def _wrap_backbone(algorithm: Algorithm, one_at_a_time: bool = False) -> _CountingBackbone:
    wrapper = _CountingBackbone(algorithm.backbone, one_at_a_time)
    algorithm.backbone = wrapper
    for name in ("model",):  # MAML / Reptile keep the backbone inside a BackboneWithHead too
        model = getattr(algorithm, name, None)
        if model is not None and hasattr(model, "backbone"):
            model.backbone = wrapper
    return wrapper


@pytest.mark.parametrize("name", ALL)
def test_every_algorithm_declares_a_title_and_a_batch_kind(name: str) -> None:
    cls = algorithm_class(name)
    assert cls.batch_kind in ("episodes", "classes")
    assert cls.short_title, "built-in algorithms declare a compact display title"
    assert display_title(name) == cls.short_title
    assert isinstance(cls.one_pass_adaptation, bool) and isinstance(cls.inner_loop, bool)


@pytest.mark.parametrize("name", ALL)
def test_batch_kind_is_what_the_training_sampler_draws_and_the_step_takes(name: str, tiny_flat) -> None:
    from engine.data.dataset import load_data
    from tests.engine.helpers import tiny_config

    config = tiny_config(tiny_flat, name)
    if hasattr(config.algorithm, "batch_size"):
        config.algorithm.batch_size = 8
    data = load_data(config.data)
    sampler = build_training_sampler(config, data)
    batch = sampler.sample_batch(config.task.meta_batch_size) if algorithm_class(name).batch_kind == "episodes" \
        else sampler.sample()
    expected = list if algorithm_class(name).batch_kind == "episodes" else ClassBatch
    assert isinstance(batch, expected)
    if expected is list:
        assert all(isinstance(task, Task) for task in batch)
    algorithm = build_algorithm(config, len(data.class_ids("train")))
    metrics = algorithm.meta_train_step(batch)
    assert torch.isfinite(torch.tensor(metrics["loss"]))


@pytest.mark.parametrize("name", ALL)
def test_inner_loop_flag_matches_iter_adapt(name: str) -> None:
    algorithm = build(name)
    task = make_task(TRAIN_POOL, torch.Generator().manual_seed(5))
    if not algorithm.inner_loop:
        assert not callable(getattr(algorithm, "iter_adapt", None))
        return
    predictors = list(algorithm.iter_adapt(task.support_x, task.support_y, steps=2))
    assert len(predictors) == 3
    direct = algorithm.adapt(task.support_x, task.support_y, steps=2).predict(task.query_x)
    assert torch.allclose(predictors[-1].predict(task.query_x), direct, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_one_pass_adaptation_takes_no_steps(name: str) -> None:
    """One pass: one forward over the support set and no steps (``steps`` changes nothing); the others
    adapt with steps that change the predictions."""
    algorithm = build(name, finetune_steps=5) if hasattr(ALGORITHM_CONFIGS[name], "finetune_steps") else build(name)
    task = make_task(TRAIN_POOL, torch.Generator().manual_seed(6))
    counter = _wrap_backbone(algorithm)
    torch.manual_seed(2)
    no_steps = algorithm.adapt(task.support_x, task.support_y, steps=0).predict(task.query_x)
    calls = counter.calls
    torch.manual_seed(2)
    five_steps = algorithm.adapt(task.support_x, task.support_y, steps=5).predict(task.query_x)
    if algorithm.one_pass_adaptation:
        assert calls == 2, "one forward pass over the support set, one over the queries"
        assert torch.equal(no_steps, five_steps)
    else:
        assert not torch.allclose(no_steps, five_steps), f"{name} adapts with steps: it is not one-pass"


@pytest.mark.parametrize("name", [n for n in ALL if algorithm_class(n).cacheable_features])
def test_cacheable_features_do_not_depend_on_the_rest_of_the_batch(name: str) -> None:
    """What FeatureCache relies on: embedding images one at a time gives the same predictions."""
    torch.manual_seed(0)
    algorithm = build(name, finetune_steps=3) if hasattr(ALGORITHM_CONFIGS[name], "finetune_steps") else build(name)
    task = make_task(TRAIN_POOL, torch.Generator().manual_seed(7))
    torch.manual_seed(1)
    batched = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    _wrap_backbone(algorithm, one_at_a_time=True)
    torch.manual_seed(1)
    single = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert torch.allclose(batched, single, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in ALL if algorithm_class(n).cacheable_features])
def test_the_adapt_views_feature_cache_predicts_what_the_algorithm_predicts(name: str) -> None:
    """The cache embeds through a BatchNorm-folded copy of the backbone (every algorithm's backbone shape,
    Relation's feature maps included): the predictions must not change."""
    from engine.sessions.adapt_compute import FeatureCache, cached_backbone
    from tests.engine.test_folding import trained_looking

    torch.manual_seed(0)
    algorithm = build(name, finetune_steps=0) if hasattr(ALGORITHM_CONFIGS[name], "finetune_steps") else build(name)
    assert algorithm.cacheable_features
    trained_looking(algorithm.backbone, seed=3)
    task = make_task(TRAIN_POOL, torch.Generator().manual_seed(7))
    algorithm.train(False)
    torch.manual_seed(1)
    direct = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    cache = FeatureCache(algorithm.backbone).eval()
    assert cache.embedder is not cache.inner, "the backbone has BatchNorm layers to fold"
    with cached_backbone(algorithm, cache):
        torch.manual_seed(1)
        cached = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert cache.misses > 0
    torch.testing.assert_close(cached, direct, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_meta_gradient_memory_flag_matches_the_memory_estimate(name: str) -> None:
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name]())
    if algorithm_class(name).meta_gradient_memory:
        assert estimate_maml_memory(config, "cpu").message
    else:
        with pytest.raises(ConfigError, match="algorithm.name"):
            estimate_maml_memory(config, "cpu")


@dataclass
class _ThrowawayConfig(ReptileConfig):
    name: ClassVar[str] = "throwaway-capabilities"
    title: ClassVar[str] = "Throwaway (capabilities test)"


class _Throwaway(Reptile):
    short_title = "Throwaway"


def test_a_registered_algorithm_is_found_everywhere_the_engine_looks() -> None:
    registry.register(_ThrowawayConfig, _Throwaway)
    try:
        config = RunConfig.from_dict({"algorithm": {"name": "throwaway-capabilities"}})
        assert isinstance(config.algorithm, _ThrowawayConfig)
        assert isinstance(build_algorithm(config, N_TRAIN_CLASSES), _Throwaway)
        assert display_title("throwaway-capabilities") == "Throwaway"
    finally:
        registry.unregister("throwaway-capabilities")
    assert "throwaway-capabilities" not in ALGORITHMS and "throwaway-capabilities" not in ALGORITHM_CONFIGS
    with pytest.raises(ConfigError, match="algorithm.name"):
        algorithm_class("throwaway-capabilities")
