"""How images become network inputs: size, channels and normalisation.

A :class:`Preprocessing` is saved in every checkpoint so that prediction on new
files applies exactly the transformation used in training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor

from engine.config import DataConfig
from engine.data.folder import SkippedFile
from engine.data.images import ImageDecodeError, decode_image
from engine.errors import ConfigError


@dataclass
class Preprocessing:
    """Resize to ``image_size`` squared, ``channels`` 1 or 3, then (x/255 - mean) / std.

    center_crop: 1 squashes the whole image to the square; below 1 resizes the shorter side to
    ``image_size / center_crop`` and keeps the centre square (a pretrained network's own
    preprocessing: 0.875 is torchvision's 224 of 256).
    """

    image_size: int = 28
    channels: int = 1
    mean: float = 0.5
    std: float = 0.5
    center_crop: float = 1.0

    def __post_init__(self) -> None:
        if int(self.image_size) < 1:
            raise ConfigError(f"preprocessing.image_size must be positive (got {self.image_size})")
        if int(self.channels) not in (1, 3):
            raise ConfigError(f"preprocessing.channels must be 1 or 3 (got {self.channels})")
        if not math.isfinite(float(self.std)) or float(self.std) <= 0:
            raise ConfigError(f"preprocessing.std must be positive (got {self.std})")
        if not math.isfinite(float(self.mean)):
            raise ConfigError(f"preprocessing.mean must be finite (got {self.mean})")
        if not 0 < float(self.center_crop) <= 1:
            raise ConfigError(f"preprocessing.center_crop must be in (0, 1] (got {self.center_crop})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        """Rebuild from :meth:`to_dict` output; ConfigError naming a bad key."""
        if not isinstance(d, dict):
            raise ConfigError(f"preprocessing: expected an object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"preprocessing.{unknown[0]}: unknown field")
        try:
            values = {"image_size": int(d.get("image_size", 28)), "channels": int(d.get("channels", 1)),
                      "mean": float(d.get("mean", 0.5)), "std": float(d.get("std", 0.5)),
                      "center_crop": float(d.get("center_crop", 1.0))}
        except (TypeError, ValueError):
            raise ConfigError(f"preprocessing: invalid values {d!r}") from None
        return cls(**values)

    @classmethod
    def from_config(cls, cfg: DataConfig) -> "Preprocessing":
        return cls(image_size=cfg.image_size, channels=cfg.channels, center_crop=cfg.center_crop)

    def standardize(self, unit_images: Tensor) -> Tensor:
        """[..., C, H, W] float in [0, 1] -> (x - mean) / std (new tensor)."""
        return (unit_images - self.mean) / self.std

    def normalize(self, images_uint8: Tensor) -> Tensor:
        """[B, C, H, W] (or [C, H, W]) uint8 -> float32 (x/255 - mean) / std, one fused op."""
        scale = 1.0 / (255.0 * self.std)
        return images_uint8.to(torch.float32, copy=True).mul_(scale).sub_(self.mean / self.std)

    def decode(self, path: str | Path) -> Tensor:
        """Decode one file -> uint8 [C, H, W] of this size, channels and crop; DatasetError naming the file."""
        return decode_image(Path(path), self.image_size, self.channels, self.center_crop)

    def load(self, path: str | Path) -> Tensor:
        """Decode and normalise one file -> float32 [C, H, W]; DatasetError naming the file."""
        return self.normalize(self.decode(path))

    def load_many(self, paths: Iterable[str | Path]) -> tuple[Tensor, list[Path], list[SkippedFile]]:
        """Decode many files -> ([B, C, H, W] float32 of the good ones, good paths, skipped with reasons)."""
        images: list[Tensor] = []
        good: list[Path] = []
        skipped: list[SkippedFile] = []
        for raw in paths:
            path = Path(raw)
            try:
                images.append(self.decode(path))
            except ImageDecodeError as error:
                skipped.append(SkippedFile(path, error.reason))
                continue
            good.append(path)
        if not images:
            empty = torch.empty(0, self.channels, self.image_size, self.image_size, dtype=torch.float32)
            return empty, good, skipped
        return self.normalize(torch.stack(images)), good, skipped
