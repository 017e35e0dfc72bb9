"""load_store / load_data / inspect_folder on small generated folders, plus a real Omniglot smoke test."""

from __future__ import annotations

import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import DataConfig
from engine.data.dataset import FewShotData, load_data, resolve_root
from engine.data.folder import scan_folder
from engine.data.inspect import format_inspection, inspect_folder
from engine.data.preprocess import Preprocessing
from engine.data.splits import ClassSplit
from engine.data.store import load_store
from engine.errors import ConfigError, DatasetError

torch.set_num_threads(1)

OMNIGLOT_DIR = Path(__file__).resolve().parents[2].parent / "shared/datasets/omniglot"


def write_pattern(path: Path, seed: int, size: int = 12, mode: str = "L") -> Path:
    """A random, asymmetric image so rotations and mix-ups are detectable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def make_nested(root: Path, n_groups: int = 4, n_classes: int = 3, n_images: int = 6) -> Path:
    seed = 0
    for g in range(n_groups):
        for c in range(n_classes):
            for i in range(n_images):
                seed += 1
                ext = (".png", ".bmp", ".webp", ".jpg")[seed % 4] if g == 0 else ".png"
                write_pattern(root / f"group{g}" / f"char{c}" / f"{i:02d}{ext}", seed)
    return root


def make_flat(root: Path, counts: list[int]) -> Path:
    for c, count in enumerate(counts):
        for i in range(count):
            write_pattern(root / f"class{c:02d}" / f"{i:02d}.png", 1000 * c + i, mode="RGB" if i % 2 else "L")
    return root


def group_cfg(root: Path, **kwargs) -> DataConfig:  # type: ignore[no-untyped-def]
    return DataConfig(root=str(root), image_size=8, split_mode="group", val_groups=["group1"],
                      test_groups=["group2"], **kwargs)


# -- load_store ---------------------------------------------------------------------------------

def test_store_holds_class_major_uint8_images(tmp_path: Path) -> None:
    index = scan_folder(make_nested(tmp_path, n_groups=2, n_classes=2, n_images=3))
    store = load_store(index, Preprocessing(image_size=8, channels=3))
    assert len(store) == 12 and store.n_cached == 12
    assert store.cache.shape == (12, 3, 8, 8) and store.cache.dtype == torch.uint8
    assert store.get_labels() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [t.tolist() for t in store.indices_by_class()] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert store.class_groups == ["group0", "group0", "group1", "group1"]
    assert store.get(torch.tensor([4, 0])).shape == (2, 3, 8, 8)


def test_bad_files_are_skipped_and_neighbours_still_load(tmp_path: Path) -> None:
    root = make_flat(tmp_path / "data", [3, 3, 2])
    (root / "class00" / "fake.png").write_text("not a png")
    good = (root / "class01" / "00.png").read_bytes()
    (root / "class01" / "cut.png").write_bytes(good[: len(good) // 2])
    for name in ("00.png", "01.png"):  # every image of class02 is corrupt
        (root / "class02" / name).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    store = load_store(scan_folder(root), Preprocessing(image_size=8))
    assert store.class_names == ["class00", "class01"]
    assert store.class_counts() == [3, 3]
    reasons = {s.path.name: s.reason for s in store.skipped}
    assert "not an image" in reasons["fake.png"]
    assert "truncated" in reasons["cut.png"] or "corrupt" in reasons["cut.png"]
    assert "class dropped" in reasons["class02"]
    assert set(store.labels.tolist()) == {0, 1}


def test_threaded_decoding_keeps_order_and_reports_progress(tmp_path: Path) -> None:
    root = make_flat(tmp_path, [35, 35])  # 70 files: the thread pool path
    calls: list[tuple[int, int]] = []
    store = load_store(scan_folder(root), Preprocessing(image_size=12), progress=lambda d, t: calls.append((d, t)))
    assert len(store) == 70
    assert all(path.parent.name == f"class{label:02d}" for path, label in zip(store.paths, store.get_labels()))
    expected = torch.from_numpy(np.array(Image.open(root / "class01" / "04.png").convert("L"))).unsqueeze(0)
    assert torch.equal(store.get(torch.tensor([39]))[0], expected)
    assert calls[-1] == (70, 70) and len(calls) <= 51
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cache_budget_fallback_returns_same_pixels(tmp_path: Path) -> None:
    index = scan_folder(make_flat(tmp_path, [3, 3]))
    prep = Preprocessing(image_size=300, channels=3)  # 270 KB per image: 3 fit in 1 MiB
    full = load_store(index, prep, budget_mb=64)
    partial = load_store(index, prep, budget_mb=1)
    nothing = load_store(index, prep, budget_mb=0)
    assert (full.n_cached, partial.n_cached, nothing.n_cached) == (6, 3, 0)
    everything = torch.arange(6)
    assert torch.equal(partial.get(everything), full.get(everything))
    assert torch.equal(nothing.get(torch.tensor([5, 0, 5])), full.get(torch.tensor([5, 0, 5])))


def test_rotated_classes_with_partial_cache_match(tmp_path: Path) -> None:
    index = scan_folder(make_flat(tmp_path, [2, 2]))
    prep = Preprocessing(image_size=300, channels=1)  # 90 KB per image: 11 of 16 fit in 1 MiB
    full, _ = load_store(index, prep, budget_mb=64).with_rotated_classes([0, 1])
    partial, new_ids = load_store(index, prep, budget_mb=1).with_rotated_classes([0, 1])
    assert new_ids == [2, 3, 4, 5, 6, 7]
    assert full.n_cached == 16 and partial.n_cached == 11
    assert torch.equal(partial.get(torch.arange(16)), full.get(torch.arange(16)))


# -- load_data ------------------------------------------------------------------------------------

def test_load_data_group_split_and_samplers(tmp_path: Path) -> None:
    data = load_data(group_cfg(make_nested(tmp_path)))
    assert isinstance(data, FewShotData)
    assert data.index.layout == "nested"
    assert data.split.val == ["group1/char0", "group1/char1", "group1/char2"]
    assert {n.split("/")[0] for n in data.split.train} == {"group0", "group3"}
    assert data.class_names("test") == data.split.test
    task = data.episodes("train", n_way=3, n_shot=1, n_query=2, seed=0).sample()
    assert task.support_x.shape == (3, 1, 8, 8)
    assert set(task.class_ids.tolist()) <= set(data.class_ids("train"))
    batch = data.class_batches(batch_size=4, seed=0).sample()
    assert batch.x.shape == (4, 1, 8, 8) and int(batch.y.max()) < len(data.class_ids("train"))
    assert data.warnings == []


def test_progress_is_forwarded(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    load_data(group_cfg(make_nested(tmp_path, n_images=2)), progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (24, 24)


def test_rotation_augmentation_adds_three_rotations_of_train_classes_only(tmp_path: Path) -> None:
    root = make_nested(tmp_path)
    plain = load_data(group_cfg(root))
    rotated = load_data(group_cfg(root, augment_rotations=True))
    n_train = len(plain.class_ids("train"))
    assert len(rotated.class_ids("train")) == 4 * n_train
    assert rotated.class_ids("val") == plain.class_ids("val")
    assert rotated.class_ids("test") == plain.class_ids("test")
    assert rotated.split == plain.split  # split.json keeps the base class names
    names = rotated.class_names("train")
    base = plain.split.train[0]
    assert {f"{base}@rot90", f"{base}@rot180", f"{base}@rot270"} <= set(names)
    assert not any("@rot" in n for n in rotated.class_names("val") + rotated.class_names("test"))
    store = rotated.store
    source = store.indices_by_class()[store.class_names.index(base)]
    for turns, suffix in ((1, "@rot90"), (2, "@rot180"), (3, "@rot270")):
        copies = store.indices_by_class()[store.class_names.index(base + suffix)]
        assert torch.equal(store.get(copies), torch.rot90(store.get(source), turns, dims=(2, 3)))
    sampler = rotated.episodes("train", n_way=5, n_shot=1, n_query=1, seed=0)
    assert sampler.n_classes == 4 * n_train


def test_given_split_is_reused(tmp_path: Path) -> None:
    root = make_flat(tmp_path, [4] * 6)
    first = load_data(DataConfig(root=str(root), image_size=8, train_ratio=0.5, val_ratio=0.25))
    reused = load_data(DataConfig(root=str(root), image_size=8, split_seed=99), split=first.split)
    assert reused.split == first.split
    assert reused.class_ids("test") == first.class_ids("test")


def test_split_with_missing_class_is_a_dataset_error(tmp_path: Path) -> None:
    root = make_flat(tmp_path, [4] * 4)
    split = ClassSplit(train=["class00", "class01"], val=["class02"], test=["gone"])
    with pytest.raises(DatasetError, match="gone") as info:
        load_data(DataConfig(root=str(root), image_size=8), split=split)
    assert str(root) in str(info.value)


def test_left_out_classes_reach_warnings(tmp_path: Path) -> None:
    root = make_nested(tmp_path)
    for path in sorted((root / "group0" / "char0").iterdir())[2:]:
        path.unlink()
    data = load_data(group_cfg(root))
    sampler = data.episodes("train", n_way=2, n_shot=1, n_query=3, seed=0)
    assert sampler.left_out == ["group0/char0"]
    assert any("left out 1 class(es)" in w and "group0/char0 (2)" in w for w in data.warnings)
    data.episodes("train", n_way=2, n_shot=1, n_query=3, seed=1)
    assert sum("left out" in w for w in data.warnings) == 1  # not repeated


def test_sampler_errors_name_the_part(tmp_path: Path) -> None:
    data = load_data(group_cfg(make_nested(tmp_path)))
    with pytest.raises(ConfigError, match="task.n_way=5.*val part has only 3"):
        data.episodes("val", n_way=5, n_shot=1, n_query=1, seed=0)


def test_load_data_reports_skipped_files_and_budget(tmp_path: Path) -> None:
    root = make_flat(tmp_path, [4] * 5)
    (root / "class00" / "broken.png").write_text("x")
    data = load_data(DataConfig(root=str(root), image_size=300, channels=3, cache_budget_mb=1,
                                train_ratio=0.6, val_ratio=0.2))
    assert any("broken.png" in w for w in data.warnings)
    assert any("data.cache_budget_mb=1" in w for w in data.warnings)


def test_missing_root_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_data(DataConfig(root=str(tmp_path / "missing")))


def test_resolve_root_builtin_glyphs_uses_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("engine.data.glyphs")
    fake.ensure_glyph_dataset = lambda seed=0, cache_dir=None: tmp_path / "glyphs"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "engine.data.glyphs", fake)
    assert resolve_root("builtin:glyphs") == tmp_path / "glyphs"
    assert resolve_root("~/x") == Path.home() / "x"
    with pytest.raises(DatasetError, match="data.root"):
        resolve_root("  ")


# -- inspect -------------------------------------------------------------------------------------

def test_inspect_folder_reports_counts_groups_and_bad_files(tmp_path: Path) -> None:
    root = make_nested(tmp_path, n_groups=2, n_classes=2, n_images=3)
    (root / "group1" / "char0" / "bad.png").write_text("nope")
    (root / "group1" / "char0" / "notes.txt").write_text("nope")
    report = inspect_folder(root)
    assert report["root"] == str(root) and report["layout"] == "nested"
    assert report["n_classes"] == 4 and report["n_images"] == 12
    assert report["groups"] == [{"name": "group0", "n_classes": 2, "n_images": 6},
                                {"name": "group1", "n_classes": 2, "n_images": 6}]
    assert report["classes"][0] == {"name": "group0/char0", "group": "group0", "n_images": 3}
    skipped = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"bad.png", "notes.txt"}
    text = format_inspection(report)
    assert "nested" in text and "group1/char1" in text and "bad.png" in text and "Images: 12" in text


def test_inspect_folder_error_names_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        inspect_folder(tmp_path)
    assert str(tmp_path) in str(info.value)


# -- real data -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_omniglot_background_small1(tmp_path: Path) -> None:
    archive = OMNIGLOT_DIR / "images_background_small1.zip"
    if not archive.is_file():
        pytest.skip(f"Omniglot archive not found at {archive}")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path)
    folders = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("__")]
    root = folders[0] if len(folders) == 1 else tmp_path
    report = inspect_folder(root)
    assert report["layout"] == "nested"
    assert len(report["groups"]) == 5
    assert report["n_classes"] == 136 and report["n_images"] == 2720
    assert report["skipped"] == []
    data = load_data(DataConfig(root=str(root), split_mode="group", val_groups=[report["groups"][0]["name"]],
                                test_groups=[report["groups"][1]["name"]], augment_rotations=True))
    task = data.episodes("train", n_way=5, n_shot=1, n_query=15, seed=0, augment=True).sample()
    assert task.support_x.shape == (5, 1, 28, 28) and task.query_x.shape == (75, 1, 28, 28)
