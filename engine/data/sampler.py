"""Seeded samplers on the training hot path: few-shot episodes and plain class batches.

Both keep their randomness in their own ``torch.Generator`` objects, so the same
seed gives the same sequence of tasks, and their state can be saved to resume a
run exactly. One episode costs a handful of tensor ops: pick classes with
``randperm``, pick images per class with one batched random-key ``topk``, gather
all images from the uint8 cache in one indexing op, normalise in one op.
"""

from __future__ import annotations

from typing import Any, Sequence

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.data.preprocess import Preprocessing
from engine.data.store import ImageStore
from engine.data.types import ClassBatch, Task
from engine.errors import ConfigError

JITTER_STRENGTH = 0.4
"""Brightness and contrast factors are drawn uniformly from [1 - s, 1 + s] per image."""

AFFINE_MAX_ROTATION_DEG = 10.0
AFFINE_MAX_SCALE = 0.1
AFFINE_MAX_SHIFT_PX = 2.0
"""Per-image random affine distortion bounds (augment_affine)."""

ELASTIC_DISPLACEMENT_PX = 1.0
ELASTIC_GRID = 4
"""augment_elastic: a smooth random warp per image, its displacement drawn with this standard deviation
(pixels at 28 px, scaled with the image size) on an ELASTIC_GRID x ELASTIC_GRID grid, bicubically upsampled."""

_AUGMENT_SEED_OFFSET = 0x5EED_A06


class BatchTransform:
    """uint8 [B, C, H, W] -> normalised float32, with optional seeded warps (affine, elastic), flips and colour
    jitter."""

    def __init__(self, preprocessing: Preprocessing, *, augment: bool, flips: bool, color_jitter: bool,
                 seed: int, affine: bool = False, elastic: bool = False) -> None:
        self.preprocessing = preprocessing
        self.flips = augment and flips
        self.color_jitter = augment and color_jitter
        self.affine = augment and affine
        self.elastic = augment and elastic
        self.augmenting = self.flips or self.color_jitter or self.affine or self.elastic
        if self.augmenting:
            # torchvision.transforms.v2 does the dtype conversion and flips; imported only when augmenting
            # because importing torchvision costs seconds at start-up.
            from torchvision.transforms.v2 import functional as tf

            self._tf = tf
        self.generator = torch.Generator().manual_seed(int(seed) + _AUGMENT_SEED_OFFSET)

    def __call__(self, images: Tensor) -> Tensor:
        if not self.augmenting:
            return self.preprocessing.normalize(images)
        x = self._tf.to_dtype(images, torch.float32, scale=True)
        if self.affine or self.elastic:
            x = self._warp(x)
        if self.flips:
            x = self._flip(x)
        if self.color_jitter:
            x = self._jitter(x)
        return self.preprocessing.standardize(x)

    def _flip(self, x: Tensor) -> Tensor:
        """Mirror a random half of the images left-right. x: [B, C, H, W]."""
        flip = torch.rand(x.shape[0], generator=self.generator) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), self._tf.horizontal_flip(x), x)

    def _warp(self, x: Tensor) -> Tensor:
        """One resampling per image through the sampling grid of a random small rotation, scale and shift
        (affine) plus a smooth random displacement field (elastic); background kept. x: [B, C, H, W] in [0, 1]."""
        b, _, h, w = x.shape
        theta = self._affine_theta(b, h) if self.affine else torch.eye(2, 3).expand(b, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if self.elastic:
            grid = grid + self._elastic_flow(b, h, w)
        background = x[:, :, :1, :1]  # the corner pixel's value fills what moves in
        return F.grid_sample(x - background, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False) + background

    def _affine_theta(self, b: int, h: int) -> Tensor:
        """[b, 2, 3] affine maps: rotation, scale and shift drawn within the AFFINE_* bounds."""
        r = torch.rand(4, b, generator=self.generator) * 2 - 1
        angle = r[0] * math.radians(AFFINE_MAX_ROTATION_DEG)
        scale = 1.0 + r[1] * AFFINE_MAX_SCALE
        shift = r[2:] * (2.0 * AFFINE_MAX_SHIFT_PX / h)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        return torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)

    def _elastic_flow(self, b: int, h: int, w: int) -> Tensor:
        """[b, h, w, 2] smooth displacements in grid units (a pixel is 2 / side): Gaussian noise on a coarse
        grid, bicubically upsampled. The standard deviation is ELASTIC_DISPLACEMENT_PX at 28 px, scaled with
        the image, so a warp bends a character the same at any size (Simard et al. 2003's elastic distortion,
        with the smoothing done by the upsampling)."""
        std = 2.0 * ELASTIC_DISPLACEMENT_PX / 28.0
        coarse = torch.randn(b, 2, ELASTIC_GRID, ELASTIC_GRID, generator=self.generator) * std
        return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)

    def _jitter(self, x: Tensor) -> Tensor:
        """Random brightness then contrast per image, in [0, 1] space. x: [B, C, H, W]."""
        factors = 1.0 + (torch.rand(2, x.shape[0], 1, 1, 1, generator=self.generator) * 2 - 1) * JITTER_STRENGTH
        x = x * factors[0]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * factors[1] + mean).clamp_(0.0, 1.0)


