"""Adaptation and prediction of the adapt session, without any Qt: feature cache, adapt-and-predict, 2-D map.

:func:`adapt_and_predict` is the one computation behind every update of the
adapt view: fit a predictor to the support set (``Algorithm.adapt``), classify
the test images in one batch, and project support, prototypes and queries to a
2-D map (PCA fitted on support embeddings and prototypes).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor, swapped_backbone
from engine.data.preprocess import Preprocessing
from engine.models.folding import folded_for_inference
from engine.sessions.adapt_support import (ClassState, Example, ProgressFn, StopFn, SupportSet, support_key,
                                           usable_classes)

MAP_MAX_QUERIES = 300
"""At most this many test images are drawn on the 2-D map."""


# -- adaptation --------------------------------------------------------------------------------------
class FeatureCache(nn.Module):
    """Wraps a backbone and remembers the features of every image it has embedded (keyed by content).

    Only in eval mode without gradients, where the features of one image do not depend on the
    rest of the batch: then a drop of one image costs one image's forward pass instead of the whole
    support and test sets'. Used for algorithms that declare ``cacheable_features``, whose adaptation and
    prediction embed images that way; elsewhere (training mode, gradients) it is a plain pass-through.
    Missing features come from ``embedder``: a copy of the backbone with its BatchNorm layers folded into
    the convolutions (engine.models.folding; the same features to round-off, about a fifth less time).
    """

    def __init__(self, backbone: nn.Module, max_items: int = 50_000) -> None:
        super().__init__()
        self.inner = backbone
        # not a submodule: parameters(), state_dict() and train() stay those of the backbone alone
        object.__setattr__(self, "embedder", folded_for_inference(backbone))
        self.out_features = getattr(backbone, "out_features", None)
        self.max_items = max_items
        self._features: dict[bytes, Tensor] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._features.clear()

    @property
    def n_cached(self) -> int:
        """Images whose features are held."""
        return len(self._features)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, D], from the cache where possible."""
        if self.training or torch.is_grad_enabled() or x.ndim != 4 or x.shape[0] == 0:
            return self.inner(x)
        rows = x.detach().to("cpu", torch.float32).contiguous().numpy()
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]
        with self._lock:
            missing = list(dict.fromkeys(k for k in keys if k not in self._features))
        if missing:
            index = {k: i for i, k in enumerate(keys)}
            fresh = self.embedder(x[torch.tensor([index[k] for k in missing], device=x.device)])
            with self._lock:
                if len(self._features) + len(missing) > self.max_items:
                    self._features.clear()
                self._features.update(zip(missing, fresh.detach()))
        with self._lock:
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            return torch.stack([self._features[k] for k in keys]).to(x.device)


@contextlib.contextmanager
def cached_backbone(algorithm: Algorithm, cache: FeatureCache | None) -> Iterator[None]:
    """Let ``algorithm`` embed through ``cache`` for the block (no-op when None); predictors made inside keep it."""
    with contextlib.nullcontext() if cache is None else swapped_backbone(algorithm, cache):
        yield


class AdaptationCancelled(Exception):
    """Raised inside an inner loop when a newer change made the running adaptation stale."""


@dataclass
class MapData:
    """2-D PCA coordinates: support [S, 2] with labels [S], prototypes [n, 2], queries [Q', 2] with predictions."""

    support_xy: Tensor
    support_labels: Tensor
    prototype_xy: Tensor
    query_xy: Tensor
    query_predicted: Tensor
    explained: tuple[float, float] = (0.0, 0.0)
    prototype_kind: str = "prototype"   # "prototype" or "class mean" (algorithms without prototypes)


@dataclass
class AdaptOutput:
    """Everything one update of the panel shows.

    class_uids: the cards that took part, in label order; query_probs: [Q, n] (CPU).
    """

    key: tuple
    class_uids: list[int]
    predictor: Predictor
    query_probs: Tensor
    map: MapData | None
    seconds: float = 0.0


def support_tensors(classes: Sequence[ClassState], prep: Preprocessing) -> tuple[Tensor, Tensor]:
    """-> ([S, C, H, W] float32 normalised, [S] int64 labels in card order)."""
    pixels = [e.pixels for c in classes for e in c.examples]
    labels = [label for label, c in enumerate(classes) for _ in c.examples]
    return prep.normalize(torch.stack(pixels)), torch.tensor(labels, dtype=torch.int64)


def query_tensor(queries: Sequence[Example], prep: Preprocessing) -> Tensor:
    """[Q, C, H, W] float32 normalised (empty [0, C, H, W] when there are none)."""
    if not queries:
        return torch.empty(0, prep.channels, prep.image_size, prep.image_size)
    return prep.normalize(torch.stack([e.pixels for e in queries]))


