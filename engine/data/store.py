"""Decoded images of a dataset, cached in memory as one uint8 tensor.

:func:`load_store` decodes every indexed file once (a small thread pool: Pillow
releases the GIL), so corrupt files are found up front and listed in
``ImageStore.skipped``. As many images as fit in the cache budget are kept as
rows of one ``uint8 [M, C, H, W]`` tensor; the rest are decoded again on demand
by :meth:`ImageStore.get`. Images are stored class-major (all of class 0, then
class 1, ...).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from engine.data.folder import FolderIndex, SkippedFile
from engine.data.images import ImageDecodeError
from engine.data.preprocess import Preprocessing

ProgressCallback = Callable[[int, int], None]

ROTATION_SUFFIXES = {1: "@rot90", 2: "@rot180", 3: "@rot270"}
_MAX_PROGRESS_REPORTS = 50
_MIN_FILES_FOR_THREADS = 64


@dataclass
class ImageStore:
    """Decoded uint8 images at the configured size, with their classes.

    labels: [N] int64 class index per image (into ``class_names``).
    preprocessing: how a file becomes an image here (size, channels, crop): ``Preprocessing.decode``.
    cache: [M, C, H, W] uint8, the images that fit in the budget.
    cache_slots: [N] int64, row of each image in ``cache`` or -1 (decoded on demand).
    rotations: [N] int64, quarter turns applied after decoding ``paths[i]`` (rotated classes).
    """

    class_names: list[str]
    class_groups: list[str | None]
    labels: Tensor
    paths: list[Path]
    skipped: list[SkippedFile] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    cache: Tensor | None = field(default=None, repr=False)
    cache_slots: Tensor | None = field(default=None, repr=False)
    rotations: Tensor | None = field(default=None, repr=False)
    budget_bytes: int = 4096 * 2**20
    _by_class: list[Tensor] | None = field(default=None, init=False, repr=False, compare=False)
    _all_cached_in_order: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.cache is None:
            size = self.preprocessing.image_size
            self.cache = torch.empty(0, self.preprocessing.channels, size, size, dtype=torch.uint8)
        if self.cache_slots is None:
            self.cache_slots = torch.full((n,), -1, dtype=torch.long)
        if self.rotations is None:
            self.rotations = torch.zeros(n, dtype=torch.long)
        self._all_cached_in_order = (self.n_cached == n
                                     and bool(torch.equal(self.cache_slots, torch.arange(n))))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_cached(self) -> int:
        """How many images live in the in-memory cache."""
        return int(self.cache.shape[0])

    def get_labels(self) -> list[int]:
        return self.labels.tolist()

    def class_counts(self) -> list[int]:
        """Images per class, in class order."""
        return torch.bincount(self.labels, minlength=self.n_classes).tolist()

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the per-class index views (rebuilt on first use): a store sent to a training
        process then shares a handful of tensors, not one per class."""
        state = dict(self.__dict__)
        state["_by_class"] = None
        return state

    def indices_by_class(self) -> list[Tensor]:
        """Per class, the int64 indices of its images (computed once)."""
        if self._by_class is None:
            order = torch.argsort(self.labels, stable=True)
            counts = torch.bincount(self.labels, minlength=self.n_classes).tolist()
            self._by_class = list(torch.split(order, counts))
        return self._by_class

    def get(self, indices: Tensor | Sequence[int]) -> Tensor:
        """uint8 [B, C, H, W] images at ``indices``; one gather when cached, else decoded on demand."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if self._all_cached_in_order:  # slot i == image i; index_select copies whole rows (~10x advanced indexing)
            return torch.index_select(self.cache, 0, indices)
        slots = self.cache_slots[indices]
        hit = slots >= 0
        if bool(hit.all()):
            return torch.index_select(self.cache, 0, slots)
        size = self.preprocessing.image_size
        out = torch.empty(len(indices), self.preprocessing.channels, size, size, dtype=torch.uint8)
        out[hit] = self.cache[slots[hit]]
        for position in torch.nonzero(~hit).flatten().tolist():
            out[position] = self.decode(int(indices[position]))
        return out

    def decode(self, index: int) -> Tensor:
        """Decode image ``index`` from its file (uint8 [C, H, W]), applying its rotation."""
        image = self.preprocessing.decode(self.paths[index])
        turns = int(self.rotations[index])
        return torch.rot90(image, turns, dims=(1, 2)).contiguous() if turns else image

    def with_rotated_classes(self, class_ids: Sequence[int]) -> tuple["ImageStore", list[int]]:
        """A new store with 90/180/270-degree copies of ``class_ids`` as extra classes.

        New classes are named ``"<name>@rot90"`` etc. and appended after the existing ones;
        returns the new store and the new class indices. Rotated copies of cached images
        are cached while the budget allows; the others are decoded and rotated on demand.
        """
        class_ids = [int(c) for c in class_ids]
        by_class = self.indices_by_class()
        sources = torch.cat([by_class[c] for c in class_ids]) if class_ids else torch.empty(0, dtype=torch.long)
        position = torch.full((self.n_classes,), -1, dtype=torch.long)
        position[torch.tensor(class_ids, dtype=torch.long)] = torch.arange(len(class_ids))
        per_image = self.preprocessing.channels * self.preprocessing.image_size ** 2
        free_rows = max(0, self.budget_bytes // per_image - self.n_cached)
        parts = _RotationParts(self.n_cached)
        for turns in (1, 2, 3):
            first_label = self.n_classes + (turns - 1) * len(class_ids)
            parts.add(self, sources, first_label + position[self.labels[sources]], turns, free_rows)
            free_rows = max(0, free_rows - parts.last_cached)
        names = [f"{self.class_names[c]}{ROTATION_SUFFIXES[t]}" for t in (1, 2, 3) for c in class_ids]
        groups = [self.class_groups[c] for _ in (1, 2, 3) for c in class_ids]
        store = ImageStore(
            class_names=self.class_names + names, class_groups=self.class_groups + groups,
            labels=torch.cat([self.labels, *parts.labels]),
            paths=self.paths + [self.paths[i] for _ in (1, 2, 3) for i in sources.tolist()],
            skipped=list(self.skipped), preprocessing=self.preprocessing, cache=torch.cat([self.cache, *parts.rows]),
            cache_slots=torch.cat([self.cache_slots, *parts.slots]),
            rotations=torch.cat([self.rotations, *parts.rotations]), budget_bytes=self.budget_bytes)
        return store, list(range(self.n_classes, store.n_classes))


class _RotationParts:
    """Accumulates the rotated copies built by :meth:`ImageStore.with_rotated_classes`."""

    def __init__(self, next_row: int) -> None:
        self.next_row = next_row
        self.labels: list[Tensor] = []
        self.rows: list[Tensor] = []
        self.slots: list[Tensor] = []
        self.rotations: list[Tensor] = []
        self.last_cached = 0

    def add(self, store: ImageStore, sources: Tensor, labels: Tensor, turns: int, free_rows: int) -> None:
        source_slots = store.cache_slots[sources]
        cached = torch.nonzero(source_slots >= 0).flatten()[:free_rows]
        slots = torch.full((len(sources),), -1, dtype=torch.long)
        slots[cached] = torch.arange(self.next_row, self.next_row + len(cached))
        self.rows.append(torch.rot90(store.cache[source_slots[cached]], turns, dims=(2, 3)).contiguous())
        self.labels.append(labels)
        self.slots.append(slots)
        self.rotations.append((store.rotations[sources] + turns) % 4)
        self.next_row += len(cached)
        self.last_cached = len(cached)


def load_store(index: FolderIndex, preprocessing: Preprocessing, budget_mb: int = 4096,
               progress: ProgressCallback | None = None) -> ImageStore:
    """Decode every file of ``index``; undecodable files go to ``skipped``, empty classes are dropped."""
    files = [(label, path) for label, entry in enumerate(index.classes) for path in entry.files]
    size, channels = preprocessing.image_size, preprocessing.channels
    budget_bytes = max(0, int(budget_mb)) * 2**20
    cache = _allocate_cache(len(files), budget_bytes, channels, size)
    capacity = int(cache.shape[0])
    labels: list[int] = []
    paths: list[Path] = []
    skipped = list(index.skipped)
    slots: list[int] = []
    n_cached = 0
    decoded = _decode_all([p for _, p in files], preprocessing, progress)
    for (label, path), result in zip(files, decoded):
        if isinstance(result, ImageDecodeError):
            skipped.append(SkippedFile(path, result.reason))
            continue
        labels.append(label)
        paths.append(path)
        if n_cached < capacity:
            cache[n_cached] = result
            slots.append(n_cached)
            n_cached += 1
        else:
            slots.append(-1)
    if n_cached < capacity:
        cache = cache[:n_cached].clone()
    return _drop_empty_classes(index, ImageStore(
        class_names=index.class_names(), class_groups=[entry.group for entry in index.classes],
        labels=torch.tensor(labels, dtype=torch.long), paths=paths, skipped=skipped, preprocessing=preprocessing,
        cache=cache,
        cache_slots=torch.tensor(slots, dtype=torch.long),
        budget_bytes=budget_bytes))


def _allocate_cache(n_files: int, budget_bytes: int, channels: int, size: int) -> Tensor:
    """uint8 [M, C, H, W] rows for the images that fit the budget and the memory actually free.

    M never exceeds half of the memory the system reports available (the model and the
    decoding need the rest); when even that cannot be allocated, M is halved until it can.
    Images beyond M are decoded on demand, so a small cache is slower, never wrong.
    """
    per_image = channels * size * size
    capacity = min(n_files, budget_bytes // per_image)
    available = _available_memory_bytes()
    if available is not None:
        capacity = min(capacity, available // 2 // per_image)
    while True:
        try:
            return torch.empty(capacity, channels, size, size, dtype=torch.uint8)
        except (MemoryError, RuntimeError):
            if capacity == 0:
                raise
            capacity //= 2


def _available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _decode_all(paths: list[Path], preprocessing: Preprocessing,
                progress: ProgressCallback | None) -> Iterator[Tensor | ImageDecodeError]:
    """Decode ``paths`` in order (threads for many files), reporting progress at most ~50 times."""
    total = len(paths)
    every = max(1, math.ceil(total / _MAX_PROGRESS_REPORTS))

    def decode(path: Path) -> Tensor | ImageDecodeError:
        try:
            return preprocessing.decode(path)
        except ImageDecodeError as error:
            return error

    def report(results: Iterable[Tensor | ImageDecodeError]) -> Iterator[Tensor | ImageDecodeError]:
        for done, result in enumerate(results, start=1):
            if progress is not None and (done % every == 0 or done == total):
                progress(done, total)
            yield result

    if total < _MIN_FILES_FOR_THREADS:
        yield from report(map(decode, paths))
        return
    workers = min(4, max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        yield from report(pool.map(decode, paths))


def _drop_empty_classes(index: FolderIndex, store: ImageStore) -> ImageStore:
    """Remove classes whose every image failed to decode (each reported in ``skipped``)."""
    counts = store.class_counts()
    if all(counts):
        return store
    keep = [c for c, count in enumerate(counts) if count]
    for c, count in enumerate(counts):
        if not count:
            store.skipped.append(SkippedFile(index.root / store.class_names[c],
                                             "class dropped: none of its images could be decoded"))
    new_label = torch.full((len(counts),), -1, dtype=torch.long)
    new_label[torch.tensor(keep, dtype=torch.long)] = torch.arange(len(keep))
    return ImageStore(
        class_names=[store.class_names[c] for c in keep], class_groups=[store.class_groups[c] for c in keep],
        labels=new_label[store.labels], paths=store.paths, skipped=store.skipped, preprocessing=store.preprocessing,
        cache=store.cache, cache_slots=store.cache_slots,
        rotations=store.rotations,
        budget_bytes=store.budget_bytes)
