"""Image conversions the views share (tensors to Qt images)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def pixels_to_qimage(pixels) -> QImage:
    """uint8 [C, H, W] tensor (C = 1 or 3) -> a QImage that owns its data."""
    array = np.ascontiguousarray(pixels.numpy())
    if array.shape[0] == 1:
        gray = np.ascontiguousarray(array[0])
        image = QImage(gray.data, gray.shape[1], gray.shape[0], gray.strides[0], QImage.Format.Format_Grayscale8)
    else:
        rgb = np.ascontiguousarray(array.transpose(1, 2, 0))
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
    return image.copy()
