"""The transductive methods (TIM, PT-MAP, LaplacianShot, BD-CSPN, transductive fine-tuning) on the built-in glyphs.

They share their pre-training (a classifier over the training classes), so ONE short seeded pre-training run
(Conv-4 with 32 filters, 28 px) gives the weights that every method then adapts with its own transductive
inference: held-out accuracy well above chance, identical predictions after a checkpoint round trip, the
whole query set in one call during evaluation, and a one-line error for a single query image.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.algorithms.registry import ALGORITHMS, build_algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig, resolve_channels_last
from engine.data.dataset import load_data
from engine.errors import DatasetError
from engine.evaluation import evaluate
from engine.training.checkpoint import load_algorithm, save_checkpoint
from engine.training.trainer import Trainer

torch.set_num_threads(1)

TRANSDUCTIVE = ["tim", "pt_map", "laplacianshot", "bd_cspn", "transductive_finetuning"]
PRETRAINING_STEPS = 150
THRESHOLD = 0.45  # 5-way: chance is 0.2


def glyph_config(root: Path, name: str) -> RunConfig:
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name](batch_size=64))
    config.data.root = str(root)
    config.task.n_way, config.task.n_shot, config.task.n_query = 5, 1, 15
    config.model.hidden_channels = 32
    config.train.steps, config.train.val_every, config.train.val_episodes = PRETRAINING_STEPS, 0, 5
    config.train.seed = 1
    return config


@pytest.fixture(scope="module")
def glyphs(glyph_root):
    return load_data(glyph_config(glyph_root, "tim").data)


@pytest.fixture(scope="module")
def pretrained(glyph_root, glyphs) -> dict:
    """Weights after one short seeded pre-training run (TIM's; all five pre-train identically)."""
    trainer = Trainer(glyph_config(glyph_root, "tim"), data=glyphs)
    summary = trainer.run()
    assert summary.status == "finished", summary.message
    return trainer.algorithm.state_dict()


def trained(name: str, root: Path, glyphs, pretrained: dict):
    algorithm = build_algorithm(glyph_config(root, name), n_train_classes=len(glyphs.class_ids("train")))
    algorithm.load_state_dict(pretrained)
    # the run's memory format, as the trainer and load_algorithm set it (predictions then match to the bit)
    algorithm.configure_runtime(channels_last=resolve_channels_last("auto", algorithm.device, 28))
    return algorithm


def test_every_transductive_method_is_registered_with_its_capabilities() -> None:
    for name in TRANSDUCTIVE:
        cls = ALGORITHMS[name]
        assert cls.transductive and cls.kind == "transductive" and cls.batch_kind == "classes", name
        assert cls.paper and cls.short_title and ALGORITHM_CONFIGS[name].summary, name
    assert not any(ALGORITHMS[name].transductive for name in ("protonet", "simpleshot", "maml"))


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_learns_held_out_classes_at_one_shot(name: str, glyph_root, glyphs, pretrained) -> None:
    algorithm = trained(name, glyph_root, glyphs, pretrained)
    result = evaluate(algorithm, glyphs, part="test", episodes=30, n_way=5, n_shot=1, n_query=15, seed=3)
    assert result.accuracy > THRESHOLD, f"{name}: {result.accuracy:.3f} on held-out classes"


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_checkpoint_round_trip_gives_identical_predictions(name: str, tmp_path: Path, glyph_root, glyphs,
                                                           pretrained) -> None:
    algorithm = trained(name, glyph_root, glyphs, pretrained)
    path = save_checkpoint(tmp_path / "model.pt", algorithm, glyph_config(glyph_root, name), glyphs.split,
                           glyphs.preprocessing, step=PRETRAINING_STEPS,
                           n_train_classes=len(glyphs.class_ids("train")))
    loaded, checkpoint = load_algorithm(path)
    assert checkpoint.config.algorithm == algorithm.config
    task = glyphs.episodes("test", 5, 1, 15, seed=4).sample()
    expected = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert torch.equal(loaded.adapt(task.support_x, task.support_y).predict(task.query_x), expected)
    # the running mean training feature (CL2N's centre) is part of the checkpoint
    assert int(algorithm.feature_mean.batches) == PRETRAINING_STEPS
    assert torch.equal(loaded.feature_mean.mean, algorithm.feature_mean.mean)


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_predictions_depend_on_the_other_queries(name: str, glyph_root, glyphs, pretrained) -> None:
    algorithm = trained(name, glyph_root, glyphs, pretrained)
    task = glyphs.episodes("test", 5, 1, 15, seed=5).sample()
    predictor = algorithm.adapt(task.support_x, task.support_y)
    together = predictor.predict(task.query_x)
    half = predictor.predict(task.query_x[::2])
    assert torch.isfinite(together).all() and torch.allclose(together.sum(1), torch.ones(len(together)), atol=1e-5)
    assert not torch.allclose(together[::2], half, atol=1e-6), "a transductive prediction uses the whole batch"
    assert torch.equal(predictor.predict(task.query_x), together), "a predictor must not change between calls"


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_a_single_query_image_is_refused_with_one_line(name: str, glyph_root, glyphs, pretrained) -> None:
    algorithm = trained(name, glyph_root, glyphs, pretrained)
    task = glyphs.episodes("test", 5, 1, 15, seed=6).sample()
    predictor = algorithm.adapt(task.support_x, task.support_y)
    with pytest.raises(DatasetError, match=r"^query images: .* transductive .* at least 2 .*\(got 1\)$") as error:
        predictor.predict(task.query_x[:1])
    assert "\n" not in str(error.value)


class _BatchRecorder:
    """Wraps an algorithm: every predictor it adapts records the size of each query batch it is given."""

    def __init__(self, algorithm) -> None:
        self.algorithm = algorithm
        self.device = algorithm.device
        self.sizes: list[int] = []

    def train(self, mode: bool = True) -> None:
        self.algorithm.train(mode)

    def adapt(self, support_x, support_y, **kwargs):
        predictor = self.algorithm.adapt(support_x, support_y, **kwargs)
        recorder = self

        class Recording:
            n_classes = predictor.n_classes

            def predict(self, query_x):
                recorder.sizes.append(int(query_x.shape[0]))
                return predictor.predict(query_x)

        return Recording()


def test_evaluation_feeds_each_episode_full_query_set_at_once(glyph_root, glyphs, pretrained) -> None:
    recorder = _BatchRecorder(trained("pt_map", glyph_root, glyphs, pretrained))
    result = evaluate(recorder, glyphs, part="test", episodes=4, n_way=5, n_shot=1, n_query=3, seed=7)
    assert result.n_episodes == 4
    assert recorder.sizes == [5 * 3] * 4
