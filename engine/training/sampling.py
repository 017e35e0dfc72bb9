"""The one rule for what a run trains on: which sampler a config gets, with which augmentation.

The trainer, the race (whose shared streams must equal the samplers solo runs would build) and
prefetch's device heuristics all ask here, so the rule has one owner.
"""

from __future__ import annotations

from typing import Any

from engine.algorithms.registry import algorithm_class
from engine.config import DataConfig, RunConfig


def augments(data: DataConfig) -> bool:
    """Whether training images are augmented per draw (flips, colour jitter, affine or elastic warps)."""
    return bool(data.augment_flips or data.augment_color_jitter or data.augment_affine or data.augment_elastic)


def batch_kind(config: RunConfig) -> str:
    """"episodes" or "classes": what the configured algorithm's training step takes."""
    return algorithm_class(config.algorithm.name).batch_kind


def training_batch_size(config: RunConfig) -> int:
    """What one training step draws: tasks per meta-batch (episodic algorithms) or images per class batch
    (pre-training baselines, ``algorithm.batch_size``)."""
    if batch_kind(config) == "episodes":
        return int(config.task.meta_batch_size)
    return int(getattr(config.algorithm, "batch_size"))


def batch_size_field(config: RunConfig) -> str:
    """The config field that :func:`training_batch_size` reads, for messages."""
    return "task.meta_batch_size" if batch_kind(config) == "episodes" else "algorithm.batch_size"


def build_training_sampler(config: RunConfig, data: Any) -> Any:
    """The seeded training sampler of ``config`` over ``data`` (a FewShotData): class batches of
    ``algorithm.batch_size`` for pre-training baselines, else ``n_way``-way ``n_shot``-shot episodes with
    ``n_query`` queries per class. Both are seeded with ``train.seed`` and augmented per :func:`augments`."""
    augment = augments(config.data)
    if batch_kind(config) == "classes":
        return data.class_batches(training_batch_size(config), config.train.seed, augment=augment)
    task = config.task
    return data.episodes("train", task.n_way, task.n_shot, task.n_query, config.train.seed, augment=augment)
