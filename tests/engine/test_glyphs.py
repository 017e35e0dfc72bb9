"""The built-in procedurally generated glyph data set."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import glyphs
from engine.data.glyphs import (GlyphSet, default_cache_dir, encode_gray_pngs, ensure_glyph_dataset,
                                generate_glyph_images)
from engine.errors import ConfigError, DatasetError

SMALL = dict(n_alphabets=3, chars_per_alphabet=4, n_variants=3)


@pytest.fixture(scope="module")
def full_set() -> GlyphSet:
    return generate_glyph_images(seed=0)


@pytest.fixture
def small_generation(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make ensure_glyph_dataset generate a tiny set; returns a list counting the generations."""
    calls: list[int] = []
    real = glyphs.generate_glyph_images

    def tiny(seed: int = 0, **_: int) -> GlyphSet:
        calls.append(seed)
        return real(seed, **SMALL)

    monkeypatch.setattr(glyphs, "generate_glyph_images", tiny)
    return calls


def _correlations(features: np.ndarray, a: int, b: int) -> float:
    """Mean correlation between the variants of class a and those of class b (excluding self-pairs)."""
    product = features[a] @ features[b].T
    if a == b:
        return float(product[~np.eye(len(product), dtype=bool)].mean())
    return float(product.mean())


# ----------------------------------------------------------------------------- in memory

def test_counts_and_names(full_set: GlyphSet) -> None:
    n_classes, n_variants, height, width = full_set.images.shape
    assert n_classes >= 600 and n_variants == 20 and (height, width) == (28, 28)
    assert full_set.images.dtype == np.uint8
    assert len(full_set.alphabet_names) >= 20
    assert len(set(full_set.alphabet_names)) == len(full_set.alphabet_names)
    assert len(full_set.character_names) == n_classes == len(full_set.class_alphabet)
    assert len(set(full_set.class_names)) == n_classes
    assert all(name.startswith("Alphabet_") for name in full_set.alphabet_names)
    assert np.bincount(full_set.class_alphabet).min() == 26


def test_image_statistics(full_set: GlyphSet) -> None:
    ink = 1.0 - full_set.images.astype(np.float32) / 255.0      # black ink on white
    fraction = ink.mean(axis=(2, 3))
    assert fraction.min() > 0.03 and fraction.max() < 0.40
    corners = full_set.images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.median(corners) == 255                            # white background
    assert full_set.images.min() == 0                           # solid black strokes exist
    # anti-aliased: intermediate grey levels occur along the strokes
    grey = (full_set.images > 20) & (full_set.images < 235)
    assert grey.mean() > 0.02


def test_variants_closer_than_other_characters_of_the_alphabet(full_set: GlyphSet) -> None:
    ink = 1.0 - full_set.images.astype(np.float64) / 255.0
    features = ink.reshape(ink.shape[0], ink.shape[1], -1)
    features = features - features.mean(axis=2, keepdims=True)
    features /= np.linalg.norm(features, axis=2, keepdims=True)
    within, between = [], []
    per_alphabet = int(np.sum(full_set.class_alphabet == 0))
    for alphabet in range(len(full_set.alphabet_names)):
        classes = range(alphabet * per_alphabet, alphabet * per_alphabet + 6)
        within.extend(_correlations(features, c, c) for c in classes)
        between.extend(_correlations(features, a, b) for a in classes for b in classes if a != b)
    assert np.mean(within) > np.mean(between) + 0.05
    # but variants are not copies: real writer jitter
    assert np.mean(within) < 0.8


def test_deterministic_in_seed() -> None:
    first = generate_glyph_images(seed=5, **SMALL)
    second = generate_glyph_images(seed=5, **SMALL)
    other = generate_glyph_images(seed=6, **SMALL)
    assert np.array_equal(first.images, second.images)
    assert first.alphabet_names == second.alphabet_names
    assert not np.array_equal(first.images, other.images)
    assert first.alphabet_names != other.alphabet_names


def test_alphabets_do_not_depend_on_how_many(full_set: GlyphSet) -> None:
    fewer = generate_glyph_images(seed=0, n_alphabets=2)
    assert np.array_equal(fewer.images, full_set.images[:fewer.images.shape[0]])
    assert fewer.alphabet_names == full_set.alphabet_names[:2]


