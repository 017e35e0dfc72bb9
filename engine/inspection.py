"""Episode inspection: the evaluation episodes of a run, one by one, with every prediction kept.

:func:`inspect_episodes` samples the very episodes :func:`engine.evaluation.evaluate`
samples for the same checkpoint, classes, shape and seed, and runs them through the
same seam (``algorithm.adapt(support)`` then ``predictor.predict(query)``), so the
per-episode accuracies it keeps are exactly the ones the evaluation reports. Instead of
only the accuracy it keeps, per episode, the classes, the store indices of the support
and query images (thumbnails come from the store on demand, never full-precision
tensors), the true and predicted labels and the predicted probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import Tensor

from engine.algorithms.base import Algorithm
from engine.config import DataConfig
from engine.data.dataset import FewShotData, load_data, other_folder
from engine.data.sampler import EpisodeSampler
from engine.data.splits import PARTS, ClassSplit
from engine.data.store import ImageStore
from engine.errors import CheckpointError, ConfigError
from engine.evaluation import episode_probabilities, inference_backbone, mean_ci95
from engine.inference import evaluation_classes
from engine.training.checkpoint import Checkpoint, load_algorithm
from engine.training.run_store import find_checkpoint, missing_checkpoint_message

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]
DataLoader = Callable[[DataConfig, ClassSplit | None], FewShotData]

EDGE_TOLERANCE = 1e-6
"""Accuracies are float32 fractions k/Q; this much below a bin edge still counts as on the edge."""

CLASS_CHOICES = ("auto",) + PARTS + ("novel", "all")
"""``auto``: the run's test classes on its own data set, classes unseen in training on another one."""


@dataclass
class InspectedEpisode:
    """One evaluated episode. S = n_way * n_shot support images, Q = n_way * n_query queries.

    class_names: [n_way] names of the episode's classes (episode label i is class_names[i]).
    support_index: [S] int64 store indices; support_y: [S] int64 labels in 0..n_way-1.
    query_index: [Q] int64 store indices; query_y: [Q] int64 true labels in 0..n_way-1.
    predicted: [Q] int64 predicted labels; probabilities: [Q, n_way] float32 (rows sum to 1).
    Images are class-major: labels 0,0,..,1,1,.. in both support and query.
    """

    number: int
    class_names: list[str]
    support_index: Tensor
    support_y: Tensor
    query_index: Tensor
    query_y: Tensor
    predicted: Tensor
    probabilities: Tensor
    accuracy: float

    @property
    def correct(self) -> Tensor:
        """[Q] bool: which queries were predicted right."""
        return self.predicted == self.query_y

    @property
    def n_wrong(self) -> int:
        return int((~self.correct).sum())

    @property
    def confidence(self) -> Tensor:
        """[Q] float32: the probability of each predicted class."""
        return self.probabilities.gather(1, self.predicted.unsqueeze(1)).squeeze(1)


@dataclass
class EpisodeInspection:
    """The inspected episodes of one checkpoint, their mean accuracy and its 95% CI."""

    checkpoint: Path
    checkpoint_step: int
    algorithm: str
    scope: str
    n_way: int
    n_shot: int
    n_query: int
    seed: int
    requested_episodes: int
    episodes: list[InspectedEpisode]
    mean: float
    ci95: float
    store: ImageStore = field(repr=False)

    @property
    def n_episodes(self) -> int:
        return len(self.episodes)

    @property
    def stopped(self) -> bool:
        """True when cancelled before every requested episode ran."""
        return self.n_episodes < self.requested_episodes

    @property
    def accuracies(self) -> list[float]:
        return [episode.accuracy for episode in self.episodes]

    def bins(self, n_bins: int, low: float = 0.0, high: float = 1.0) -> list[tuple[float, float, list[int]]]:
        """Equal-width accuracy bins over [low, high]: (bin low, bin high, episode positions).

        Every episode falls in exactly one bin: bin i holds accuracies in [edge i, edge i+1),
        the last bin also its upper edge; accuracies outside [low, high] go to the end bins.
        """
        if n_bins < 1:
            raise ConfigError(f"n_bins must be at least 1 (got {n_bins})")
        if not high > low:
            raise ConfigError(f"the histogram range must have high > low (got {low}..{high})")
        width = (high - low) / n_bins
        members: list[list[int]] = [[] for _ in range(n_bins)]
        for position, accuracy in enumerate(self.accuracies):
            # + EDGE_TOLERANCE: an accuracy of 14/20 computed in float32 (0.69999999) is 0.7, in [0.7, 0.75)
            slot = math.floor((accuracy - low + EDGE_TOLERANCE) / width)
            members[min(max(slot, 0), n_bins - 1)].append(position)
        return [(low + i * width, low + (i + 1) * width, members[i]) for i in range(n_bins)]

    def images(self, position: int) -> tuple[Tensor, Tensor]:
        """uint8 support [S, C, H, W] and query [Q, C, H, W] images of episode ``position``."""
        episode = self.episodes[position]
        return self.store.get(episode.support_index), self.store.get(episode.query_index)

    def image_paths(self, position: int) -> tuple[list[Path], list[Path]]:
        """Source files of the support and query images of episode ``position``."""
        episode = self.episodes[position]
        paths = self.store.paths
        return ([paths[int(i)] for i in episode.support_index], [paths[int(i)] for i in episode.query_index])


