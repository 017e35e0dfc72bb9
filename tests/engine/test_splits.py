"""split_classes: disjoint parts covering every class, seeded, whole groups held out, clear errors."""

from __future__ import annotations

import pytest

from engine.config import DataConfig
from engine.data.splits import ClassSplit, split_classes
from engine.errors import ConfigError

NAMES = [f"class{i:02d}" for i in range(20)]
FLAT_GROUPS: list[str | None] = [None] * len(NAMES)
NESTED_NAMES = [f"{g}/c{i}" for g in ("Greek", "Latin", "Korean", "Runic") for i in range(5)]
NESTED_GROUPS: list[str | None] = [name.split("/")[0] for name in NESTED_NAMES]


def check_partition(split: ClassSplit, names: list[str]) -> None:
    parts = [set(split.train), set(split.val), set(split.test)]
    assert all(parts)
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(names)
    assert len(split.train) + len(split.val) + len(split.test) == len(names)


def test_ratio_split_is_a_partition_with_the_right_sizes() -> None:
    split = split_classes(NAMES, FLAT_GROUPS, DataConfig(train_ratio=0.6, val_ratio=0.2))
    check_partition(split, NAMES)
    assert (len(split.train), len(split.val), len(split.test)) == (12, 4, 4)


def test_ratio_split_is_seeded() -> None:
    first = split_classes(NAMES, FLAT_GROUPS, DataConfig(split_seed=3))
    again = split_classes(list(reversed(NAMES)), FLAT_GROUPS, DataConfig(split_seed=3))
    other = split_classes(NAMES, FLAT_GROUPS, DataConfig(split_seed=4))
    assert first == again  # independent of the input order
    assert first != other
    check_partition(other, NAMES)


def test_ratio_split_shuffles_classes() -> None:
    split = split_classes(NAMES, FLAT_GROUPS, DataConfig(split_seed=0))
    assert split.train != NAMES[: len(split.train)]


def test_ratio_split_with_too_few_classes_names_fields_and_count() -> None:
    with pytest.raises(ConfigError) as info:
        split_classes(NAMES[:3], FLAT_GROUPS[:3], DataConfig(train_ratio=0.6, val_ratio=0.2))
    message = str(info.value)
    assert "data.train_ratio" in message and "data.val_ratio" in message and "3 classes" in message


def test_zero_val_ratio_is_an_error() -> None:
    with pytest.raises(ConfigError, match="data.val_ratio"):
        split_classes(NAMES, FLAT_GROUPS, DataConfig(train_ratio=0.5, val_ratio=0.0))


def test_group_split_holds_out_whole_groups() -> None:
    cfg = DataConfig(split_mode="group", val_groups=["Latin"], test_groups=["Korean", "Runic"])
    split = split_classes(NESTED_NAMES, NESTED_GROUPS, cfg)
    check_partition(split, NESTED_NAMES)
    assert {n.split("/")[0] for n in split.train} == {"Greek"}
    assert {n.split("/")[0] for n in split.val} == {"Latin"}
    assert {n.split("/")[0] for n in split.test} == {"Korean", "Runic"}
    assert len(split.test) == 10


def test_group_split_unknown_group_lists_available() -> None:
    cfg = DataConfig(split_mode="group", val_groups=["Latin"], test_groups=["Klingon"])
    with pytest.raises(ConfigError) as info:
        split_classes(NESTED_NAMES, NESTED_GROUPS, cfg)
    message = str(info.value)
    assert "data.test_groups" in message and "Klingon" in message
    assert all(g in message for g in ("Greek", "Latin", "Korean", "Runic"))


def test_group_split_needs_both_held_out_parts() -> None:
    with pytest.raises(ConfigError, match="data.val_groups"):
        split_classes(NESTED_NAMES, NESTED_GROUPS, DataConfig(split_mode="group", test_groups=["Latin"]))


def test_group_split_rejects_overlap_and_no_training_groups() -> None:
    overlap = DataConfig(split_mode="group", val_groups=["Latin"], test_groups=["Latin", "Greek"])
    with pytest.raises(ConfigError, match="both contain Latin"):
        split_classes(NESTED_NAMES, NESTED_GROUPS, overlap)
    everything = DataConfig(split_mode="group", val_groups=["Latin", "Greek"], test_groups=["Korean", "Runic"])
    with pytest.raises(ConfigError, match="no classes left to train"):
        split_classes(NESTED_NAMES, NESTED_GROUPS, everything)


def test_group_split_on_flat_folder_is_an_error() -> None:
    cfg = DataConfig(split_mode="group", val_groups=["a"], test_groups=["b"])
    with pytest.raises(ConfigError, match="data.split_mode"):
        split_classes(NAMES, FLAT_GROUPS, cfg)


def test_class_split_dict_round_trip_and_validation() -> None:
    split = ClassSplit(train=["a", "b"], val=["c"], test=["d"])
    assert ClassSplit.from_dict(split.to_dict()) == split
    with pytest.raises(ConfigError, match="split.val"):
        ClassSplit.from_dict({"train": ["a"], "val": "c", "test": []})
    with pytest.raises(ConfigError, match="split"):
        ClassSplit.from_dict(["a"])  # type: ignore[arg-type]
