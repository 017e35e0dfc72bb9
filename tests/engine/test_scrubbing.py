"""The inner-loop scrubber's engine: every recorded step is what ``adapt(steps=k)`` predicts.

Tiny Conv-4 models (16 filters) on synthetic 28x28 episodes; a short seeded meta-training
run first, so that adaptation actually changes the predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.algorithms.base import Algorithm
from engine.algorithms.baseline import HEAD_SEED, make_head
from engine.algorithms.registry import build_algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.data.dataset import load_data
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError, DatasetError
from engine.scrubbing import adaptation_trajectory, has_inner_loop, inner_loop_steps, sample_test_episode
from engine.training.checkpoint import load_algorithm, save_checkpoint
from tests.engine.helpers import tiny_config

torch.set_num_threads(1)

# (registry name, config overrides): MAML second order, first order, ANIL, Reptile, Baseline, Baseline++
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "maml": ("maml", {}),
    "fomaml": ("fomaml", {}),
    "anil": ("maml", {"anil": True}),
    "reptile": ("reptile", {"inner_lr": 0.01, "inner_steps": 3, "test_inner_steps": 6}),
    "baseline": ("baseline", {"batch_size": 16, "finetune_steps": 25}),
    "baseline++": ("baseline++", {"batch_size": 16, "finetune_steps": 25}),
}
N_CLASSES = 12
PATTERNS = F.interpolate(torch.randn(N_CLASSES, 1, 7, 7, generator=torch.Generator().manual_seed(0)), size=28,
                         mode="bilinear", align_corners=False)


def episode(seed: int, n_way: int = 4, n_shot: int = 2, n_query: int = 3) -> Task:
    """A noisy n-way episode of random class patterns (class-major labels)."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.randperm(N_CLASSES, generator=g)[:n_way]
    support_y = torch.arange(n_way).repeat_interleave(n_shot)
    query_y = torch.arange(n_way).repeat_interleave(n_query)
    support_x = PATTERNS[classes[support_y]] + torch.randn(len(support_y), 1, 28, 28, generator=g)
    query_x = PATTERNS[classes[query_y]] + torch.randn(len(query_y), 1, 28, 28, generator=g)
    return Task(support_x, support_y, query_x, query_y, class_ids=classes)


def build(variant: str) -> Algorithm:
    """The variant after a few seeded training steps (enough to move away from the initialisation)."""
    name, overrides = VARIANTS[variant]
    torch.manual_seed(0)
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name](**overrides))
    config.model.hidden_channels = 16
    config.task.n_way = 4
    algorithm = build_algorithm(config, n_train_classes=N_CLASSES)
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        if algorithm.batch_kind == "classes":
            labels = torch.randint(N_CLASSES, (16,), generator=g)
            algorithm.meta_train_step(ClassBatch(PATTERNS[labels] + torch.randn(16, 1, 28, 28, generator=g), labels))
        else:
            algorithm.meta_train_step([episode(100 + step)])
    algorithm.train(False)
    return algorithm


@pytest.fixture(scope="module")
def trained() -> dict[str, Algorithm]:
    class Lazy(dict):
        def __missing__(self, variant: str) -> Algorithm:
            self[variant] = build(variant)
            return self[variant]

    return Lazy()


def weights(algorithm: Algorithm) -> dict[str, Tensor]:
    return {f"{m}.{k}": v.detach().clone() for m, module in algorithm.modules().items()
            for k, v in module.state_dict().items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_step_equals_adapt_with_that_many_steps(variant: str, trained) -> None:
    algorithm = trained[variant]
    task = episode(7)
    test_steps = inner_loop_steps(algorithm.config).test
    before = weights(algorithm)
    trajectory = adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y,
                                       steps=test_steps)
    assert trajectory.steps == trajectory.requested_steps == test_steps and not trajectory.stopped
    assert trajectory.query_probabilities.shape == (test_steps + 1, len(task.query_y), 4)
    for k in (0, 1, test_steps):
        expected = algorithm.adapt(task.support_x, task.support_y, steps=k).predict(task.query_x)
        assert torch.allclose(trajectory.query_probabilities[k], expected, atol=1e-6, rtol=0), f"step {k}"
        loss = F.nll_loss(expected.log(), task.query_y)
        assert trajectory.query_loss[k].item() == pytest.approx(loss.item(), abs=1e-5)
        accuracy = (expected.argmax(1) == task.query_y).float().mean().item()
        assert trajectory.query_accuracy[k].item() == pytest.approx(accuracy)
    assert not torch.allclose(trajectory.query_probabilities[0], trajectory.query_probabilities[-1], atol=1e-4), \
        "adaptation must change the predictions"
    assert trajectory.support_loss[-1] < trajectory.support_loss[0], "the inner loop minimises the support loss"
    for key, value in weights(algorithm).items():
        assert torch.equal(value, before[key]), f"{key} changed"


@pytest.mark.parametrize("variant", ["maml", "reptile"])
def test_step_zero_is_the_meta_learned_initialisation(variant: str, trained) -> None:
    algorithm = trained[variant]
    task = episode(8)
    trajectory = adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y,
                                       steps=2)
    with torch.no_grad():
        unadapted = algorithm.model(task.query_x)[:, :4].softmax(1)
    assert torch.allclose(trajectory.query_probabilities[0], unadapted, atol=1e-6)


