"""P>M>F: meta-training on or off (frozen features), test-time fine-tuning of a backbone copy, saved state."""

from __future__ import annotations

import torch

from engine.algorithms.pmf import PMF, PMFConfig
from engine.algorithms.protonet import ProtoNet
from engine.algorithms.registry import ALGORITHMS, build_algorithm
from engine.config import ProtoNetConfig, RunConfig
from engine.data.types import Task

N_WAY, SIZE = 3, 28


def _algorithm(**fields) -> PMF:
    torch.manual_seed(0)
    config = RunConfig(algorithm=PMFConfig(**fields))
    config.model.hidden_channels, config.data.image_size, config.data.channels = 8, SIZE, 3
    config.task.n_way = N_WAY
    return build_algorithm(config, n_train_classes=10)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _task() -> Task:
    labels = torch.arange(N_WAY).repeat_interleave(2)
    return Task(_images(6, 1), labels, _images(6, 2), labels, torch.arange(N_WAY), torch.empty(0), torch.empty(0))


def _weights(algorithm: PMF) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in algorithm.backbone.state_dict().items()}


def test_pmf_is_registered() -> None:
    assert ALGORITHMS["pmf"] is PMF


def test_frozen_features_leave_the_backbone_and_its_statistics_as_they_are() -> None:
    frozen, trained = _algorithm(meta_train=False), _algorithm(meta_train=True)
    before = _weights(frozen)
    metrics = frozen.meta_train_step([_task()])
    trained.meta_train_step([_task()])
    assert all(torch.equal(before[k], v) for k, v in frozen.backbone.state_dict().items())
    assert not all(torch.equal(before[k], v) for k, v in trained.backbone.state_dict().items())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0


def test_fine_tuning_changes_a_copy_and_its_state_reproduces_the_predictions() -> None:
    algorithm = _algorithm(finetune_steps=5, finetune_lr=0.05)
    assert not algorithm.cacheable_features and not algorithm.one_pass_adaptation
    before = _weights(algorithm)
    task, steps = _task(), []
    predictor = algorithm.adapt(task.support_x, task.support_y, progress=lambda done, total: steps.append(done))
    assert steps == [1, 2, 3, 4, 5]
    assert all(torch.equal(before[k], v) for k, v in algorithm.backbone.state_dict().items())
    plain = ProtoNet(ProtoNetConfig(), algorithm.backbone, n_way=N_WAY, n_train_classes=10)
    unchanged = plain.adapt(task.support_x, task.support_y)
    assert not torch.allclose(predictor.prototypes(), unchanged.prototypes())
    probabilities = predictor.predict(task.query_x)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(len(task.query_x)))
    rebuilt = algorithm.predictor_from_state(predictor.state())
    torch.testing.assert_close(rebuilt.predict(task.query_x), probabilities)


def test_no_fine_tuning_is_protonet_with_cached_features() -> None:
    algorithm = _algorithm(finetune_steps=0)
    assert algorithm.cacheable_features and algorithm.one_pass_adaptation
    task = _task()
    plain = ProtoNet(ProtoNetConfig(), algorithm.backbone, n_way=N_WAY, n_train_classes=10)
    torch.testing.assert_close(algorithm.adapt(task.support_x, task.support_y).prototypes(),
                               plain.adapt(task.support_x, task.support_y).prototypes())
