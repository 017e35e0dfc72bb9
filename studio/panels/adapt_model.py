"""The Adapt panel's state and computations, without any Qt: support sets, undo, decoding, adaptation, PCA.

A support set is an immutable tuple of :class:`ClassState` (a class card: id,
name, example images), so an undo snapshot is just a reference to the previous
tuple. :func:`adapt_and_predict` is the one computation behind every update of
the panel: fit a predictor to the support set (``Algorithm.adapt``), classify
the test images in one batch, and project support, prototypes and queries to a
2-D map (PCA fitted on support embeddings and prototypes).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.algorithms.base import Algorithm, Predictor
from engine.data.folder import IMAGE_EXTENSIONS, SkippedFile
from engine.data.images import ImageDecodeError, decode_image
from engine.data.preprocess import Preprocessing

FAST_ALGORITHMS = frozenset({"protonet", "matching", "simpleshot"})
"""Algorithms whose adaptation is one forward pass (no inner loop): adapted directly in the GUI thread."""
CACHEABLE_ALGORITHMS = frozenset({"protonet", "matching", "simpleshot", "baseline", "baseline++"})
"""Algorithms that embed images with a frozen, eval-mode backbone: their features can be cached per image."""
MAX_SYNC_IMAGES = 300
"""Above this many support + test images even fast algorithms adapt in the worker thread."""
BULK_FILES = 1000
"""Drops of more files than this are decoded in the worker thread behind a cancellable progress dialog."""
MAP_MAX_QUERIES = 300
"""At most this many test images are drawn on the 2-D map."""
UNDO_LIMIT = 200

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]

_ids = itertools.count(1)


def new_uid() -> int:
    """A process-unique id for a class card or a clipboard image."""
    return next(_ids)


@dataclass(frozen=True, eq=False)
class Example:
    """One image of a class card or of the test zone.

    pixels: uint8 [C, H, W] at the current model's preprocessing (size and channels).
    key: identity for duplicate detection (the resolved file path, or ``clipboard:<n>``).
    source: the file it came from (None for images restored from a saved classifier).
    truth: the class name given by the sub-folder of a dropped test folder, if any.
    """

    key: str
    name: str
    pixels: Tensor
    source: Path | None = None
    truth: str | None = None


@dataclass(frozen=True, eq=False)
class ClassState:
    """One class card: a stable id, its name and its support examples."""

    uid: int
    name: str
    examples: tuple[Example, ...] = ()


SupportSet = tuple[ClassState, ...]


def support_key(support: SupportSet) -> tuple:
    """What adaptation depends on: the order of the non-empty classes and their examples (not names)."""
    return tuple((c.uid, tuple(e.key for e in c.examples)) for c in support if c.examples)


def usable_classes(support: SupportSet) -> list[ClassState]:
    """Classes with at least one image (the others are left out of adaptation)."""
    return [c for c in support if c.examples]


class UndoStack:
    """Snapshots of support sets; ``push`` the state before each change, ``pop`` to undo it."""

    def __init__(self, limit: int = UNDO_LIMIT) -> None:
        self._items: list[tuple[SupportSet, str]] = []
        self.limit = limit

    def push(self, snapshot: SupportSet, description: str) -> None:
        self._items.append((snapshot, description))
        if len(self._items) > self.limit:
            del self._items[0]

    def pop(self) -> tuple[SupportSet, str] | None:
        return self._items.pop() if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_description(self) -> str:
        return self._items[-1][1] if self._items else ""


# -- names -----------------------------------------------------------------------------------------
def name_problem(name: str, support: SupportSet, own_uid: int | None = None) -> str | None:
    """Why ``name`` cannot name a class (empty, too long, used by another card), or None."""
    name = name.strip()
    if not name:
        return "A class needs a name."
    if len(name) > 100:
        return "Class names are limited to 100 characters."
    if "/" in name or "\\" in name:
        return "Class names cannot contain '/' or '\\'."
    for other in support:
        if other.uid != own_uid and other.name.casefold() == name.casefold():
            return f"The name '{name}' is already used by another class."
    return None


def next_class_name(support: SupportSet) -> str:
    """``Class N`` with the smallest N not in use."""
    used = {c.name.casefold() for c in support}
    for n in itertools.count(1):
        if f"class {n}" not in used:
            return f"Class {n}"
    raise AssertionError("unreachable")


# -- files -----------------------------------------------------------------------------------------
@dataclass
class DropListing:
    """The image files of a drop (folders walked recursively, sorted) and what was left out."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    truth: dict[Path, str] = field(default_factory=dict)  # test folders: file -> its sub-folder's name
    from_folder: bool = False


