"""Strokes drawn on the draw pad -> an image like an Omniglot drawing (the one rendering rule).

A drawing is a list of strokes, each a list of points ``(x, y, pressure)`` in any units (the pad's
pixels); ``pressure`` is a tablet's 0..1, or None for a mouse. The image looks like a drawing of
Omniglot (Lake et al. 2015: 105x105 canvas, black strokes on white): the drawing's bounding box is
centred and scaled so that its longer side is :data:`EXTENT` of the canvas, and the pen is
:data:`PEN_WIDTH` of the canvas side (times the pressure's factor). Both fractions were measured
on the drawings of ``images_background_small2``: the longer side of the inked box has a median of 72 px
of 105 (pen included), a stroke is 5 px across (median of the shorter ink run through each pixel).
The canvas is at least 105 px (:func:`drawing_size`), so the checkpoint's own decoding (the same
as for a dropped file) resizes it to its image size and channels, as it does with Omniglot files.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

StrokePoint = tuple[float, float, "float | None"]
Stroke = Sequence[StrokePoint]

OMNIGLOT_CANVAS = 105
"""Side of an Omniglot drawing, in pixels."""
PEN_WIDTH = 5 / OMNIGLOT_CANVAS
"""Pen width as a fraction of the canvas side (median stroke of Omniglot small2: 5 px of 105)."""
EXTENT = (72 - 5) / OMNIGLOT_CANVAS
"""Longer side of the box of the pen's path as a fraction of the canvas (Omniglot small2: 72 px inked, median)."""
SUPERSAMPLE = 4
"""Strokes are drawn at this many times the canvas side, then box-downsampled (anti-aliasing)."""


def pen_factor(pressure: float | None) -> float:
    """The pen width's factor: 1 for a mouse (None); 0.5 to 1.5 for a tablet's pressure 0 to 1."""
    if pressure is None or not math.isfinite(pressure):
        return 1.0
    return 0.5 + min(max(float(pressure), 0.0), 1.0)


def drawing_size(image_size: int) -> int:
    """The canvas side a drawing is rendered at for a model of ``image_size``: Omniglot's 105, or more."""
    return max(OMNIGLOT_CANVAS, int(image_size))


def pen_width_for_span(span: float, pressure: float | None = None) -> float:
    """The pen width, in the units of the points, of a drawing whose longer side is ``span``: what the
    rendered image will show, drawn at the pad's scale (the pad paints its strokes with it)."""
    return PEN_WIDTH * max(span, 1e-6) / EXTENT * pen_factor(pressure)


def drawing_span(strokes: Sequence[Stroke]) -> float:
    """The longer side of the drawing's bounding box (0 for a single point; ValueError when empty)."""
    left, top, right, bottom = _bounds(strokes)
    return max(right - left, bottom - top)


def render_strokes(strokes: Sequence[Stroke], size: int = OMNIGLOT_CANVAS) -> np.ndarray:
    """[size, size] uint8: black strokes (0) on white (255), centred and scaled like an Omniglot drawing.

    Round pen (round joins and caps); each segment is as wide as its points' mean pressure asks.
    A drawing of one point (a tap) is a dot of the pen's width. ValueError for no points.
    """
    if int(size) < 8:
        raise ValueError(f"drawing size must be at least 8 pixels (got {size})")
    left, top, right, bottom = _bounds(strokes)
    big = int(size) * SUPERSAMPLE
    span = max(right - left, bottom - top)
    scale = EXTENT * big / span if span > 1e-6 else 1.0
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    pen = PEN_WIDTH * big

    def place(point: StrokePoint) -> tuple[float, float]:
        return big / 2 + (point[0] - centre_x) * scale, big / 2 + (point[1] - centre_y) * scale

    canvas = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(canvas)
    for stroke in strokes:
        placed = [place(p) for p in stroke]
        widths = [pen * pen_factor(_pressure(p)) for p in stroke]
        for (x, y), width in zip(placed, widths):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=0)
        for (a, b), width in zip(zip(placed, placed[1:]), _segment_widths(widths)):
            draw.line([a, b], fill=0, width=max(1, round(width)))
    return np.asarray(canvas.resize((int(size), int(size)), Image.Resampling.BOX), dtype=np.uint8).copy()


def strokes_png(strokes: Sequence[Stroke], size: int = OMNIGLOT_CANVAS) -> bytes:
    """:func:`render_strokes` encoded as a greyscale PNG file's bytes."""
    buffer = io.BytesIO()
    Image.fromarray(render_strokes(strokes, size), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _bounds(strokes: Sequence[Stroke]) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for stroke in strokes for p in stroke]
    ys = [float(p[1]) for stroke in strokes for p in stroke]
    if not xs:
        raise ValueError("nothing to render: the drawing has no points")
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError("a point of the drawing is not a finite number")
    return min(xs), min(ys), max(xs), max(ys)


def _pressure(point: StrokePoint) -> float | None:
    return point[2] if len(point) > 2 else None


def _segment_widths(widths: list[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(widths, widths[1:])]
