"""The one call the trainer, CLI and studio use to get data: :func:`load_data`.

It scans the folder, decodes and caches the images, splits the classes (or
reuses a saved split), adds rotated training classes when asked, and hands
back a :class:`FewShotData` that builds seeded samplers for each part.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.config import BUILTIN_GLYPHS, DataConfig
from engine.data.folder import IMAGE_EXTENSIONS, FolderIndex, scan_folder
from engine.data.preprocess import Preprocessing
from engine.data.sampler import ClassBatchSampler, EpisodeSampler
from engine.data.splits import PARTS, ClassSplit, split_classes
from engine.data.store import ImageStore, load_store
from engine.errors import DatasetError

ProgressCallback = Callable[[int, int], None]


@dataclass
class FewShotData:
    """A loaded dataset: folder index, image store, class split and preprocessing.

    ``split`` holds the base class names (as saved in split.json); with rotation
    augmentation, ``class_ids("train")`` also includes the rotated copies.
    """

    index: FolderIndex
    store: ImageStore
    split: ClassSplit
    preprocessing: Preprocessing
    warnings: list[str] = field(default_factory=list)
    config: DataConfig = field(default_factory=DataConfig)
    rotated_class_ids: list[int] = field(default_factory=list)

    def class_ids(self, part: str) -> list[int]:
        """Store class indices of ``part`` ("train" | "val" | "test"), ascending."""
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        position = {name: i for i, name in enumerate(self.store.class_names)}
        ids = [position[name] for name in self.split.part(part) if name in position]
        if part == "train":
            ids += self.rotated_class_ids
        return sorted(ids)

    def class_names(self, part: str) -> list[str]:
        return [self.store.class_names[c] for c in self.class_ids(part)]

    def episodes(self, part: str, n_way: int, n_shot: int, n_query: int, seed: int,
                 augment: bool = False) -> EpisodeSampler:
        """Seeded episode sampler over ``part``; a left-out-classes warning is added to ``warnings``."""
        sampler = EpisodeSampler(self.store, self.class_ids(part), self.preprocessing, n_way, n_shot, n_query,
                                 seed, augment=augment, flips=self.config.augment_flips,
                                 color_jitter=self.config.augment_color_jitter, part=part,
                                 affine=self.config.augment_affine, elastic=self.config.augment_elastic)
        if sampler.warning and sampler.warning not in self.warnings:
            self.warnings.append(sampler.warning)
        return sampler

    def class_batches(self, batch_size: int, seed: int, augment: bool = False) -> ClassBatchSampler:
        """Shuffled supervised batches over the training classes (labels 0..n_train_classes-1)."""
        return ClassBatchSampler(self.store, self.class_ids("train"), self.preprocessing, batch_size, seed,
                                 augment=augment, flips=self.config.augment_flips,
                                 color_jitter=self.config.augment_color_jitter, affine=self.config.augment_affine,
                                 elastic=self.config.augment_elastic)


def resolve_root(root: str) -> Path:
    """A dataset folder path; ``"builtin:glyphs"`` is generated on first use and cached."""
    if str(root).strip() == BUILTIN_GLYPHS:
        from engine.data.glyphs import ensure_glyph_dataset
        return Path(ensure_glyph_dataset())
    if not str(root).strip():
        raise DatasetError("data.root is empty; choose a dataset folder")
    return Path(root).expanduser()


def load_data(cfg: DataConfig, split: ClassSplit | None = None,
              progress: ProgressCallback | None = None) -> FewShotData:
    """Scan, decode, split (or reuse ``split``) and augment; DatasetError / ConfigError on bad input."""
    index = scan_folder(resolve_root(cfg.root))
    preprocessing = Preprocessing.from_config(cfg)
    store = load_store(index, preprocessing, cfg.cache_budget_mb, progress)
    _check_some_class_usable(index, store)
    if split is None:
        split = split_classes(store.class_names, store.class_groups, cfg)
    else:
        _check_split(split, store, index.root)
    rotated: list[int] = []
    if cfg.augment_rotations:
        position = {name: i for i, name in enumerate(store.class_names)}
        store, rotated = store.with_rotated_classes([position[name] for name in split.train])
    data = FewShotData(index=index, store=store, split=split, preprocessing=preprocessing,
                       config=cfg, rotated_class_ids=rotated)
    data.warnings += _load_warnings(store, index.root, cfg.cache_budget_mb)
    return data


def other_folder(cfg: DataConfig, root: str) -> tuple[DataConfig, ClassSplit]:
    """(data config, split) to read another folder than the training data with the same preprocessing, for
    evaluation on new classes: no rotated classes, and an empty split, since its classes are chosen by what
    training saw (``engine.inference.evaluation_classes``), never by train/val/test parts; so a folder of any
    size and layout loads (a ratio or group split of 10 classes would refuse it)."""
    other = copy.deepcopy(cfg)
    other.root, other.augment_rotations = root, False
    return other, ClassSplit(train=[], val=[], test=[])


def _check_some_class_usable(index: FolderIndex, store: ImageStore) -> None:
    """DatasetError naming the folder when every class was dropped (none of its images decoded)."""
    if store.n_classes:
        return
    undecodable = [s for s in store.skipped if s.path.suffix.lower() in IMAGE_EXTENSIONS]
    shown = "; ".join(f"{_relative(s.path, index.root)}: {s.reason}" for s in undecodable[:2])
    more = f"; and {len(undecodable) - 2} more" if len(undecodable) > 2 else ""
    raise DatasetError(f"{index.root}: no usable class: none of the {index.n_images} image file(s) in its "
                       f"{len(index.classes)} class folder(s) could be decoded ({shown}{more})")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _check_split(split: ClassSplit, store: ImageStore, root: Path) -> None:
    available = set(store.class_names)
    missing = [name for part in PARTS for name in split.part(part) if name not in available]
    if missing:
        shown = ", ".join(missing[:5]) + (f", and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(f"{root}: {len(missing)} class(es) of the saved split are missing from the folder "
                           f"(or have no readable images): {shown}")


def _load_warnings(store: ImageStore, root: Path, budget_mb: int) -> list[str]:
    warnings = []
    if store.skipped:
        shown = "; ".join(f"{s.path} ({s.reason})" for s in store.skipped[:3])
        more = f"; and {len(store.skipped) - 3} more" if len(store.skipped) > 3 else ""
        warnings.append(f"skipped {len(store.skipped)} file(s) or folder(s) in {root}: {shown}{more}")
    if store.n_cached < len(store):
        warnings.append(f"data.cache_budget_mb={budget_mb} holds {store.n_cached} of {len(store)} images; "
                        "the rest are decoded from disk when sampled (slower)")
    return warnings