def resolve_checkpoint(checkpoint_or_run: Path | str, which: str = "best") -> Path:
    """A checkpoint file: the path itself, or a run folder's best (``which="best"``) or last checkpoint."""
    path = Path(checkpoint_or_run)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder or checkpoint file")
    found = find_checkpoint(path, which)
    if found is None:
        raise CheckpointError(missing_checkpoint_message(path))
    return found


def inspect_episodes(checkpoint_or_run: Path | str, *, n_episodes: int = 100, n_way: int | None = None,
                     n_shot: int | None = None, n_query: int | None = None, split: str = "auto",
                     seed: int = 0, device: str = "cpu", dataset: str | None = None, which: str = "best",
                     progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                     data_loader: DataLoader | None = None) -> EpisodeInspection:
    """Evaluate ``n_episodes`` seeded episodes of a checkpoint (or run folder) and keep each one.

    n_way / n_shot default to the run's evaluation shape, n_query to its training n_query.
    ``split``: "test" | "val" | "train" (the run's class split), "novel" (classes unseen in
    training), "all", or "auto" (test on the run's own data set, novel on another ``dataset``).
    ``dataset`` is another data set folder, as ``meta-engine evaluate --dataset``; the
    checkpoint's preprocessing is kept. ``data_loader(cfg, split)`` replaces ``load_data``
    (the studio passes its cache). Episodes and accuracies equal those of
    :func:`engine.evaluation.evaluate` for the same classes, shape and seed.
    """
    _check_arguments(n_episodes, n_way, n_shot, n_query, split)
    path = resolve_checkpoint(checkpoint_or_run, which)
    algorithm, checkpoint = load_algorithm(path, device=device)
    task = checkpoint.config.task
    n_way = task.eval_n_way if n_way is None else n_way
    n_shot = task.eval_n_shot if n_shot is None else n_shot
    n_query = task.n_query if n_query is None else n_query
    data, own = _load_run_data(checkpoint, dataset, data_loader or load_data)
    sampler, scope = _sampler(data, checkpoint, split, own, n_way, n_shot, n_query, seed)
    episodes = _run_episodes(algorithm, sampler, n_episodes, progress, should_stop)
    mean, ci95 = mean_ci95([episode.accuracy for episode in episodes])
    return EpisodeInspection(path, checkpoint.step, checkpoint.config.algorithm.name, scope, n_way, n_shot,
                             n_query, seed, n_episodes, episodes, mean, ci95, data.store)


def _check_arguments(n_episodes: int, n_way: int | None, n_shot: int | None, n_query: int | None,
                     split: str) -> None:
    for name, value, low in (("n_episodes", n_episodes, 1), ("n_way", n_way, 2), ("n_shot", n_shot, 1),
                             ("n_query", n_query, 1)):
        if value is not None and (not isinstance(value, int) or value < low):
            raise ConfigError(f"{name} must be a whole number of at least {low} (got {value!r})")
    if split not in CLASS_CHOICES:
        raise ConfigError(f"split must be one of {', '.join(CLASS_CHOICES)} (got {split!r})")


def _load_run_data(checkpoint: Checkpoint, dataset: str | None, loader: DataLoader) -> tuple[FewShotData, bool]:
    """The checkpoint's data (config, split, preprocessing), or another folder with the same preprocessing."""
    data_cfg = checkpoint.config.data
    own = dataset is None or str(dataset) == data_cfg.root
    if own:
        return loader(data_cfg, checkpoint.split), True
    return loader(*other_folder(data_cfg, str(dataset))), False


def _sampler(data: FewShotData, checkpoint: Checkpoint, split: str, own: bool, n_way: int, n_shot: int,
             n_query: int, seed: int) -> tuple[EpisodeSampler, str]:
    """The sampler :func:`engine.evaluation.evaluate` builds for these classes, and their description."""
    if split == "auto":
        split = "test" if own else "novel"
    if split in PARTS:
        if not own:
            raise ConfigError(f"split={split!r} needs the checkpoint's own data set (leave the data set out, "
                              "or use 'novel' or 'all')")
        ids, scope = data.class_ids(split), f"the run's {split} classes"
    else:
        ids, scope = evaluation_classes(data, checkpoint.split.train, split, None, own)
    if len(ids) < n_way:
        raise ConfigError(f"n_way={n_way}: only {len(ids)} classes available in {scope}")
    if split in PARTS:
        return data.episodes(split, n_way, n_shot, n_query, seed), scope
    return EpisodeSampler(data.store, ids, data.preprocessing, n_way, n_shot, n_query, seed), scope


def _run_episodes(algorithm: Algorithm, sampler: EpisodeSampler, n_episodes: int, progress: ProgressFn | None,
                  should_stop: StopFn | None) -> list[InspectedEpisode]:
    names = sampler.store.class_names
    episodes: list[InspectedEpisode] = []
    algorithm.train(False)
    with inference_backbone(algorithm):  # as evaluate embeds
        for number in range(n_episodes):
            if should_stop is not None and should_stop():
                break
            task = sampler.sample()
            probabilities = episode_probabilities(algorithm, task)  # [Q, n_way], as evaluate computes it
            predicted = probabilities.max(dim=1).indices
            accuracy = float((predicted == task.query_y).float().mean())
            episodes.append(InspectedEpisode(number, [names[int(c)] for c in task.class_ids],
                                             task.support_index.clone(), task.support_y.clone(),
                                             task.query_index.clone(), task.query_y.clone(),
                                             predicted, probabilities, accuracy))
            if progress is not None:
                progress(number + 1, n_episodes)
    return episodes
