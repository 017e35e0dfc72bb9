"""Split classes (never images) into train / val / test parts.

``ratio`` mode shuffles the class names with ``split_seed`` and cuts them by
``train_ratio`` / ``val_ratio`` (the rest is test). ``group`` mode holds out
whole groups (e.g. Omniglot alphabets) named in ``val_groups`` / ``test_groups``;
every other group trains. The split is saved with each run as split.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from engine.config import DataConfig
from engine.errors import ConfigError

PARTS = ("train", "val", "test")


@dataclass
class ClassSplit:
    """Class names of each part; the parts are disjoint."""

    train: list[str]
    val: list[str]
    test: list[str]

    def part(self, name: str) -> list[str]:
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; expected one of {', '.join(PARTS)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassSplit":
        """Rebuild from :meth:`to_dict` output; ConfigError naming the bad part."""
        if not isinstance(d, dict):
            raise ConfigError(f"split: expected an object with train/val/test lists, got {type(d).__name__}")
        parts = {}
        for name in PARTS:
            value = d.get(name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"split.{name}: expected a list of class names")
            parts[name] = list(value)
        return cls(**parts)


def split_classes(class_names: list[str], class_groups: list[str | None], cfg: DataConfig) -> ClassSplit:
    """Split ``class_names`` per ``cfg.split_mode``; ConfigError naming the field when a part would be empty."""
    if len(class_names) != len(class_groups):
        raise ValueError("class_names and class_groups must have the same length")
    if cfg.split_mode == "group":
        return _split_by_group(class_names, class_groups, cfg)
    if cfg.split_mode == "ratio":
        return _split_by_ratio(class_names, cfg)
    raise ConfigError(f"data.split_mode must be 'ratio' or 'group' (got {cfg.split_mode!r})")


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def _split_by_ratio(class_names: list[str], cfg: DataConfig) -> ClassSplit:
    names = sorted(class_names)
    n = len(names)
    n_train = _round_half_up(n * cfg.train_ratio)
    n_val = _round_half_up(n * cfg.val_ratio)
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise ConfigError(
            f"data.train_ratio={cfg.train_ratio:g} / data.val_ratio={cfg.val_ratio:g} split {n} classes into "
            f"{n_train} train, {max(n_val, 0)} val and {max(n_test, 0)} test classes; every part needs at least "
            f"one class (change the ratios or use a folder with more classes)")
    generator = torch.Generator().manual_seed(int(cfg.split_seed))
    order = torch.randperm(n, generator=generator).tolist()
    shuffled = [names[i] for i in order]
    return ClassSplit(train=sorted(shuffled[:n_train]), val=sorted(shuffled[n_train:n_train + n_val]),
                      test=sorted(shuffled[n_train + n_val:]))


def _split_by_group(class_names: list[str], class_groups: list[str | None], cfg: DataConfig) -> ClassSplit:
    if any(group is None for group in class_groups):
        raise ConfigError("data.split_mode 'group' needs a nested folder (root/<group>/<class>/<images>); "
                          "this dataset has a flat layout, use data.split_mode 'ratio'")
    available = list(dict.fromkeys(g for g in class_groups if g is not None))
    val_groups, test_groups = list(cfg.val_groups), list(cfg.test_groups)
    for field_name, wanted in (("data.val_groups", val_groups), ("data.test_groups", test_groups)):
        if not wanted:
            raise ConfigError(f"{field_name} is empty; name at least one group to hold out "
                              f"(available: {', '.join(available)})")
        unknown = [g for g in wanted if g not in available]
        if unknown:
            raise ConfigError(f"{field_name}: unknown group(s) {', '.join(unknown)}; "
                              f"available groups: {', '.join(available)}")
    overlap = sorted(set(val_groups) & set(test_groups))
    if overlap:
        raise ConfigError(f"data.val_groups and data.test_groups both contain {', '.join(overlap)}; "
                          "a group can be held out only once")
    held_out = set(val_groups) | set(test_groups)
    train = sorted(n for n, g in zip(class_names, class_groups) if g not in held_out)
    if not train:
        raise ConfigError("data.val_groups / data.test_groups hold out every group; no classes left to train "
                          f"(available groups: {', '.join(available)})")
    val = sorted(n for n, g in zip(class_names, class_groups) if g in set(val_groups))
    test = sorted(n for n, g in zip(class_names, class_groups) if g in set(test_groups))
    return ClassSplit(train=train, val=val, test=test)
