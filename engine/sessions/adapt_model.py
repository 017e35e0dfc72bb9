"""How a model file becomes the Adapt session's model: :func:`open_model` reads a training checkpoint or a
saved adapted classifier, builds the algorithm, its feature cache (with the BatchNorm-folded copy) and times
one image's forward; it touches no session, so a view may run it in its worker thread (ResNet-50: about a
second), then hand the :class:`OpenedModel` to ``AdaptSession.use_model``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.adapted import AdaptedClassifier, is_adapted_file, load_adapted
from engine.algorithms.base import Algorithm
from engine.data.preprocess import Preprocessing
from engine.runtime.threads import torch_threads
from engine.sessions.adapt_compute import FeatureCache
from engine.training.checkpoint import Checkpoint, load_algorithm


@dataclass(frozen=True)
class OpenedModel:
    """A model file read and made ready by :func:`open_model`, not yet the session's (``use_model``)."""

    path: Path
    algorithm: Algorithm
    checkpoint: Checkpoint
    adapted: AdaptedClassifier | None        # the file was a saved adapted classifier (it brings its classes)
    feature_cache: FeatureCache | None       # for algorithms with cacheable_features
    seconds_per_image: float | None          # one image's forward, timed in ``timing_threads`` threads

    def summary(self) -> str:
        """One line about the model for people: algorithm, backbone, input, step or adapted classifier, file."""
        config, prep = self.checkpoint.config, self.checkpoint.preprocessing
        title = config.algorithm.title or config.algorithm.name
        colour = "grey" if prep.channels == 1 else "colour"
        kind = "adapted classifier" if self.adapted is not None else f"step {self.checkpoint.step}"
        views = f" \u00b7 {config.model.test_views} test-time views" if config.model.test_views > 1 else ""
        return (f"{title} \u00b7 {config.model.backbone} ({config.model.hidden_channels}) \u00b7 "
                f"{prep.image_size}\u00d7{prep.image_size} {colour}{views} \u00b7 {kind} \u00b7 {self.path.name}")


def open_model(path: Path | str, timing_threads: int | None = None) -> OpenedModel:
    """Read a training checkpoint or a saved adapted classifier and build what adapting with it needs: the
    algorithm, its feature cache (with the BatchNorm-folded copy) and one image's forward time, measured with
    ``timing_threads`` PyTorch threads (default: the calling thread's count; the Adapt view passes 1, the
    GUI thread's, when it opens a model in its worker). Touches no session, so it may run in any thread:
    for ResNet-50 it takes about a second. EngineError naming the file on a bad one."""
    path = Path(path)
    adapted = load_adapted(path) if is_adapted_file(path) else None
    algorithm, checkpoint = (adapted.algorithm, adapted.checkpoint) if adapted else load_algorithm(path)
    cache = FeatureCache(algorithm.backbone) if algorithm.cacheable_features else None
    with torch_threads(timing_threads):
        seconds = embedding_seconds(cache.embedder if cache else algorithm.backbone, checkpoint.preprocessing)
    return OpenedModel(path, algorithm, checkpoint, adapted, cache, seconds)


def embedding_seconds(backbone: nn.Module, prep: Preprocessing) -> float | None:
    """Seconds of one image's forward through ``backbone`` in eval mode (the second of two calls, so
    one-time set-up is left out); None when the backbone cannot be called on its own."""
    was_training = backbone.training
    try:
        device = next(backbone.parameters()).device
        image = torch.zeros(1, prep.channels, prep.image_size, prep.image_size, device=device)
        backbone.eval()
        with torch.no_grad():
            backbone(image)
            started = time.perf_counter()
            backbone(image)
            return time.perf_counter() - started
    except (RuntimeError, ValueError, TypeError, StopIteration):
        return None
    finally:
        backbone.train(was_training)