class EpisodeSampler:
    """Seeded N-way K-shot Q-query episodes drawn from ``class_ids`` of a store.

    Classes with fewer than ``n_shot + n_query`` images are left out (``left_out``,
    ``warning``). Support and query images are class-major: labels 0,0,..,1,1,..
    """

    def __init__(self, store: ImageStore, class_ids: Sequence[int], preprocessing: Preprocessing,
                 n_way: int, n_shot: int, n_query: int, seed: int, augment: bool = False,
                 flips: bool = False, color_jitter: bool = False, part: str = "", affine: bool = False,
                 elastic: bool = False) -> None:
        self.store = store
        self.n_way, self.n_shot, self.n_query = int(n_way), int(n_shot), int(n_query)
        self.part = part
        need = self.n_shot + self.n_query
        by_class = store.indices_by_class()
        class_ids = [int(c) for c in class_ids]
        usable = [c for c in class_ids if len(by_class[c]) >= need]
        short = [c for c in class_ids if len(by_class[c]) < need]
        self.left_out: list[str] = [store.class_names[c] for c in short]
        self.warning: str | None = _left_out_message(store, short, need, part) if short else None
        if len(usable) < self.n_way:
            where = f"the {part} part" if part else "these classes"
            raise ConfigError(
                f"task.n_way={self.n_way} needs {self.n_way} classes with at least {need} images "
                f"(n_shot + n_query), but {where} has only {len(usable)} such class(es) of {len(class_ids)}")
        self.class_ids = torch.tensor(usable, dtype=torch.long)
        self._flat = torch.cat([by_class[c] for c in usable])
        self._counts = torch.tensor([len(by_class[c]) for c in usable], dtype=torch.long)
        self._offsets = torch.cumsum(self._counts, 0) - self._counts
        self._max_count = int(self._counts.max())
        self._positions = torch.arange(self._max_count)
        self._support_y = torch.arange(self.n_way).repeat_interleave(self.n_shot)
        self._query_y = torch.arange(self.n_way).repeat_interleave(self.n_query)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.transform = BatchTransform(preprocessing, augment=augment, flips=flips, color_jitter=color_jitter,
                                        seed=seed, affine=affine, elastic=elastic)

    @property
    def n_classes(self) -> int:
        """Classes episodes are drawn from (after leaving out the small ones)."""
        return len(self.class_ids)

    def sample(self) -> Task:
        """One episode; support_x [n_way*n_shot, C, H, W], query_x [n_way*n_query, C, H, W]."""
        picked = torch.randperm(len(self.class_ids), generator=self.generator)[: self.n_way]
        image_index = self._pick_images(picked)  # [n_way, n_shot + n_query]
        support_index = image_index[:, : self.n_shot].reshape(-1)
        query_index = image_index[:, self.n_shot:].reshape(-1)
        images = self.transform(self.store.get(torch.cat([support_index, query_index])))
        n_support = support_index.numel()
        return Task(support_x=images[:n_support], support_y=self._support_y.clone(),
                    query_x=images[n_support:], query_y=self._query_y.clone(),
                    class_ids=self.class_ids[picked], support_index=support_index, query_index=query_index)

    def sample_batch(self, n: int) -> list[Task]:
        return [self.sample() for _ in range(n)]

    def _pick_images(self, picked: Tensor) -> Tensor:
        """Distinct random images of each picked class -> store indices [n_way, n_shot + n_query]."""
        counts = self._counts[picked]
        keys = torch.rand(len(picked), self._max_count, generator=self.generator)
        keys.masked_fill_(self._positions.unsqueeze(0) >= counts.unsqueeze(1), 2.0)
        within = keys.topk(self.n_shot + self.n_query, dim=1, largest=False).indices
        return self._flat[self._offsets[picked].unsqueeze(1) + within]

    def state_dict(self) -> dict[str, Tensor]:
        """Random state, to continue the same episode sequence after a resume."""
        return {"episodes": self.generator.get_state(), "augment": self.transform.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["episodes"])
        self.transform.generator.set_state(state["augment"])


