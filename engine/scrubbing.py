"""The inner-loop scrubber's engine: query accuracy, loss and predictions after each adaptation step.

:func:`adaptation_trajectory` walks an algorithm's OWN inner loop (its ``iter_adapt``,
the very loop its ``adapt`` runs: same optimiser, learning rate, head initialisation and
BatchNorm mode) once, recording after 0, 1, ..., N steps what the adapted model predicts
for the query set. So step ``k`` of a trajectory is exactly
``algorithm.adapt(support_x, support_y, steps=k).predict(query_x)``, while the inner loop
runs only once (not ``N`` times from scratch).

What step 0 means:

* MAML, first-order MAML, ANIL, Reptile: the meta-learned initialisation, before any
  step on the support set (its accuracy is the un-adapted model's, often near chance
  since the head's rows are not tied to the episode's classes).
* Baseline, Baseline++: the new head freshly drawn from a fixed seed on top of the frozen
  backbone, before any fitting step: a random read-out, so about chance accuracy.

Algorithms that adapt without gradient steps (ProtoNet, Matching Networks, SimpleShot)
have no inner loop to scrub; they are refused with a ConfigError naming the algorithm.

:func:`sample_test_episode` draws one seeded episode from a checkpoint's own data set,
class split and preprocessing (the first episode of ``engine.evaluation.evaluate`` with
the same seed and shape), with the raw uint8 pixels for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch
from torch import Tensor

from engine.algorithms.base import Algorithm, Predictor, ProgressCallback
from engine.algorithms.baseline import HeadPredictor
from engine.algorithms.registry import ALGORITHMS
from engine.config import ALGORITHM_CONFIGS, AlgorithmConfig
from engine.data.dataset import FewShotData, load_data
from engine.data.sampler import EpisodeSampler
from engine.data.splits import PARTS
from engine.data.types import Task
from engine.errors import ConfigError, DatasetError
from engine.training.checkpoint import Checkpoint, load_checkpoint

StopFn = Callable[[], bool]
MAX_STEPS = 10_000


class InnerLoopAlgorithm(Protocol):
    """An algorithm whose adaptation is a loop of steps that can be watched one at a time."""

    def iter_adapt(self, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
                   progress: ProgressCallback | None = None) -> Iterator[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` inner steps."""


# -- which algorithms have an inner loop ------------------------------------------------------------
def has_inner_loop(name: str) -> bool:
    """Whether the registered algorithm ``name`` ("maml", "reptile", ...) declares an inner loop
    (:attr:`Algorithm.inner_loop <engine.algorithms.base.Algorithm.inner_loop>`)."""
    algorithm = ALGORITHMS.get(name)
    return algorithm is not None and algorithm.inner_loop


def inner_loop_algorithms() -> list[str]:
    """The registered algorithm names with an inner loop, in registry order."""
    return [name for name in ALGORITHMS if has_inner_loop(name)]


def check_inner_loop(algorithm: Algorithm) -> InnerLoopAlgorithm:
    """``algorithm`` if it declares an inner loop; ConfigError naming it (and the ones that do) otherwise."""
    if algorithm.inner_loop:
        return algorithm  # type: ignore[return-value]
    name = algorithm.config.name
    title = getattr(algorithm.config, "title", name)
    choices = ", ".join(ALGORITHM_CONFIGS[n].title for n in inner_loop_algorithms())
    raise ConfigError(f"algorithm.name: {title} ({name}) has no inner loop to scrub: it adapts without "
                      f"gradient steps on the support set. Inner loops exist in: {choices}")


@dataclass(frozen=True)
class InnerLoopSteps:
    """The step counts of an algorithm's configuration.

    train: inner steps per task during (meta-)training (None: no inner loop in training,
    as for the pre-trained baselines). test: the steps ``adapt`` takes by default.
    """

    train: int | None
    test: int


def inner_loop_steps(config: AlgorithmConfig) -> InnerLoopSteps:
    """Training and default adaptation step counts of MAML/Reptile (inner_steps, test_inner_steps)
    or Baseline (no training inner loop, finetune_steps); ConfigError for other algorithms."""
    if hasattr(config, "test_inner_steps"):
        return InnerLoopSteps(int(getattr(config, "inner_steps")), int(getattr(config, "test_inner_steps")))
    if hasattr(config, "finetune_steps"):
        return InnerLoopSteps(None, int(getattr(config, "finetune_steps")))
    raise ConfigError(f"algorithm.name: {getattr(config, 'title', config.name)} ({config.name}) has no inner "
                      "loop to scrub")