def test_other_image_size() -> None:
    images = generate_glyph_images(seed=0, n_alphabets=1, chars_per_alphabet=2, n_variants=2,
                                   image_size=40).images
    assert images.shape == (2, 2, 40, 40)


def test_unpacks_as_tuple() -> None:
    images, alphabets, names = generate_glyph_images(seed=0, **SMALL)
    assert images.shape[:2] == (12, 3) and len(alphabets) == 3 and len(names) == 12


@pytest.mark.parametrize("kwargs, field", [({"seed": -1}, "seed"), ({"n_variants": 0}, "n_variants"),
                                           ({"n_alphabets": 2.5}, "n_alphabets"),
                                           ({"image_size": 4}, "image_size")])
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        generate_glyph_images(**kwargs)


def test_png_encoder_round_trips() -> None:
    images = generate_glyph_images(seed=1, **SMALL).images.reshape(-1, 28, 28)
    for image, blob in zip(images, encode_gray_pngs(images)):
        decoded = Image.open(io.BytesIO(blob))
        assert decoded.mode == "L" and decoded.size == (28, 28)
        assert np.array_equal(np.asarray(decoded), image)


# ----------------------------------------------------------------------------- cache folder

def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("META_STUDIO_CACHE", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("META_STUDIO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "meta-studio"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "meta-studio"


def test_full_dataset_layout(tmp_path: Path, full_set: GlyphSet, monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[dict] = []

    def already_generated(seed: int = 0, **kwargs: int) -> GlyphSet:   # saves generating it twice
        requests.append({"seed": seed, **kwargs})
        return full_set

    monkeypatch.setattr(glyphs, "generate_glyph_images", already_generated)
    root = ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert requests == [{"seed": 0}]                                    # the default sizes
    assert root == tmp_path / "glyphs-v1-seed0"
    alphabets = sorted(p for p in root.iterdir() if p.is_dir())
    assert [p.name for p in alphabets] == full_set.alphabet_names
    characters = [c for a in alphabets for c in sorted(a.iterdir())]
    assert len(characters) == full_set.images.shape[0] >= 600
    assert all(sorted(f.name for f in c.iterdir()) == [f"{v:02d}.png" for v in range(1, 21)] for c in characters)
    first = root / full_set.alphabet_names[0] / "character01" / "01.png"
    assert np.array_equal(np.asarray(Image.open(first)), full_set.images[0, 0])
    manifest = json.loads((root / "COMPLETE").read_text())
    assert manifest["n_classes"] == len(characters) and manifest["n_images"] == 20 * len(characters)
    assert [p.name for p in tmp_path.iterdir()] == ["glyphs-v1-seed0"]   # no temporary folders left


def test_reuse_does_not_regenerate(tmp_path: Path, small_generation: list[int]) -> None:
    root = ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    some_png = next(root.glob("*/*/01.png"))
    stamps = (some_png.stat().st_mtime_ns, (root / "COMPLETE").stat().st_mtime_ns)
    time.sleep(0.02)
    assert ensure_glyph_dataset(seed=0, cache_dir=tmp_path) == root
    assert (some_png.stat().st_mtime_ns, (root / "COMPLETE").stat().st_mtime_ns) == stamps
    assert small_generation == [0]
    assert len(list(root.glob("*/*/*.png"))) == 3 * 4 * 3


def test_default_location_uses_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   small_generation: list[int]) -> None:
    monkeypatch.setenv("META_STUDIO_CACHE", str(tmp_path / "cache"))
    assert ensure_glyph_dataset(seed=2) == tmp_path / "cache" / "glyphs-v1-seed2"


def test_leftover_temp_folder_does_not_break(tmp_path: Path, small_generation: list[int]) -> None:
    live = tmp_path / f".glyphs-v1-seed0.tmp-otherhost-{os.getpid()}-abc123"
    (live / "Alphabet_01_X" / "character01").mkdir(parents=True)
    (live / "Alphabet_01_X" / "character01" / "01.png").write_bytes(b"half")
    root = ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert (root / "COMPLETE").is_file() and len(list(root.glob("*/*/*.png"))) == 36
    assert not (root / "Alphabet_01_X").exists()


def test_stale_temp_folders_are_removed(tmp_path: Path, small_generation: list[int]) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead_pid = int(finished.stdout)
    host = glyphs.socket.gethostname()
    crashed = tmp_path / f".glyphs-v1-seed0.tmp-{host}-{dead_pid}-deadbeef"
    old = tmp_path / ".glyphs-v1-seed0.tmp-farhost-12-oldold"
    running_elsewhere = tmp_path / ".glyphs-v1-seed0.tmp-farhost-13-fresh"
    for folder in (crashed, old, running_elsewhere):
        folder.mkdir()
    os.utime(old, (time.time() - 2 * glyphs.STALE_TEMP_S,) * 2)
    ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert not crashed.exists() and not old.exists()
    assert running_elsewhere.exists()        # may still be in use by a process on another machine


def test_crash_while_writing_leaves_nothing_half_written(tmp_path: Path, small_generation: list[int],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = glyphs._write_png_tree

    def crash(glyph_set: GlyphSet, root: Path, seed: int) -> None:
        (root / "partial").mkdir()
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(glyphs, "_write_png_tree", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []     # neither a final nor a temporary folder
    monkeypatch.setattr(glyphs, "_write_png_tree", real_write)
    root = ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert (root / "COMPLETE").is_file()


def test_incomplete_final_folder_is_replaced(tmp_path: Path, small_generation: list[int]) -> None:
    broken = tmp_path / "glyphs-v1-seed0"
    (broken / "Alphabet_01_Junk").mkdir(parents=True)
    root = ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert root == broken and (root / "COMPLETE").is_file()
    assert not (root / "Alphabet_01_Junk").exists()


def test_concurrent_writer_that_finished_first_wins(tmp_path: Path, small_generation: list[int],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = glyphs._write_png_tree

    def race(glyph_set: GlyphSet, root: Path, seed: int) -> None:
        real_write(glyph_set, root, seed)
        theirs = tmp_path / "glyphs-v1-seed0"        # another process renames its copy in first
        real_write(glyph_set, theirs, seed)
        (theirs / "THEIRS").write_text("x")

    monkeypatch.setattr(glyphs, "_write_png_tree", race)
    root = ensure_glyph_dataset(seed=0, cache_dir=tmp_path)
    assert (root / "THEIRS").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["glyphs-v1-seed0"]   # our copy was deleted


def test_unwritable_cache_names_the_folder(tmp_path: Path, small_generation: list[int]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("file in the way")
    with pytest.raises(DatasetError, match="not-a-folder"):
        ensure_glyph_dataset(seed=0, cache_dir=blocker)


def test_command_line_preview(tmp_path: Path, small_generation: list[int],
                              capsys: pytest.CaptureFixture[str]) -> None:
    preview = tmp_path / "p" / "preview.png"
    assert glyphs.main(["--preview", str(preview), "--out", str(tmp_path / "c")]) == 0
    written = np.asarray(Image.open(preview))
    size, gap = 28 * 3, 28  # zoom 3; a third of a tile between characters
    assert written.shape == (10 * (size + gap // 2), 150 + 8 * (3 * size + gap))  # 10 alphabets x 8 characters x 3
    assert written.min() == 0  # glyph ink is on the sheet
    expected = glyphs.preview_image(glyphs.generate_glyph_images(0, n_alphabets=10))  # the (small) set of seed 0
    assert np.array_equal(written, np.asarray(expected))
    assert (tmp_path / "c" / "glyphs-v1-seed0" / "COMPLETE").is_file()
    assert "glyphs-v1-seed0" in capsys.readouterr().out


def test_preview_grid_shape() -> None:
    glyph_set = generate_glyph_images(seed=0, n_alphabets=2, chars_per_alphabet=3, n_variants=2)
    sheet = glyphs.preview_image(glyph_set, n_alphabets=2, n_chars=3, n_variants=2, zoom=2)
    assert sheet.height == 2 * (56 + 56 // 3 // 2)
    assert np.asarray(sheet).min() == 0        # glyph ink is on the sheet