def adapt_and_predict(algorithm: Algorithm, prep: Preprocessing, support: SupportSet, queries: Sequence[Example],
                      *, predictor: Predictor | None = None, steps: int | None = None,
                      progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                      with_map: bool = True, feature_cache: FeatureCache | None = None) -> AdaptOutput:
    """Adapt to the non-empty classes of ``support`` (unless ``predictor`` is given) and classify ``queries``
    in one batch; with ``with_map`` also compute the 2-D map. ``feature_cache``: see :class:`FeatureCache`.

    Raises AdaptationCancelled when ``should_stop()`` turns True during the inner loop.
    """
    started = time.perf_counter()
    classes = usable_classes(support)
    support_x, support_y = support_tensors(classes, prep)
    device = algorithm.device
    with cached_backbone(algorithm, feature_cache), torch.no_grad():
        if predictor is None:
            with torch.enable_grad():  # inner loops need gradients (a cached backbone ignores them)
                predictor = algorithm.adapt(support_x.to(device), support_y.to(device), steps=steps,
                                            progress=_cancellable(progress, should_stop))
        if queries:
            probs = predictor.predict(query_tensor(queries, prep).to(device)).cpu()
        else:
            probs = torch.empty(0, len(classes))
    output = AdaptOutput(support_key(support), [c.uid for c in classes], predictor, probs, None,
                         time.perf_counter() - started)
    if with_map:
        output.map = map_data(predictor, prep, support, queries, probs)
    return output


def _cancellable(progress: ProgressFn | None, should_stop: StopFn | None) -> ProgressFn | None:
    if should_stop is None:
        return progress

    def report(done: int, total: int) -> None:
        if should_stop():
            raise AdaptationCancelled()
        if progress is not None:
            progress(done, total)

    return report


def map_data(predictor: Predictor, prep: Preprocessing, support: SupportSet, queries: Sequence[Example],
             query_probs: Tensor) -> MapData | None:
    """PCA map of support embeddings, prototypes (or class means) and the first MAP_MAX_QUERIES queries.

    None when the predictor has no embedding. Predictors adapted through a FeatureCache embed from it.
    """
    classes = usable_classes(support)
    support_x, support_y = support_tensors(classes, prep)
    queries = list(queries[:MAP_MAX_QUERIES])
    with torch.no_grad():
        support_emb = predictor.embed(support_x)
        if support_emb is None:
            return None
        support_emb = support_emb.detach().float().cpu().flatten(1)
        query_emb = (predictor.embed(query_tensor(queries, prep)).detach().float().cpu().flatten(1) if queries
                     else support_emb[:0])
    prototypes = predictor.prototypes()
    kind = "prototype"
    if prototypes is None or prototypes.shape[-1] != support_emb.shape[1]:
        one_hot = F.one_hot(support_y, len(classes)).float()
        prototypes = (one_hot.t() @ support_emb) / one_hot.sum(0).unsqueeze(1)
        kind = "class mean"
    fitted, explained = pca_2d(torch.cat([support_emb, prototypes.detach().float().cpu()]), query_emb)
    n_support = support_emb.shape[0]
    predicted = query_probs[:len(queries)].argmax(1) if len(queries) else torch.empty(0, dtype=torch.long)
    return MapData(fitted[0][:n_support], support_y, fitted[0][n_support:], fitted[1], predicted, explained, kind)


def pca_2d(points: Tensor, *others: Tensor) -> tuple[list[Tensor], tuple[float, float]]:
    """Fit a 2-D PCA on ``points`` [N, D] and project them and each of ``others`` [M, D] -> [N or M, 2].

    Axis signs are fixed (largest loading positive) so the map does not flip between updates;
    with fewer than 3 points or a 1-D spread the missing axes are 0. Also returns the
    fraction of variance explained by each axis.
    """
    mean = points.mean(0, keepdim=True)
    centred = points - mean
    n_axes = min(2, centred.shape[0] - 1, centred.shape[1]) if centred.shape[0] > 1 else 0
    basis = torch.zeros(points.shape[1], 2)
    explained = [0.0, 0.0]
    if n_axes > 0:
        _, singular, vh = torch.linalg.svd(centred.double(), full_matrices=False)
        total = float(singular.pow(2).sum())
        for axis in range(n_axes):
            direction = vh[axis].float()
            if direction[direction.abs().argmax()] < 0:
                direction = -direction
            basis[:, axis] = direction
            explained[axis] = float(singular[axis] ** 2) / total if total > 0 else 0.0
    projected = [centred @ basis] + [(other - mean) @ basis for other in others]
    return projected, (explained[0], explained[1])
