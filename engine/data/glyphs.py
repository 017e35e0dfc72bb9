"""The built-in glyph data set: handwritten-looking characters of invented alphabets.

Nothing is downloaded. Every alphabet gets a *style* (a small vocabulary of
stroke shapes, curvy or angular strokes, a stroke-count range, a slant, a
tendency to symmetry, to a top bar, to diacritic dots); every character of the
alphabet is built from 1-4 strokes of that vocabulary, so characters of one
alphabet look related. Each character is then "written" by ``n_variants``
writers, each with their own jitter: a global affine distortion, noise on the
stroke control points, a smooth elastic warp, pen width, and the occasional
short or overshooting stroke. Strokes are rendered black on white (like
Omniglot) at three times the target size and box-downsampled for anti-aliasing.

The default set has 24 alphabets x 26 characters x 20 variants of 28x28 pixels
and is deterministic in the seed. :func:`ensure_glyph_dataset` writes it once
as nested PNG folders ``<cache>/glyphs-v1-seed<seed>/<Alphabet>/<character>/<NN>.png``.

The clean characters come from :mod:`engine.data.glyph_alphabets`, their hand-written
variants from :mod:`engine.data.glyph_writers`; this module assembles the set, writes the
cache folder and draws the preview grid.

Run ``python -m engine.data.glyphs --preview docs/glyphs.png`` for a preview grid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from engine.data.glyph_alphabets import alphabet_name, make_alphabet, make_style
from engine.data.glyph_writers import write_variants
from engine.errors import ConfigError, DatasetError
from engine.io import process_exists

FORMAT_VERSION = 1
MARKER_NAME = "COMPLETE"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STALE_TEMP_S = 3600.0    # temporary folders older than this are left-overs of a crash


@dataclass
class GlyphSet:
    """Rendered glyphs: ``images`` uint8 [n_classes, n_variants, H, W], 255 = white background.

    ``alphabet_names[class_alphabet[c]]`` is the alphabet of class ``c`` and
    ``character_names[c]`` its character folder name (``character01`` ...).
    Unpacks as ``images, alphabet_names, character_names`` for tuple-style callers.
    """

    images: np.ndarray
    alphabet_names: list[str]
    character_names: list[str]
    class_alphabet: np.ndarray  # [n_classes] int64 index into alphabet_names

    @property
    def class_names(self) -> list[str]:
        """Unique class names ``"<alphabet>/<character>"`` as in the nested folder layout."""
        return [f"{self.alphabet_names[a]}/{c}" for a, c in zip(self.class_alphabet, self.character_names)]

    def __iter__(self) -> Iterator[object]:
        return iter((self.images, self.alphabet_names, self.character_names))


# ----------------------------------------------------------------------------- the data set

def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"glyphs: {name} must be a positive integer, got {value!r}")


def generate_glyph_images(seed: int = 0, n_alphabets: int = 24, chars_per_alphabet: int = 26,
                          n_variants: int = 20, image_size: int = 28) -> GlyphSet:
    """Generate the glyph set in memory: images uint8 [n_alphabets * chars_per_alphabet, n_variants, H, W].

    Deterministic in ``seed``; alphabet ``i`` does not depend on ``n_alphabets``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"glyphs: seed must be a non-negative integer, got {seed!r}")
    _check_counts(n_alphabets=n_alphabets, chars_per_alphabet=chars_per_alphabet, n_variants=n_variants)
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 256:
        raise ConfigError(f"glyphs: image_size must be an integer in 8..256, got {image_size!r}")
    names_rng = np.random.default_rng([seed, 0])
    taken: set[str] = set()
    alphabet_names: list[str] = []
    n_classes = n_alphabets * chars_per_alphabet
    images = np.empty((n_classes, n_variants, image_size, image_size), dtype=np.uint8)
    for a in range(n_alphabets):
        alphabet_names.append(f"Alphabet_{a + 1:02d}_{alphabet_name(names_rng, taken)}")
        style_rng, writer_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1, a]).spawn(2))
        style = make_style(alphabet_names[-1], style_rng)
        for c, strokes in enumerate(make_alphabet(style, chars_per_alphabet, style_rng)):
            images[a * chars_per_alphabet + c] = write_variants(strokes, n_variants, writer_rng, style.slant,
                                                                image_size)
    character_names = [f"character{c + 1:02d}" for _ in range(n_alphabets) for c in range(chars_per_alphabet)]
    class_alphabet = np.repeat(np.arange(n_alphabets, dtype=np.int64), chars_per_alphabet)
    return GlyphSet(images, alphabet_names, character_names, class_alphabet)


def default_cache_dir() -> Path:
    """$META_STUDIO_CACHE, else $XDG_CACHE_HOME/meta-studio, else ~/.cache/meta-studio."""
    if os.environ.get("META_STUDIO_CACHE"):
        return Path(os.environ["META_STUDIO_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "meta-studio"
    return Path.home() / ".cache" / "meta-studio"


def dataset_folder_name(seed: int) -> str:
    return f"glyphs-v{FORMAT_VERSION}-seed{seed}"


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a completely written glyph folder, or None if it is absent or incomplete."""
    try:
        manifest = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("version") != FORMAT_VERSION:
        return None
    return manifest


def ensure_glyph_dataset(seed: int = 0, cache_dir: Path | None = None) -> Path:
    """Return ``<cache>/glyphs-v1-seed<seed>/``, generating it first if it is not complete.

    The folder is nested ``<Alphabet>/<character>/<NN>.png``. It is written in a
    temporary sibling folder and renamed into place, so a crash never leaves a
    half-written set; if another process finished first, its folder is used.
    Raises DatasetError naming the cache folder when it cannot be written.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / dataset_folder_name(seed)
    if read_manifest(final) is not None:
        return final
    glyphs = generate_glyph_images(seed)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(cache, final.name)
        temp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final.name), dir=cache))
    except OSError as error:
        raise DatasetError(f"{cache}: cannot create the glyph cache folder ({error.strerror or error})") from error
    try:
        _write_png_tree(glyphs, temp, seed)
        _move_into_place(temp, final)
    except OSError as error:
        raise DatasetError(f"{final}: cannot write the glyph data set ({error.strerror or error})") from error
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return final