def test_step_zero_of_baseline_is_the_fresh_seeded_head(trained) -> None:
    algorithm = trained["baseline"]
    task = episode(9)
    trajectory = adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y,
                                       steps=2)
    features = algorithm.support_features(task.query_x)
    head = make_head("linear", features.shape[1], 4, 1.0, torch.Generator().manual_seed(HEAD_SEED))
    with torch.no_grad():
        expected = head(features).softmax(1)
    assert torch.allclose(trajectory.query_probabilities[0], expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["maml", "reptile", "baseline"])
def test_the_inner_loop_runs_once_not_once_per_step(variant: str, trained) -> None:
    task = episode(10)
    calls: list[tuple[int, int]] = []
    adaptation_trajectory(trained[variant], task.support_x, task.support_y, task.query_x, task.query_y, steps=5,
                          progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 5) for k in range(1, 6)]


def test_stopping_early_keeps_the_steps_done(trained) -> None:
    task = episode(11)
    calls: list[int] = []
    trajectory = adaptation_trajectory(trained["maml"], task.support_x, task.support_y, task.query_x,
                                       task.query_y, steps=50, progress=lambda done, total: calls.append(done),
                                       should_stop=lambda: len(calls) >= 2)
    assert trajectory.stopped and trajectory.steps == 2 and trajectory.requested_steps == 50
    assert trajectory.query_probabilities.shape[0] == trajectory.query_loss.shape[0] == 3
    assert calls == [1, 2]


@pytest.mark.parametrize("name, title", [("protonet", "Prototypical Networks"), ("matching", "Matching Networks"),
                                         ("simpleshot", "SimpleShot")])
def test_algorithms_without_an_inner_loop_are_refused_by_name(name: str, title: str) -> None:
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name]())
    config.model.hidden_channels = 16
    algorithm = build_algorithm(config, n_train_classes=N_CLASSES)
    task = episode(12)
    assert not has_inner_loop(name)
    with pytest.raises(ConfigError, match=title) as error:
        adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y, steps=3)
    assert name in str(error.value) and "MAML" in str(error.value)


def test_bad_steps_and_labels_are_named(trained) -> None:
    task = episode(13)
    algorithm = trained["maml"]
    with pytest.raises(ConfigError, match="steps"):
        adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y, steps=-1)
    with pytest.raises(DatasetError, match="query set"):
        adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y + 4, steps=1)
    with pytest.raises(DatasetError, match="query set"):
        adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y[:3], steps=1)


@pytest.fixture(scope="module")
def maml_checkpoint(tiny_flat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) MAML checkpoint of the tiny synthetic folder, with its class split."""
    config = tiny_config(tiny_flat, "maml")
    data = load_data(config.data)
    algorithm = build_algorithm(config, n_train_classes=len(data.class_ids("train")))
    path = tmp_path_factory.mktemp("scrub-checkpoint") / "best.pt"
    return save_checkpoint(path, algorithm, config, data.split, data.preprocessing, step=0,
                           n_train_classes=len(data.class_ids("train")))


def test_sample_test_episode_uses_the_checkpoints_data_split_and_preprocessing(maml_checkpoint: Path) -> None:
    test_episode = sample_test_episode(maml_checkpoint, n_way=3, n_shot=2, n_query=2, seed=5)
    algorithm, checkpoint = load_algorithm(maml_checkpoint)
    task = test_episode.task
    assert set(test_episode.class_names) <= set(checkpoint.split.test) and len(test_episode.class_names) == 3
    assert task.support_x.shape == (6, 1, 28, 28) and task.query_x.shape == (6, 1, 28, 28)
    assert test_episode.support_pixels.dtype == torch.uint8
    assert torch.equal(checkpoint.preprocessing.normalize(test_episode.support_pixels), task.support_x)
    assert torch.equal(checkpoint.preprocessing.normalize(test_episode.query_pixels), task.query_x)
    data = load_data(checkpoint.config.data, split=checkpoint.split)
    evaluation_first = data.episodes("test", 3, 2, 2, seed=5).sample()  # what evaluate(seed=5) sees first
    assert torch.equal(evaluation_first.query_x, task.query_x)
    again = sample_test_episode(checkpoint, n_way=3, n_shot=2, n_query=2, seed=5, data=data)
    other = sample_test_episode(checkpoint, n_way=3, n_shot=2, n_query=2, seed=6, data=data)
    assert torch.equal(again.task.query_index, task.query_index)
    assert not torch.equal(other.task.query_index, task.query_index)
    trajectory = adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y,
                                       steps=2)
    assert trajectory.query_probabilities.shape == (3, 6, 3)


def test_sample_test_episode_names_bad_fields(maml_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="n_way"):
        sample_test_episode(maml_checkpoint, n_way=1, n_shot=1, n_query=1, seed=0)
    with pytest.raises(ConfigError, match="n_query"):
        sample_test_episode(maml_checkpoint, n_way=2, n_shot=1, n_query=0, seed=0)
    with pytest.raises(ConfigError, match="split"):
        sample_test_episode(maml_checkpoint, n_way=2, n_shot=1, n_query=1, seed=0, split="holdout")
    with pytest.raises(ConfigError, match="n_way"):  # more classes than the test part has
        sample_test_episode(maml_checkpoint, n_way=50, n_shot=1, n_query=1, seed=0)
