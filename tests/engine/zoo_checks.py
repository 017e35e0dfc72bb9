"""Acceptance checks shared by the zoo's per-algorithm tests (test_meta_sgd.py, test_r2d2.py, test_boil.py,
test_meta_baseline.py): a short seeded run on the built-in glyphs that must beat chance on held-out classes,
and the run's checkpoint, loaded alone, giving the trained algorithm's predictions to the bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engine.algorithms.base import Algorithm
from engine.config import ALGORITHM_CONFIGS, RunConfig
from engine.data.dataset import FewShotData, load_data
from engine.data.types import Task
from engine.evaluation import evaluate
from engine.training.checkpoint import load_algorithm
from engine.training.trainer import Trainer

CHANCE = 0.2  # 5-way
THRESHOLD = 0.45


def glyph_config(glyph_root: Path, name: str, steps: int, **algorithm: Any) -> RunConfig:
    """5-way 5-shot 5-query, meta-batch 2, Conv-4 with 32 filters, 28 px, seed 1, no validation, one thread."""
    config = RunConfig(algorithm=ALGORITHM_CONFIGS[name](**algorithm))
    config.data.root = str(glyph_root)
    config.task.n_way, config.task.n_shot, config.task.n_query, config.task.meta_batch_size = 5, 5, 5, 2
    config.model.hidden_channels = 32
    config.train.steps, config.train.val_every, config.train.val_episodes = steps, 0, 10
    config.train.seed = 1
    config.train.num_threads = 1  # the machine running the tests may be shared: one thread wastes the least
    return config


def glyph_data(glyph_root: Path) -> FewShotData:
    config = RunConfig()
    config.data.root = str(glyph_root)
    return load_data(config.data)


def train_on_glyphs(config: RunConfig, data: FewShotData, run_dir: Path) -> Algorithm:
    """The algorithm after a finished run of ``config`` (its checkpoints in ``run_dir``)."""
    trainer = Trainer(config, data=data, run_dir=run_dir)
    summary = trainer.run()
    assert summary.status == "finished", summary.message
    return trainer.algorithm


def held_out_accuracy(algorithm: Algorithm, data: FewShotData) -> float:
    """Mean accuracy over 60 seeded 5-way 5-shot episodes of the test classes (never seen in training)."""
    return evaluate(algorithm, data, part="test", episodes=60, n_way=5, n_shot=5, n_query=5, seed=3).accuracy


def assert_checkpoint_round_trip(algorithm: Algorithm, data: FewShotData, run_dir: Path) -> Algorithm:
    """The run's last checkpoint, loaded alone, predicts exactly what the trained algorithm predicts."""
    task = data.episodes("test", 5, 2, 4, seed=11).sample()
    algorithm.train(False)
    expected = algorithm.adapt(task.support_x, task.support_y).predict(task.query_x)
    loaded, _ = load_algorithm(run_dir / "checkpoints" / "last.pt")
    got = loaded.adapt(task.support_x, task.support_y).predict(task.query_x)
    assert type(loaded) is type(algorithm)
    assert torch.equal(got, expected)
    return loaded


# -- a tiny float64 model and the paper equations written out by hand, for the reference tests ---------------
class TinyBody(nn.Module):
    """[B, 1, 4, 4] -> [B, 5]: tanh(W2 tanh(W1 x + b1) + b2), no BatchNorm (train and eval mode agree)."""

    out_features = 5

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(16, 7)
        self.out = nn.Linear(7, self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.out(torch.tanh(self.hidden(x.flatten(1)))))


def reference_features(weights: dict[str, Tensor], x: Tensor, prefix: str = "") -> Tensor:
    """TinyBody's forward written out: tanh(tanh(x W1^T + b1) W2^T + b2)."""
    hidden = torch.tanh(x.flatten(1) @ weights[f"{prefix}hidden.weight"].t() + weights[f"{prefix}hidden.bias"])
    return torch.tanh(hidden @ weights[f"{prefix}out.weight"].t() + weights[f"{prefix}out.bias"])


def reference_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """mean_i (logsumexp(logits_i) - logits_i[y_i])."""
    picked = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    return (torch.logsumexp(logits, dim=1) - picked).mean()


def tiny_tasks(n: int, seed: int, n_way: int = 3, n_shot: int = 2, n_query: int = 3) -> list[Task]:
    """``n`` random float64 episodes of [1, 4, 4] images (labels 0..n_way-1, class-major)."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        support_y = torch.arange(n_way).repeat_interleave(n_shot)
        query_y = torch.arange(n_way).repeat_interleave(n_query)
        tasks.append(Task(torch.randn(len(support_y), 1, 4, 4, generator=g, dtype=torch.float64), support_y,
                          torch.randn(len(query_y), 1, 4, 4, generator=g, dtype=torch.float64), query_y,
                          class_ids=torch.arange(n_way)))
    return tasks


def in_float64(algorithm: Algorithm) -> Algorithm:
    """``algorithm`` with every module in float64 (the optimiser keeps the same parameter objects)."""
    for module in algorithm.modules().values():
        module.double()
    return algorithm
