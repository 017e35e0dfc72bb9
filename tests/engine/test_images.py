"""decode_image and Preprocessing: formats, modes, conversion shapes, and bad files named with reasons."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import engine.data.images as images_module
from engine.config import DataConfig
from engine.data.images import ImageDecodeError, decode_image
from engine.data.preprocess import Preprocessing
from engine.errors import ConfigError, DatasetError


def save(path: Path, image: Image.Image, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    image.save(path, **kwargs)
    return path


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A valid small PNG whose IHDR chunk (with a correct CRC) declares width x height."""
    buffer = path.with_suffix(".tmp.png")
    Image.new("L", (8, 8), 0).save(buffer)
    data = bytearray(buffer.read_bytes())
    buffer.unlink()
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("channels", [1, 3])
def test_formats_and_modes_give_requested_shape(tmp_path: Path, ext: str, mode: str, channels: int) -> None:
    color = 200 if mode == "L" else (200, 200, 200)
    path = save(tmp_path / f"img{ext}", Image.new(mode, (13, 7), color))
    tensor = decode_image(path, 10, channels)
    assert tensor.shape == (channels, 10, 10)
    assert tensor.dtype == torch.uint8
    assert (tensor.float() - 200).abs().max() <= 3  # lossy formats stay close


def test_colour_to_grayscale_uses_luminance(tmp_path: Path) -> None:
    path = save(tmp_path / "red.png", Image.new("RGB", (4, 4), (255, 0, 0)))
    gray = decode_image(path, 4, 1)
    assert gray.shape == (1, 4, 4)
    assert int(gray[0, 0, 0]) == 76  # ITU-R 601-2: 0.299 * 255
    rgb = decode_image(path, 4, 3)
    assert rgb[:, 0, 0].tolist() == [255, 0, 0]


def test_grayscale_to_rgb_repeats_channels(tmp_path: Path) -> None:
    path = save(tmp_path / "g.png", Image.new("L", (4, 4), 90))
    rgb = decode_image(path, 4, 3)
    assert rgb[:, 2, 2].tolist() == [90, 90, 90]


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    pixels = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    pixels[0, 0] = (0, 0, 0, 255)  # one opaque black pixel
    path = save(tmp_path / "a.png", Image.fromarray(pixels, "RGBA"))
    tensor = decode_image(path, 4, 3)
    assert tensor[:, 0, 0].tolist() == [0, 0, 0]
    assert tensor[:, 3, 3].tolist() == [255, 255, 255]
    la = save(tmp_path / "la.png", Image.fromarray(pixels[..., [0, 3]].copy(), "LA"))
    assert int(decode_image(la, 4, 1)[0, 3, 3]) == 255


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (3, 3), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    image.putpixel((1, 1), 1)
    path = save(tmp_path / "p.png", image, transparency=0)
    tensor = decode_image(path, 3, 3)
    assert tensor[:, 0, 0].tolist() == [255, 255, 255]  # transparent -> white
    assert tensor[:, 1, 1].tolist() == [0, 0, 255]


def test_sixteen_bit_grayscale_is_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [32896, 65535]], dtype=np.uint16)
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    tensor = decode_image(path, 2, 1)
    assert tensor[0].tolist() == [[0, 255], [128, 255]]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = save(tmp_path / "cmyk.jpg", Image.new("CMYK", (6, 6), (0, 255, 0, 0)), quality=100)
    tensor = decode_image(path, 6, 3)
    assert tensor.shape == (3, 6, 6)
    assert tensor[:, 3, 3].tolist() == pytest.approx([255, 0, 255], abs=3)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((2, 4), np.uint8)
    pixels[:, 2:] = 255  # left half black, right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = save(tmp_path / "rot.jpg", Image.fromarray(pixels, "L"), exif=exif.tobytes(), quality=100)
    tensor = decode_image(path, 4, 1)[0].float()
    assert tensor[0].mean() < 30 and tensor[3].mean() > 225  # now top black, bottom white


def test_large_jpeg_is_downscaled(tmp_path: Path) -> None:
    path = save(tmp_path / "big.jpg", Image.new("RGB", (1200, 900), (10, 200, 10)))
    tensor = decode_image(path, 28, 3)
    assert tensor.shape == (3, 28, 28)
    assert tensor[1].float().mean() > 190


def test_text_file_with_png_extension(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("this is not an image")
    with pytest.raises(DatasetError, match="not an image") as info:
        decode_image(path, 8, 1)
    assert str(path) in str(info.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.png"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty") as info:
        decode_image(path, 8, 1)
    assert info.value.path == path and str(path) in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    good = save(tmp_path / "good.png", Image.fromarray(noise, "L"))
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated|corrupt") as info:
        decode_image(path, 8, 1)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow warns at the first, refuses the second
def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path, side: int) -> None:
    path = png_with_declared_size(tmp_path / "bomb.png", side, side)
    with pytest.raises(DatasetError, match="too large") as info:
        decode_image(path, 8, 1)
    assert str(path) in str(info.value)


def test_pixel_limit_is_a_module_constant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path / "medium.png", Image.new("L", (20, 20), 0))
    assert decode_image(path, 8, 1).shape == (1, 8, 8)
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(path, 8, 1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        decode_image(tmp_path / "gone.png", 8, 1)


def test_normalize_maps_0_255_to_minus1_plus1() -> None:
    prep = Preprocessing(image_size=2, channels=1)
    images = torch.tensor([0, 255, 51, 128], dtype=torch.uint8).view(1, 1, 2, 2)
    out = prep.normalize(images)
    assert out.dtype == torch.float32
    expected = (images.float() / 255 - 0.5) / 0.5
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(prep.standardize(images.float() / 255), expected, atol=1e-6)


def test_normalize_does_not_modify_float_input() -> None:
    prep = Preprocessing(mean=0.2, std=0.25)
    x = torch.full((1, 1, 2, 2), 51.0)
    prep.normalize(x)
    assert torch.equal(x, torch.full((1, 1, 2, 2), 51.0))


def test_preprocessing_load_and_load_many(tmp_path: Path) -> None:
    prep = Preprocessing(image_size=6, channels=3)
    good = save(tmp_path / "a.png", Image.new("RGB", (9, 9), (255, 255, 255)))
    bad = tmp_path / "b.png"
    bad.write_text("nope")
    one = prep.load(good)
    assert one.shape == (3, 6, 6) and torch.allclose(one, torch.ones_like(one))
    batch, good_paths, skipped = prep.load_many([good, bad, str(good)])
    assert batch.shape == (2, 3, 6, 6)
    assert good_paths == [good, good]
    assert [s.path for s in skipped] == [bad] and "not an image" in skipped[0].reason
    empty, paths, skipped = prep.load_many([bad])
    assert empty.shape == (0, 3, 6, 6) and paths == [] and len(skipped) == 1


def test_preprocessing_round_trip_and_validation() -> None:
    prep = Preprocessing(image_size=84, channels=3, mean=0.4, std=0.3)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert Preprocessing.from_config(DataConfig(image_size=32, channels=3)) == Preprocessing(32, 3)
    with pytest.raises(ConfigError, match="preprocessing.colour"):
        Preprocessing.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="channels"):
        Preprocessing.from_dict({"channels": 2})
    with pytest.raises(ConfigError, match="std"):
        Preprocessing(std=0.0)