# -- the trajectory ---------------------------------------------------------------------------------
@dataclass
class AdaptationTrajectory:
    """What the adapted model gives on one episode after each inner step 0..steps (on the CPU).

    query_probabilities: [steps + 1, Q, n_way] float32, row k = ``adapt(steps=k).predict(query_x)``.
    query_loss, query_accuracy: [steps + 1] float32 mean cross-entropy and accuracy on the query set.
    support_loss, support_accuracy: [steps + 1] the same on the support set (what the loop minimises).
    query_y: [Q] int64; support_y: [S] int64 (labels 0..n_way-1).
    steps: inner steps computed (fewer than ``requested_steps`` when stopped early).
    train_steps / default_steps: the algorithm's training inner steps (None for the baselines)
    and its default adaptation steps, for marking them on a plot.
    """

    algorithm: str
    steps: int
    requested_steps: int
    query_probabilities: Tensor
    query_loss: Tensor
    query_accuracy: Tensor
    support_loss: Tensor
    support_accuracy: Tensor
    query_y: Tensor
    support_y: Tensor
    train_steps: int | None
    default_steps: int

    @property
    def stopped(self) -> bool:
        """True when the run was cancelled before ``requested_steps``."""
        return self.steps < self.requested_steps

    @property
    def query_predictions(self) -> Tensor:
        """[steps + 1, Q] int64 predicted class per query image after each step."""
        return self.query_probabilities.argmax(2)

    @property
    def query_correct(self) -> Tensor:
        """[steps + 1, Q] bool: whether each query image is classified right after each step."""
        return self.query_predictions == self.query_y.unsqueeze(0)


def adaptation_trajectory(algorithm: Algorithm, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                          query_y: Tensor, *, steps: int, progress: ProgressCallback | None = None,
                          should_stop: StopFn | None = None) -> AdaptationTrajectory:
    """Run the algorithm's inner loop once for ``steps`` steps and record every step 0..steps.

    support_x: [S, C, H, W] float, support_y: [S] int64 in 0..n-1 (every class present);
    query_x: [Q, C, H, W] float, query_y: [Q] int64 in 0..n-1. ``progress(done, steps)``
    after each step; ``should_stop()`` is checked after each step and ends the run early
    (the trajectory then holds the steps done so far). The algorithm is not modified.
    Raises ConfigError (no inner loop, bad ``steps``) or DatasetError (inconsistent episode).
    """
    looped = check_inner_loop(algorithm)
    steps = _check_steps(steps)
    _check_query(query_x, query_y, support_y)
    config = algorithm.config
    counts = inner_loop_steps(config)
    device = algorithm.device
    support_x, support_y = support_x.to(device), support_y.to(device)
    query_x, query_y = query_x.to(device), query_y.to(device)
    features: dict[str, Tensor] = {}
    query_probs: list[Tensor] = []
    support_probs: list[Tensor] = []
    for step, predictor in enumerate(looped.iter_adapt(support_x, support_y, steps=steps, progress=progress)):
        query_probs.append(_probabilities(predictor, query_x, features, "query"))
        support_probs.append(_probabilities(predictor, support_x, features, "support"))
        if step < steps and should_stop is not None and should_stop():
            break
    queries, supports = torch.stack(query_probs), torch.stack(support_probs)
    query_y, support_y = query_y.cpu(), support_y.cpu()
    query_loss, query_accuracy = _loss_and_accuracy(queries, query_y)
    support_loss, support_accuracy = _loss_and_accuracy(supports, support_y)
    return AdaptationTrajectory(config.name, len(query_probs) - 1, steps, queries, query_loss, query_accuracy,
                                support_loss, support_accuracy, query_y, support_y, counts.train, counts.test)


def _check_steps(steps: int) -> int:
    try:
        value = int(steps)
    except (TypeError, ValueError):
        raise ConfigError(f"steps must be a whole number of inner steps (got {steps!r})") from None
    if not 0 <= value <= MAX_STEPS:
        raise ConfigError(f"steps must be between 0 and {MAX_STEPS} (got {value})")
    return value