def list_dropped(paths: Iterable[Path | str]) -> DropListing:
    """Expand dropped paths: files are kept as given (decoding tells later if they are images);
    folders contribute their image files (by extension, recursively); missing paths are skipped."""
    listing = DropListing()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            listing.from_folder = True
            _walk_folder(path, listing)
        elif path.is_file():
            listing.files.append(path)
        else:
            listing.skipped.append(SkippedFile(path, "file not found"))
    return listing


def _walk_folder(root: Path, listing: DropListing) -> None:
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                listing.files.append(path)
                if path.parent != root:
                    listing.truth[path] = path.parent.name
            else:
                listing.skipped.append(SkippedFile(path, "not an image file (by its extension)"))


def file_key(path: Path) -> str:
    """The duplicate-detection key of a file: its resolved absolute path."""
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())


@dataclass
class DecodeResult:
    examples: list[Example]
    skipped: list[SkippedFile]
    cancelled: bool = False


def decode_files(files: Sequence[Path], prep: Preprocessing, *, truth: dict[Path, str] | None = None,
                 progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> DecodeResult:
    """Decode image files to uint8 examples at ``prep``'s size; undecodable files are skipped with a reason."""
    examples: list[Example] = []
    skipped: list[SkippedFile] = []
    total = len(files)
    for i, path in enumerate(files):
        if should_stop is not None and should_stop():
            return DecodeResult(examples, skipped, cancelled=True)
        try:
            pixels = decode_image(path, prep.image_size, prep.channels)
        except ImageDecodeError as error:
            skipped.append(SkippedFile(path, error.reason))
        else:
            examples.append(Example(file_key(path), path.name, pixels, path, (truth or {}).get(path)))
        if progress is not None and (i % 16 == 15 or i + 1 == total):
            progress(i + 1, total)
    return DecodeResult(examples, skipped)


def convert_pixels(pixels: Tensor, prep: Preprocessing) -> Tensor:
    """uint8 [C, H, W] -> uint8 [prep.channels, size, size] (bilinear resize, grey <-> RGB)."""
    x = pixels.to(torch.float32)
    if x.shape[0] != prep.channels:
        x = x.mean(0, keepdim=True) if prep.channels == 1 else x.expand(3, -1, -1)
    if tuple(x.shape[1:]) != (prep.image_size, prep.image_size):
        x = F.interpolate(x.unsqueeze(0), size=(prep.image_size, prep.image_size), mode="bilinear",
                          antialias=True, align_corners=False)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def reprocess(example: Example, prep: Preprocessing) -> Example:
    """The example at another model's preprocessing: decoded again from its file, else converted."""
    if example.source is not None:
        try:
            return replace(example, pixels=decode_image(example.source, prep.image_size, prep.channels))
        except ImageDecodeError:
            pass
    return replace(example, pixels=convert_pixels(example.pixels, prep))


# -- adaptation --------------------------------------------------------------------------------------
class FeatureCache(nn.Module):
    """Wraps a backbone and remembers the features of every image it has embedded (keyed by content).

    Only in eval mode without gradients, where the features of one image do not depend on the
    rest of the batch: then a drop of one image costs one image's forward pass instead of the whole
    support and test sets'. Used for the algorithms of CACHEABLE_ALGORITHMS, whose adaptation and
    prediction embed images that way; elsewhere (training mode, gradients) it is a plain pass-through.
    """

    def __init__(self, backbone: nn.Module, max_items: int = 50_000) -> None:
        super().__init__()
        self.inner = backbone
        self.out_features = getattr(backbone, "out_features", None)
        self.max_items = max_items
        self._features: dict[bytes, Tensor] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._features.clear()

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
            fresh = self.inner(x[torch.tensor([index[k] for k in missing], device=x.device)])
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
    if cache is None:
        yield
        return
    original = algorithm.backbone
    algorithm.backbone = cache
    try:
        yield
    finally:
        algorithm.backbone = original


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
