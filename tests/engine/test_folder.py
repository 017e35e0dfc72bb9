"""scan_folder: both layouts, sorting, and every kind of bad entry reported with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data.folder import IMAGE_EXTENSIONS, scan_folder
from engine.errors import DatasetError


def write_image(path: Path, size: int = 8, mode: str = "L", value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 30)
    Image.new(mode, (size, size), color).save(path)
    return path


def make_flat(root: Path, classes: dict[str, int], ext: str = ".png") -> Path:
    for name, count in classes.items():
        for i in range(count):
            write_image(root / name / f"img{i:02d}{ext}", value=10 * i)
    return root


def make_nested(root: Path, groups: dict[str, dict[str, int]]) -> Path:
    for group, classes in groups.items():
        make_flat(root / group, classes)
    return root


def reasons(index) -> dict[str, str]:
    return {s.path.name: s.reason for s in index.skipped}


def test_flat_layout_classes_sorted_with_counts(tmp_path: Path) -> None:
    make_flat(tmp_path, {"zebra": 2, "apple": 3, "mango": 1})
    index = scan_folder(tmp_path)
    assert index.layout == "flat"
    assert index.class_names() == ["apple", "mango", "zebra"]
    assert [len(c.files) for c in index.classes] == [3, 1, 2]
    assert index.n_images == 6
    assert index.groups() == []
    assert all(c.group is None for c in index.classes)
    assert index.classes[0].files == sorted(index.classes[0].files)


def test_nested_layout_names_are_group_slash_class(tmp_path: Path) -> None:
    make_nested(tmp_path, {"Greek": {"alpha": 2, "beta": 2}, "Latin": {"a": 3}})
    index = scan_folder(tmp_path)
    assert index.layout == "nested"
    assert index.class_names() == ["Greek/alpha", "Greek/beta", "Latin/a"]
    assert index.groups() == ["Greek", "Latin"]
    assert [c.group for c in index.classes] == ["Greek", "Greek", "Latin"]
    assert index.n_images == 7


def test_all_supported_extensions_are_listed(tmp_path: Path) -> None:
    for ext in IMAGE_EXTENSIONS | {".PNG", ".JPG"}:
        write_image(tmp_path / "cls" / f"x{ext.strip('.')}{ext}")
    index = scan_folder(tmp_path)
    assert len(index.classes[0].files) == len(IMAGE_EXTENSIONS) + 2
    assert index.skipped == []


def test_scan_is_deterministic(tmp_path: Path) -> None:
    make_nested(tmp_path, {"b": {"y": 2, "x": 1}, "a": {"z": 2}})
    first, second = scan_folder(tmp_path), scan_folder(tmp_path)
    assert first.class_names() == second.class_names() == ["a/z", "b/x", "b/y"]
    assert [c.files for c in first.classes] == [c.files for c in second.classes]


def test_non_image_and_empty_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    make_flat(tmp_path, {"cls": 2})
    (tmp_path / "cls" / "notes.txt").write_text("hello")
    (tmp_path / "cls" / "empty.png").write_bytes(b"")
    (tmp_path / "cls" / "README").write_text("x")
    index = scan_folder(tmp_path)
    assert len(index.classes[0].files) == 2
    found = reasons(index)
    assert "not an image" in found["notes.txt"] and ".txt" in found["notes.txt"]
    assert "empty" in found["empty.png"]
    assert "not an image" in found["README"]


def test_hidden_files_are_ignored_silently(tmp_path: Path) -> None:
    make_flat(tmp_path, {"cls": 1})
    (tmp_path / "cls" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".hidden").mkdir()
    index = scan_folder(tmp_path)
    assert index.skipped == [] and index.class_names() == ["cls"]


def test_symlink_loops_are_skipped_and_do_not_hang(tmp_path: Path) -> None:
    make_flat(tmp_path, {"a": 2, "b": 2})
    os.symlink(tmp_path, tmp_path / "loop_to_root")
    os.symlink(tmp_path / "a", tmp_path / "a" / "self")
    os.symlink(tmp_path / "b" / "ring", tmp_path / "b" / "ring")  # ELOOP on stat
    os.symlink(tmp_path / "missing.png", tmp_path / "a" / "dangling.png")
    index = scan_folder(tmp_path)
    assert index.layout == "flat"
    assert index.class_names() == ["a", "b"]
    assert index.n_images == 4
    found = reasons(index)
    assert "symlink loop" in found["loop_to_root"]
    assert "ring" in found and "loop" in found["ring"]
    assert "broken symlink" in found["dangling.png"]
    assert "self" in found


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_file_and_folder_are_skipped(tmp_path: Path) -> None:
    make_flat(tmp_path, {"good": 2, "locked": 2})
    secret = write_image(tmp_path / "good" / "secret.png")
    secret.chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        index = scan_folder(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)
        secret.chmod(0o644)
    assert index.class_names() == ["good"]
    found = reasons(index)
    assert "permission" in found["secret.png"]
    assert "permission" in found["locked"]


def test_permission_errors_are_reported_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_flat(tmp_path, {"good": 2, "locked": 2})
    write_image(tmp_path / "good" / "secret.png")
    real_scandir, real_access = os.scandir, os.access

    def scandir(path):  # type: ignore[no-untyped-def]
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def access(path, mode):  # type: ignore[no-untyped-def]
        return False if Path(path).name == "secret.png" else real_access(path, mode)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "access", access)
    index = scan_folder(tmp_path)
    monkeypatch.undo()
    assert index.class_names() == ["good"] and index.n_images == 2
    found = reasons(index)
    assert "permission" in found["secret.png"]
    assert "permission" in found["locked"]


def test_wrong_depth_entries_are_reported(tmp_path: Path) -> None:
    make_nested(tmp_path, {"G": {"c1": 2, "c2": 2}, "H": {"c3": 1}})
    write_image(tmp_path / "G" / "stray.png")
    write_image(tmp_path / "top.png")
    (tmp_path / "README.md").write_text("metadata next to the groups is not reported")
    (tmp_path / "COMPLETE").write_text("{}")
    write_image(tmp_path / "H" / "c3" / "deeper" / "x.png")
    (tmp_path / "G" / "empty_class").mkdir()
    index = scan_folder(tmp_path)
    assert index.layout == "nested"
    assert index.class_names() == ["G/c1", "G/c2", "H/c3"]
    found = reasons(index)
    assert "group folder" in found["stray.png"]
    assert "outside a class folder" in found["top.png"]
    assert "too deep" in found["deeper"]
    assert "no image files" in found["empty_class"]
    assert "README.md" not in found and "COMPLETE" not in found


def test_flat_layout_ignores_subfolders_with_reason(tmp_path: Path) -> None:
    make_flat(tmp_path, {"a": 2, "b": 2})
    write_image(tmp_path / "a" / "sub" / "x.png")
    index = scan_folder(tmp_path)
    assert index.layout == "flat" and index.n_images == 4
    assert "flat layout" in reasons(index)["sub"]


def test_missing_folder_error_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match="does not exist") as info:
        scan_folder(missing)
    assert str(missing) in str(info.value)


def test_file_instead_of_folder_is_an_error(tmp_path: Path) -> None:
    path = write_image(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="not a folder") as info:
        scan_folder(path)
    assert str(path) in str(info.value)


def test_empty_folder_error_names_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="empty") as info:
        scan_folder(empty)
    assert str(empty) in str(info.value)


def test_folder_without_image_classes_error_names_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    write_image(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="no image classes") as info:
        scan_folder(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_grayscale_and_colour_files_are_both_indexed(tmp_path: Path) -> None:
    write_image(tmp_path / "c" / "gray.png", mode="L")
    write_image(tmp_path / "c" / "rgb.jpg", mode="RGB")
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), "RGBA").save(tmp_path / "c" / "alpha.webp")
    index = scan_folder(str(tmp_path))
    assert [p.name for p in index.classes[0].files] == ["alpha.webp", "gray.png", "rgb.jpg"]