def _temp_prefix(final_name: str) -> str:
    return f".{final_name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _remove_stale_temps(cache: Path, final_name: str) -> None:
    """Delete temporary folders left by crashed writers (dead process on this host, or old)."""
    pattern = re.compile(rf"^\.{re.escape(final_name)}\.tmp-(?P<host>.+)-(?P<pid>\d+)-[^-]+$")
    for entry in cache.iterdir():
        match = pattern.match(entry.name)
        if not match:
            continue
        try:
            old = time.time() - entry.stat().st_mtime > STALE_TEMP_S
        except OSError:
            continue
        same_host_dead = match["host"] == socket.gethostname() and not process_exists(int(match["pid"]))
        if old or same_host_dead:
            shutil.rmtree(entry, ignore_errors=True)



def _move_into_place(temp: Path, final: Path) -> None:
    """Rename ``temp`` to ``final``; keep a complete ``final`` written meanwhile by another process."""
    for _ in range(2):
        try:
            os.rename(temp, final)
            return
        except OSError:
            if read_manifest(final) is not None:
                return                            # someone else won the race; ours is deleted by the caller
            shutil.rmtree(final, ignore_errors=True)  # an incomplete folder in the way (not ours to keep)
    os.rename(temp, final)


def _write_png_tree(glyphs: GlyphSet, root: Path, seed: int) -> None:
    """Write every image as ``root/<alphabet>/<character>/<NN>.png`` and the COMPLETE marker last."""
    n_classes, n_variants = glyphs.images.shape[:2]
    paths: list[Path] = []
    for class_name in glyphs.class_names:
        folder = root / class_name
        folder.mkdir(parents=True)
        paths.extend(folder / f"{v + 1:02d}.png" for v in range(n_variants))
    blobs = encode_gray_pngs(glyphs.images.reshape(n_classes * n_variants, *glyphs.images.shape[2:]))
    _write_files(paths, blobs)
    manifest = {
        "version": FORMAT_VERSION, "seed": seed, "n_alphabets": len(glyphs.alphabet_names),
        "n_classes": int(n_classes), "n_variants": int(n_variants), "n_images": int(n_classes * n_variants),
        "image_size": int(glyphs.images.shape[2]), "alphabets": glyphs.alphabet_names,
    }
    (root / MARKER_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_files(paths: list[Path], blobs: list[bytes]) -> None:
    for path, data in zip(paths, blobs):
        with open(path, "wb") as handle:
            handle.write(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_gray_pngs(images: np.ndarray) -> list[bytes]:
    """Encode 8-bit grayscale images uint8 [N, H, W] as PNG files (much faster than PIL for tiny images)."""
    n, height, width = images.shape
    header = PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    trailer = _png_chunk(b"IEND", b"")
    rows = np.zeros((n, height, width + 1), dtype=np.uint8)   # filter byte 0 (None) before each row
    rows[:, :, 1:] = images
    return [header + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + trailer for raw in rows]


# ----------------------------------------------------------------------------- preview

def preview_image(glyphs: GlyphSet, n_alphabets: int = 10, n_chars: int = 8, n_variants: int = 3,
                  zoom: int = 3) -> Image.Image:
    """A grid: one row per alphabet, ``n_chars`` characters each shown by ``n_variants`` writers."""
    size = glyphs.images.shape[-1] * zoom
    gap, label_w = size // 3, 150
    chars_per_alphabet = int(np.sum(glyphs.class_alphabet == 0))
    width = label_w + n_chars * (n_variants * size + gap)
    sheet = Image.new("L", (width, n_alphabets * (size + gap // 2)), 200)
    draw = ImageDraw.Draw(sheet)
    for a in range(min(n_alphabets, len(glyphs.alphabet_names))):
        top = a * (size + gap // 2)
        draw.text((6, top + size // 2 - 6), glyphs.alphabet_names[a], fill=0)
        for c in range(min(n_chars, chars_per_alphabet)):
            for v in range(min(n_variants, glyphs.images.shape[1])):
                tile = Image.fromarray(glyphs.images[a * chars_per_alphabet + c, v]).resize((size, size),
                                                                                            Image.NEAREST)
                sheet.paste(tile, (label_w + c * (n_variants * size + gap) + v * size, top))
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.data.glyphs",
                                     description="Generate the built-in glyph data set and/or a preview grid.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="cache folder to write the data set into")
    parser.add_argument("--preview", type=Path, default=None, help="write a preview grid PNG here")
    args = parser.parse_args(argv)
    try:
        if args.preview is not None:
            args.preview.parent.mkdir(parents=True, exist_ok=True)
            # the first 10 alphabets exactly as in the full data set (alphabets are independent)
            preview_image(generate_glyph_images(args.seed, n_alphabets=10)).save(args.preview)
            print(f"preview: {args.preview}")
        if args.out is not None or args.preview is None:
            start = time.perf_counter()
            folder = ensure_glyph_dataset(args.seed, args.out)
            print(f"data set: {folder} ({time.perf_counter() - start:.1f} s)")
    except (ConfigError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