def _check_query(query_x: Tensor, query_y: Tensor, support_y: Tensor) -> None:
    if query_y.ndim != 1 or query_y.numel() == 0 or query_x.shape[0] != query_y.shape[0]:
        raise DatasetError(f"query set: {query_x.shape[0]} images but labels of shape {tuple(query_y.shape)}; "
                           "need one label per image and at least one image")
    n_classes = int(support_y.max().item()) + 1 if support_y.numel() else 0
    if int(query_y.min().item()) < 0 or int(query_y.max().item()) >= n_classes:
        raise DatasetError(f"query set: labels must be 0..{n_classes - 1}, the classes of the support set "
                           f"(got {int(query_y.min().item())}..{int(query_y.max().item())})")


def _probabilities(predictor: Predictor, x: Tensor, features: dict[str, Tensor], key: str) -> Tensor:
    """[N, n_way] float32 CPU probabilities of ``predictor`` on ``x``.

    A head on a frozen backbone (Baseline) gets the backbone features of ``x`` computed
    once (``features[key]``) and reused at every step: the same numbers ``predict`` gives.
    """
    if isinstance(predictor, HeadPredictor):
        if key not in features:
            features[key] = predictor.embed(x)
        return predictor.predict_features(features[key]).float().cpu()
    return predictor.predict(x).float().cpu()


def _loss_and_accuracy(probabilities: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """[T, N, n] probabilities, [N] labels -> ([T] mean cross-entropy, [T] accuracy).

    The cross-entropy is -log p(true class), with p floored at the smallest positive float32
    (a probability rounded to 0 would give an infinite loss).
    """
    picked = probabilities.gather(2, labels.view(1, -1, 1).expand(probabilities.shape[0], -1, 1)).squeeze(2)
    loss = -picked.clamp_min(torch.finfo(probabilities.dtype).tiny).log().mean(1)
    accuracy = (probabilities.argmax(2) == labels.unsqueeze(0)).float().mean(1)
    return loss, accuracy


# -- one test episode of a checkpoint ---------------------------------------------------------------
@dataclass
class TestEpisode:
    """One seeded episode of a checkpoint's data, ready for ``adaptation_trajectory`` and display.

    task: the episode (normalised float images; support_x [S, C, H, W], query_x [Q, C, H, W]).
    class_names: [n_way] the data set's names of episode classes 0..n_way-1.
    support_pixels / query_pixels: [S, C, H, W] / [Q, C, H, W] uint8, the images as decoded
    (before normalisation), for thumbnails.
    """

    __test__ = False  # not a pytest test class

    task: Task
    class_names: list[str]
    support_pixels: Tensor
    query_pixels: Tensor
    split: str
    seed: int
    n_way: int
    n_shot: int
    n_query: int


def sample_test_episode(checkpoint: Checkpoint | Path | str, *, n_way: int, n_shot: int, n_query: int, seed: int,
                        split: str = "test", data: FewShotData | None = None) -> TestEpisode:
    """Draw episode ``seed`` of the checkpoint's ``split`` classes with its data, split and preprocessing.

    checkpoint: a loaded Checkpoint or the path of one. data: the checkpoint's data set already
    loaded (``load_data(checkpoint.config.data, split=checkpoint.split)``; loaded here when None).
    The episode is the first one ``engine.evaluation.evaluate(..., part=split, seed=seed)`` sees.
    Raises ConfigError naming the bad field (n_way, n_shot, n_query, split) or CheckpointError.
    """
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    for field_name, value, low in (("n_way", n_way, 2), ("n_shot", n_shot, 1), ("n_query", n_query, 1)):
        if int(value) < low:
            raise ConfigError(f"{field_name} must be at least {low} (got {value})")
    if split not in PARTS:
        raise ConfigError(f"split must be one of {', '.join(PARTS)} (got {split!r})")
    if data is None:
        data = load_data(checkpoint.config.data, split=checkpoint.split)
    elif data.split.to_dict() != checkpoint.split.to_dict():
        raise ConfigError(f"{checkpoint.path}: the data given was split differently from the checkpoint's "
                          "classes; load it with the checkpoint's split")
    sampler = EpisodeSampler(data.store, data.class_ids(split), checkpoint.preprocessing, n_way, n_shot, n_query,
                             seed, part=split)
    task = sampler.sample()
    names = [data.store.class_names[int(c)] for c in task.class_ids]
    return TestEpisode(task, names, data.store.get(task.support_index), data.store.get(task.query_index), split,
                       int(seed), int(n_way), int(n_shot), int(n_query))