class ClassBatchSampler:
    """Shuffled supervised batches over all images of ``class_ids``; labels remapped to 0..len(class_ids)-1.

    Goes through the images in a seeded random order, reshuffling after each pass.
    """

    def __init__(self, store: ImageStore, class_ids: Sequence[int], preprocessing: Preprocessing,
                 batch_size: int, seed: int, augment: bool = False, flips: bool = False,
                 color_jitter: bool = False, affine: bool = False, elastic: bool = False) -> None:
        class_ids = [int(c) for c in class_ids]
        if not class_ids:
            raise ConfigError("no training classes to draw class batches from")
        self.store = store
        self.class_ids = torch.tensor(class_ids, dtype=torch.long)
        self.batch_size = int(batch_size)
        by_class = store.indices_by_class()
        self._indices = torch.cat([by_class[c] for c in class_ids])
        self._label_of_class = torch.full((store.n_classes,), -1, dtype=torch.long)
        self._label_of_class[self.class_ids] = torch.arange(len(class_ids))
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0
        self.generator = torch.Generator().manual_seed(int(seed))
        self.transform = BatchTransform(preprocessing, augment=augment, flips=flips, color_jitter=color_jitter,
                                        seed=seed, affine=affine, elastic=elastic)

    @property
    def n_classes(self) -> int:
        return len(self.class_ids)

    def sample(self) -> ClassBatch:
        """x: [batch_size, C, H, W] float32, y: [batch_size] int64 in 0..n_classes-1."""
        chosen = self._indices[self._next_positions()]
        return ClassBatch(x=self.transform(self.store.get(chosen)), y=self._label_of_class[self.store.labels[chosen]])

    def _next_positions(self) -> Tensor:
        n = len(self._indices)
        if self.batch_size > n:  # fewer images than one batch: draw with replacement
            return torch.randint(n, (self.batch_size,), generator=self.generator)
        if self._cursor + self.batch_size > len(self._order):
            self._order = torch.randperm(n, generator=self.generator)
            self._cursor = 0
        positions = self._order[self._cursor:self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return positions

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.generator.get_state(), "augment": self.transform.generator.get_state(),
                "order": self._order.clone(), "cursor": self._cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["batches"])
        self.transform.generator.set_state(state["augment"])
        self._order = state["order"].clone()
        self._cursor = int(state["cursor"])


def _left_out_message(store: ImageStore, short: list[int], need: int, part: str) -> str:
    counts = store.class_counts()
    listed = ", ".join(f"{store.class_names[c]} ({counts[c]})" for c in short[:10])
    more = f", and {len(short) - 10} more" if len(short) > 10 else ""
    where = f" of the {part} part" if part else ""
    return f"left out {len(short)} class(es){where} with fewer than {need} images: {listed}{more}"
