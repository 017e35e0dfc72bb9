"""Hand-writing a clean character: per-writer jitter, elastic warp, pen lifts, anti-aliased rendering.

Each character is "written" by ``n_variants`` writers, each with their own jitter: a global
affine distortion, noise on the stroke control points, a smooth elastic warp, pen width, and
the occasional short or overshooting stroke. Strokes are rendered black on white (like
Omniglot) at three times the target size and box-downsampled for anti-aliasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from engine.data.glyph_alphabets import SAMPLES_PER_SEGMENT, Stroke, densify

SUPERSAMPLE = 3          # strokes are drawn at SUPERSAMPLE x the image size, then box-downsampled


# ----------------------------------------------------------------------------- writers

@dataclass
class _WriterJitter:
    """Per-variant random distortions of one character (V variants, S strokes)."""

    affine: np.ndarray        # [V, 2, 2]
    shift: np.ndarray         # [V, 2]
    stroke_shift: np.ndarray  # [V, S, 2]
    warp_freq: np.ndarray     # [V, K, 2]
    warp_phase: np.ndarray    # [V, K]
    warp_amp: np.ndarray      # [V, K, 2]
    width: np.ndarray         # [V, S] pen width in output pixels


def _draw_jitter(rng: np.random.Generator, n_variants: int, n_strokes: int, slant: float) -> _WriterJitter:
    v = n_variants
    theta = rng.normal(0, 0.16, v)
    shear = slant + rng.normal(0, 0.16, v)
    scale = np.exp(rng.normal(0, 0.12, (v, 1)) + rng.normal(0, 0.09, (v, 2)))
    rot = np.stack([np.stack([np.cos(theta), -np.sin(theta)], 1), np.stack([np.sin(theta), np.cos(theta)], 1)], 1)
    shear_m = np.zeros((v, 2, 2))
    shear_m[:, 0, 0] = shear_m[:, 1, 1] = 1.0
    shear_m[:, 0, 1] = shear
    affine = rot @ shear_m * scale[:, None, :]
    k = 3
    return _WriterJitter(
        affine=affine, shift=rng.normal(0, 0.1, (v, 2)),
        stroke_shift=rng.normal(0, 0.07, (v, n_strokes, 2)),
        warp_freq=rng.normal(0, 1.6, (v, k, 2)), warp_phase=rng.uniform(0, 2 * math.pi, (v, k)),
        warp_amp=rng.normal(0, 0.045, (v, k, 2)),
        width=rng.uniform(1.5, 2.4, (v, 1)) * np.exp(rng.normal(0, 0.1, (v, n_strokes))),
    )


def _warp(points: np.ndarray, jitter: _WriterJitter) -> np.ndarray:
    """Smooth elastic warp plus global affine: points [V, N, 2] -> [V, N, 2]."""
    phase = np.einsum("vnd,vkd->vnk", points, jitter.warp_freq) + jitter.warp_phase[:, None, :]
    warped = points + np.einsum("vnk,vkd->vnd", np.sin(phase), jitter.warp_amp)
    return np.einsum("vnd,ved->vne", warped, jitter.affine) + jitter.shift[:, None, :]


def _fit_in_box(points: np.ndarray, limit: float = 0.97) -> np.ndarray:
    """Shrink (about the box centre) the variants that left the unit box: [V, N, 2] -> [V, N, 2]."""
    reach = np.abs(points).max(axis=(1, 2))
    return points * np.minimum(1.0, limit / reach)[:, None, None]


def _corner_indices(stroke: Stroke) -> np.ndarray:
    """Indices of the sharp corners in the dense samples of a stroke (none for smooth strokes)."""
    if stroke.smooth:
        return np.zeros(0, dtype=np.int64)
    return np.arange(1, len(stroke.points) - 1) * SAMPLES_PER_SEGMENT


def _pen_lift(points: np.ndarray, corners: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Occasionally stop a stroke short or overshoot its end.

    points [N, 2] -> (points [N', 2], cap points [M, 2]: ends and sharp corners).
    """
    roll = rng.random()
    if roll < 0.1 and len(points) > 8:
        cut = int(len(points) * rng.uniform(0.1, 0.3))
        if rng.random() < 0.5:
            points, corners = points[cut:], corners[corners >= cut] - cut
        else:
            points, corners = points[:len(points) - cut], corners[corners < len(points) - cut]
    elif roll < 0.2:
        direction = points[-1] - points[-3]
        length = float(np.linalg.norm(direction))
        if length > 1e-6:
            extra = points[-1] + direction / length * rng.uniform(0.06, 0.18) * np.arange(1, 4)[:, None] / 3
            points = np.concatenate([points, extra])
    caps = np.concatenate([points[:1], points[corners], points[-1:]])
    return points, caps


def write_variants(strokes: list[Stroke], n_variants: int, rng: np.random.Generator, slant: float,
                   image_size: int) -> np.ndarray:
    """Render ``n_variants`` hand-written copies of a character: uint8 [V, H, W]."""
    jitter = _draw_jitter(rng, n_variants, len(strokes), slant)
    dense: list[np.ndarray] = []
    for s_index, stroke in enumerate(strokes):
        noisy = stroke.points[None] + rng.normal(0, 0.07, (n_variants,) + stroke.points.shape)
        dense.append(densify(noisy + jitter.stroke_shift[:, s_index, None, :], stroke.smooth))
    lengths = [d.shape[1] for d in dense]
    warped = _fit_in_box(_warp(np.concatenate(dense, axis=1), jitter))
    per_stroke = np.split(warped, np.cumsum(lengths)[:-1], axis=1)
    corners = [_corner_indices(s) for s in strokes]
    drawings = [[_pen_lift(points[v], c, rng) for points, c in zip(per_stroke, corners)]
                for v in range(n_variants)]
    return render_variants(drawings, jitter.width, image_size)


# ----------------------------------------------------------------------------- rendering

def render_variants(drawings: list[list[tuple[np.ndarray, np.ndarray]]], widths: np.ndarray,
                    image_size: int) -> np.ndarray:
    """Draw images black on white, all on one wide canvas: uint8 [V, H, W].

    ``drawings[v]`` lists image v's strokes as (polyline [N, 2], round-cap points
    [M, 2]) in the unit box, y down; ``widths`` [V, S] are pen widths in output
    pixels. Drawing happens at SUPERSAMPLE x resolution and is box-downsampled,
    which anti-aliases the strokes. Cells are padded so strokes never spill over.
    """
    big = image_size * SUPERSAMPLE
    pad_small = (image_size + 3) // 4
    cell_small = image_size + 2 * pad_small
    cell = cell_small * SUPERSAMPLE
    canvas = Image.new("L", (cell * len(drawings), big), 255)
    draw = ImageDraw.Draw(canvas)
    for v, strokes in enumerate(drawings):
        origin = np.array([v * cell + pad_small * SUPERSAMPLE + big * 0.08, big * 0.08])
        for (points, caps), width in zip(strokes, widths[v]):
            pen = max(1, int(round(float(width) * SUPERSAMPLE)))
            draw.line(((points * 0.5 + 0.5) * (big * 0.84) + origin).ravel().tolist(), fill=0, width=pen)
            radius = pen / 2.0
            for x, y in ((caps * 0.5 + 0.5) * (big * 0.84) + origin).tolist():
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    small = np.asarray(canvas.reduce(SUPERSAMPLE)).reshape(image_size, len(drawings), cell_small)
    return np.ascontiguousarray(small[:, :, pad_small:pad_small + image_size].transpose(1, 0, 2))
