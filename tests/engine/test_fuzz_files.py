"""Messy folders: whatever files a data set or an import holds, nothing crashes, every bad file is
reported by name with a reason, and the good files around it still load.

Hypothesis builds folders from a mix of good images (every mode Pillow writes: palette, 16-bit,
1-bit, CMYK, alpha, 1x1, EXIF-rotated) and bad files (empty, random bytes, truncated, decompression
bombs, folders and symlink loops named like images, unreadable files), with random Unicode names
and random extension case, and feeds them to the data set loader (scan_folder + load_store) and to
the import path of the adapt panel (Preprocessing.load_many; list_dropped + decode_files).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.data.folder import SkippedFile, scan_folder
from engine.data.images import ImageDecodeError, decode_image
from engine.data.preprocess import Preprocessing
from engine.data.store import load_store
from engine.errors import DatasetError
from engine.sessions import decode_files, list_dropped

SIZE = 12
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# -- file makers -----------------------------------------------------------------------------------------------
def _noise(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint8, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _palette_png() -> bytes:
    image = Image.fromarray(_noise((9, 7), high=4), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    image.info["transparency"] = 0
    return _encoded(image, "PNG", transparency=0)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(Image.fromarray(_noise((8, 16)), "L"), "JPEG", exif=exif.tobytes(), quality=95)


def _bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid small PNG whose header declares width x height pixels (CRC fixed up)."""
    data = bytearray(_encoded(Image.new("L", (4, 4), 0), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _truncated(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


@dataclass(frozen=True)
class Kind:
    """How to make one kind of file, its extension, and whether it must load."""

    name: str
    ext: str
    good: bool
    make: Callable[[Path, bytes, float], None]


def _bytes_maker(payload: Callable[[], bytes]) -> Callable[[Path, bytes, float], None]:
    return lambda path, _random, _fraction: path.write_bytes(payload())


def _write_random(path: Path, random_bytes: bytes, _fraction: float) -> None:
    path.write_bytes(random_bytes)


def _write_truncated(source: Callable[[], bytes]) -> Callable[[Path, bytes, float], None]:
    return lambda path, _random, fraction: path.write_bytes(_truncated(source(), fraction))


def _make_self_loop(path: Path, _random: bytes, _fraction: float) -> None:
    os.symlink(path.name, path)


def _make_dangling(path: Path, _random: bytes, _fraction: float) -> None:
    os.symlink(path.parent / "does-not-exist.png", path)


def _make_folder(path: Path, _random: bytes, _fraction: float) -> None:
    path.mkdir()


def _make_locked(path: Path, _random: bytes, _fraction: float) -> None:
    path.write_bytes(_encoded(Image.new("L", (5, 5), 3), "PNG"))  # readability is taken away by _locked()


GOOD_PNG = lambda: _encoded(Image.fromarray(_noise((20, 20)), "L"), "PNG")  # noqa: E731
GOOD_JPEG = lambda: _encoded(Image.fromarray(_noise((20, 20, 3)), "RGB"), "JPEG", quality=90)  # noqa: E731

KINDS = [
    Kind("png-gray", ".png", True, _bytes_maker(GOOD_PNG)),
    Kind("png-rgba", ".png", True, _bytes_maker(lambda: _encoded(Image.fromarray(_noise((6, 9, 4)), "RGBA"), "PNG"))),
    Kind("png-palette", ".png", True, _bytes_maker(_palette_png)),
    Kind("png-16bit", ".png", True,
         _bytes_maker(lambda: _encoded(Image.fromarray(_noise((7, 7), dtype=np.uint16, high=65536)), "PNG"))),
    Kind("png-1bit", ".png", True, _bytes_maker(lambda: _encoded(Image.new("1", (10, 3), 1), "PNG"))),
    Kind("png-1x1", ".png", True, _bytes_maker(lambda: _encoded(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"))),
    Kind("jpeg-rgb", ".jpg", True, _bytes_maker(GOOD_JPEG)),
    Kind("jpeg-cmyk", ".jpeg", True,
         _bytes_maker(lambda: _encoded(Image.new("CMYK", (8, 8), (0, 200, 10, 0)), "JPEG"))),
    Kind("jpeg-exif-rotated", ".jpg", True, _bytes_maker(_exif_rotated_jpeg)),
    Kind("jpeg-named-png", ".png", True, _bytes_maker(GOOD_JPEG)),
    Kind("bmp", ".bmp", True, _bytes_maker(lambda: _encoded(Image.new("RGB", (3, 5), (1, 2, 3)), "BMP"))),
    Kind("webp-alpha", ".webp", True, _bytes_maker(lambda: _encoded(Image.new("RGBA", (4, 4), (1, 2, 3, 4)), "WEBP"))),
    Kind("zero-bytes", ".png", False, _bytes_maker(lambda: b"")),
    Kind("random-bytes", ".jpg", False, _write_random),
    Kind("text", ".webp", False, _bytes_maker(lambda: "définitely not an image\n".encode())),
    Kind("truncated-png", ".png", False, _write_truncated(GOOD_PNG)),
    Kind("truncated-jpeg", ".jpg", False, _write_truncated(GOOD_JPEG)),
    Kind("bomb-png", ".png", False, _bytes_maker(_bomb_png)),
    Kind("symlink-loop", ".png", False, _make_self_loop),
    Kind("dangling-symlink", ".jpg", False, _make_dangling),
    Kind("folder-named-png", ".png", False, _make_folder),
    Kind("unreadable", ".png", False, _make_locked),
]
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


# -- names -----------------------------------------------------------------------------------------------------
def _valid_stem(stem: str) -> bool:
    try:
        encoded = os.fsencode(stem)
    except UnicodeError:
        return False
    return (not stem.startswith(".") and "/" not in stem and "\x00" not in stem and len(encoded) <= 120
            and stem.strip() == stem)


# any Unicode (letters, marks, emoji, spaces, controls, right-to-left ...) plus undecodable bytes (U+DC80..U+DCFF)
stems = st.text(st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                          st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)),
                min_size=1, max_size=16).filter(_valid_stem)
ext_case = st.sampled_from([str.lower, str.upper, str.title])


@st.composite
def entries(draw: st.DrawFn) -> tuple[str, str, bytes, float]:
    """(kind name, file name, random bytes, truncation fraction) of one file."""
    kind = draw(st.sampled_from([k.name for k in KINDS]))
    name = draw(stems) + draw(ext_case)(KIND_BY_NAME[kind].ext)
    return kind, name, draw(st.binary(min_size=1, max_size=300)), draw(st.floats(0.05, 0.9))


folders = st.lists(st.lists(entries(), min_size=1, max_size=6, unique_by=lambda e: e[1]), min_size=1, max_size=3)


# -- helpers ---------------------------------------------------------------------------------------------------
def _materialise(root: Path, classes: list[list[tuple[str, str, bytes, float]]]) -> tuple[list[Path], list[Path]]:
    """Write the class folders; returns (good files, bad files)."""
    good: list[Path] = []
    bad: list[Path] = []
    for c, files in enumerate(classes):
        folder = root / f"class-{c}"
        folder.mkdir()
        for kind_name, file_name, random_bytes, fraction in files:
            kind = KIND_BY_NAME[kind_name]
            path = folder / file_name
            kind.make(path, random_bytes, fraction)
            (good if kind.good else bad).append(path)
    return good, bad


class _Locked:
    """Simulates files that cannot be read (chmod 0 means nothing to root): os.access and opening fail."""

    def __init__(self, locked: set[Path]) -> None:
        self.locked = {str(p) for p in locked}
        self._access, self._open = os.access, Image.open

    def access(self, path: object, mode: int, *args: object, **kwargs: object) -> bool:
        return False if str(path) in self.locked else self._access(path, mode, *args, **kwargs)

    def open(self, fp: object, *args: object, **kwargs: object) -> Image.Image:
        if str(fp) in self.locked:
            raise PermissionError(13, "Permission denied", str(fp))
        return self._open(fp, *args, **kwargs)

    def __enter__(self) -> "_Locked":
        self._patches = [mock.patch.object(os, "access", self.access), mock.patch.object(Image, "open", self.open)]
        for patch in self._patches:
            patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for patch in reversed(self._patches):
            patch.stop()


def _locked_paths(classes: list[list[tuple[str, str, bytes, float]]], root: Path) -> set[Path]:
    return {root / f"class-{c}" / name for c, files in enumerate(classes) for kind, name, *_ in files
            if kind == "unreadable"}


def _assert_reasons(skipped: list[SkippedFile]) -> None:
    for item in skipped:
        assert isinstance(item.reason, str) and item.reason.strip(), item


# -- the fuzz tests --------------------------------------------------------------------------------------------
@FUZZ
@given(classes=folders, channels=st.sampled_from([1, 3]))
def test_data_set_loader_keeps_good_files_and_names_every_bad_one(classes: list, channels: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        good, bad = _materialise(root, classes)
        with _Locked(_locked_paths(classes, root)):
            try:
                index = scan_folder(root)
            except DatasetError as error:  # only when no class folder holds a single candidate image
                assert str(root) in str(error) and "no image classes" in str(error)
                assert not good
                return
            store = load_store(index, Preprocessing(image_size=SIZE, channels=channels), budget_mb=1)
        assert sorted(map(str, store.paths)) == sorted(map(str, good))
        reported = {str(item.path) for item in store.skipped}
        assert {str(p) for p in bad} <= reported, "a bad file was not reported by name"
        _assert_reasons(store.skipped)
        if store.paths:
            images = store.get(torch.arange(len(store)))
            assert images.shape == (len(store), channels, SIZE, SIZE) and images.dtype == torch.uint8
        for c, files in enumerate(classes):  # a class with no usable image is itself reported
            if not any(KIND_BY_NAME[kind].good for kind, *_ in files):
                assert str(root / f"class-{c}") in reported
                assert f"class-{c}" not in store.class_names


@FUZZ
@given(classes=folders, channels=st.sampled_from([1, 3]))
def test_import_path_load_many_keeps_good_files_and_names_every_bad_one(classes: list, channels: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        good, bad = _materialise(root, classes)
        paths = sorted(good + bad, key=str)
        with _Locked(_locked_paths(classes, root)):
            images, loaded, skipped = Preprocessing(image_size=SIZE, channels=channels).load_many(paths)
    good_set = set(good)
    assert [str(p) for p in loaded] == [str(p) for p in paths if p in good_set]  # order kept
    assert sorted(str(s.path) for s in skipped) == sorted(map(str, bad))
    _assert_reasons(skipped)
    assert images.shape == (len(good), channels, SIZE, SIZE) and images.dtype == torch.float32
    assert bool(torch.isfinite(images).all())


@FUZZ
@given(classes=folders)
def test_adapt_panel_drop_of_a_messy_folder(classes: list) -> None:
    """The Adapt view's drop path (engine.sessions: list, then decode) on a messy folder."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "drop"
        root.mkdir()
        good, bad = _materialise(root, classes)
        bad_files = {str(p) for p in bad if p.is_symlink() or not p.is_dir()}  # a real folder is walked, not a file
        with _Locked(_locked_paths(classes, root)):
            listing = list_dropped([root])
            result = decode_files(listing.files, Preprocessing(image_size=SIZE, channels=1))
    assert sorted(str(e.source) for e in result.examples) == sorted(map(str, good))
    reported = {str(s.path) for s in listing.skipped + result.skipped}
    assert bad_files <= reported, "a bad file of the drop was not reported by name"
    _assert_reasons(listing.skipped + result.skipped)


# -- targeted checks -------------------------------------------------------------------------------------------
ORIENTATION_UNDO = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                    6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("fmt,ext", [("PNG", ".png"), ("JPEG", ".jpg")])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotation_is_applied(tmp_path: Path, orientation: int, fmt: str, ext: str) -> None:
    # an upright picture: black left column, white elsewhere, a grey top row (not symmetric in any way)
    upright = np.full((16, 24), 255, np.uint8)
    upright[:, :8] = 0
    upright[:4, 8:] = 128
    picture = Image.fromarray(upright, "L")
    stored = picture.transpose(ORIENTATION_UNDO[orientation]) if orientation in ORIENTATION_UNDO else picture
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / f"photo{ext}", fmt, exif=exif.tobytes(), **({"quality": 100} if fmt == "JPEG" else {}))
    picture.save(tmp_path / f"reference{ext}", fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    got = decode_image(tmp_path / f"photo{ext}", SIZE, 1).float()
    expected = decode_image(tmp_path / f"reference{ext}", SIZE, 1).float()
    assert (got - expected).abs().mean() < 6  # what the camera meant, not what the sensor stored


def test_bad_file_errors_name_the_file_and_say_why(tmp_path: Path) -> None:
    cases = {"empty.png": ("zero-bytes", "empty"), "loop.png": ("symlink-loop", "symlink loop"),
             "gone.jpg": ("dangling-symlink", "not found"), "folder.png": ("folder-named-png", "folder"),
             "bomb.png": ("bomb-png", "too large"), "cut.jpg": ("truncated-jpeg", "truncated|corrupt"),
             "noise.png": ("random-bytes", "not an image")}
    for name, (kind, reason) in cases.items():
        KIND_BY_NAME[kind].make(tmp_path / name, b"\x00garbage" * 9, 0.5)
        with pytest.raises(ImageDecodeError, match=reason) as info:
            decode_image(tmp_path / name, SIZE, 3)
        assert str(tmp_path / name) in str(info.value)


def test_named_pipe_with_an_image_name_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        decode_image(fifo, SIZE, 1)
    _, good, skipped = Preprocessing(image_size=SIZE).load_many([fifo])
    assert good == [] and [s.path for s in skipped] == [fifo]
