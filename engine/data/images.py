"""Decode one image file into a square uint8 tensor, or say why it cannot be used.

Whatever the file holds (palette, 16-bit, CMYK, alpha, EXIF rotation), the
result is ``uint8 [C, H, W]`` with C = 1 (grayscale) or 3 (RGB) and
H = W = ``image_size``: the whole image squashed to a square, or (``center_crop`` < 1, the
pretrained photo networks' own preprocessing) its shorter side resized to ``image_size /
center_crop`` and the centre square cut out. Transparent pixels are composited on white. Every
failure becomes a :class:`ImageDecodeError` (a ``DatasetError``) whose message
names the file.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from engine.errors import DatasetError

MAX_IMAGE_PIXELS = 64_000_000
"""Images declaring more pixels than this are refused before decoding (decompression bombs)."""

_RESAMPLE = Image.Resampling.BILINEAR  # Pillow's resize antialiases when shrinking


class ImageDecodeError(DatasetError):
    """An image file cannot be decoded; ``reason`` says why without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def decode_image(path: Path, image_size: int, channels: int, center_crop: float = 1.0) -> Tensor:
    """Decode ``path`` to uint8 [channels, image_size, image_size]; ImageDecodeError naming the file.

    center_crop: 1 squashes the whole image; below 1 keeps the aspect ratio, resizing the shorter
    side to ``image_size / center_crop`` and keeping the centre square (0.875: 224 of 256).
    """
    path = Path(path)
    resized = image_size if center_crop >= 1 else max(image_size, round(image_size / center_crop))
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    _check_not_empty(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": the pixels are still fine
            with Image.open(path) as image:
                _check_declared_size(path, image)
                image.draft("L" if channels == 1 else "RGB", (resized, resized))
                image.load()
                pixels = _to_mode(_upright(image), channels)
    except ImageDecodeError:
        raise
    except Exception as error:  # Pillow raises many types on corrupt files; all mean "unusable"
        raise ImageDecodeError(path, _reason(error)) from None
    if center_crop < 1:
        pixels = _resize_and_crop_centre(pixels, resized, image_size)
    elif pixels.size != (image_size, image_size):
        pixels = pixels.resize((image_size, image_size), _RESAMPLE)
    return _to_tensor(pixels, channels)


def _resize_and_crop_centre(image: Image.Image, shorter_side: int, size: int) -> Image.Image:
    """Resize so the shorter side is ``shorter_side`` (aspect kept), then cut the centre ``size`` square."""
    width, height = image.size
    longer_side = int(shorter_side * max(width, height) / min(width, height))  # truncated, as torchvision's Resize
    new_width, new_height = (longer_side, shorter_side) if width >= height else (shorter_side, longer_side)
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), _RESAMPLE)
    left, top = round((new_width - size) / 2), round((new_height - size) / 2)  # as torchvision's CenterCrop
    return image.crop((left, top, left + size, top + size))


def _check_not_empty(path: Path) -> None:
    """A regular, non-empty file (a folder, pipe or device named like an image is refused unopened)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise ImageDecodeError(path, _reason(error)) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ImageDecodeError(path, f"{kind}, not an image file")
    if info.st_size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; an unreadable EXIF block leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # corrupt EXIF: the image itself is still usable
        return image


def _check_declared_size(path: Path, image: Image.Image) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"invalid image size {width}x{height}")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(path, f"image too large ({width}x{height} pixels, limit "
                                     f"{MAX_IMAGE_PIXELS:,} pixels; possible decompression bomb)")


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to 'L' (channels=1) or 'RGB' (channels=3)."""
    target = "L" if channels == 1 else "RGB"
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _high_depth_to_l(image)
    elif mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        image = _composite_on_white(image)
    if image.mode != target:
        image = image.convert(target)
    return image


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float grayscale -> 8-bit 'L'."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and float(np.nanmax(values)) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0
    scaled = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_tensor(image: Image.Image, channels: int) -> Tensor:
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    if channels == 1:
        return tensor.unsqueeze(0)
    return tensor.permute(2, 0, 1).contiguous()


def _reason(error: BaseException) -> str:
    """A short human reason for a decode failure."""
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large (possible decompression bomb): {error}"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file, or an unsupported image format"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "file not found (or a broken symlink)"
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(error, MemoryError):
        return "image too large to decode (out of memory)"
    text = str(error) or type(error).__name__
    if "truncated" in text.lower():
        return f"truncated or corrupt image ({text})"
    return f"corrupt image ({text})"
