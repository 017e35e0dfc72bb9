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

Run ``python -m engine.data.glyphs --preview docs/glyphs.png`` for a preview grid.
"""

from __future__ import annotations

import argparse
import json
import math
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
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from engine.errors import ConfigError, DatasetError
from engine.io import process_exists

FORMAT_VERSION = 1
MARKER_NAME = "COMPLETE"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SUPERSAMPLE = 3          # strokes are drawn at SUPERSAMPLE x the image size, then box-downsampled
SAMPLES_PER_SEGMENT = 6  # dense points per control-point segment
STALE_TEMP_S = 3600.0    # temporary folders older than this are left-overs of a crash
THUMB_SIZE = 8           # side of the coarse images used to keep characters of an alphabet distinct
MIN_INK_LENGTH = 3.2     # shortest total stroke length of a clean character (its box is about 1.6 wide)
MAX_INK_LENGTH = 10.0    # longest one

PRIMITIVES = ("line", "arc", "loop", "hook", "wave", "zigzag", "corner")
_ANGULAR_ONLY = {"zigzag", "corner"}

_CONSONANTS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
               "th", "sh", "ch", "kr", "dr", "vel", "m"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "y"]
_SUFFIXES = ["ish", "an", "ic", "ese", "i", "ar", "en", "ot", "ul", "ian"]


# ----------------------------------------------------------------------------- data types

@dataclass
class Stroke:
    """One pen stroke of a clean character: control points [P, 2] in the unit box (y down)."""

    points: np.ndarray
    smooth: bool  # Catmull-Rom through the points (True) or straight segments (False)


@dataclass
class AlphabetStyle:
    """What the characters of one alphabet have in common."""

    name: str
    primitive_weights: np.ndarray      # [len(PRIMITIVES)] probabilities of the stroke shapes
    smooth_prob: float                 # chance that a stroke is curved rather than angular
    n_strokes: tuple[int, int]         # inclusive range of strokes per character
    angle_step: float                  # stroke rotations are multiples of this (radians; 0 = free)
    symmetry_prob: float               # chance that a character is mirrored about its vertical axis
    connect_prob: float                # chance that a stroke touches an earlier stroke
    headline_prob: float               # chance of a horizontal bar across the top
    dot_prob: float                    # chance of a diacritic dot
    slant: float                       # horizontal shear shared by all writers of the alphabet
    aspect: float                      # width / height of the character box
    prototypes: list[Stroke]           # the alphabet's recurring stroke shapes


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


# ----------------------------------------------------------------------------- geometry helpers

def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _segment_weights(smooth: bool) -> np.ndarray:
    """Weights [SAMPLES_PER_SEGMENT, 4] of the 4 points around a segment, for t in [0, 1).

    Uniform Catmull-Rom for smooth strokes; straight interpolation between the
    middle two points otherwise.
    """
    t = np.arange(SAMPLES_PER_SEGMENT) / SAMPLES_PER_SEGMENT
    if not smooth:
        zeros = np.zeros_like(t)
        return np.stack([zeros, 1 - t, t, zeros], axis=1)
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], axis=1)


@lru_cache(maxsize=64)
def _curve_basis(n_points: int, smooth: bool) -> np.ndarray:
    """Matrix [(n_points - 1) * SAMPLES_PER_SEGMENT + 1, n_points] mapping control points to curve samples.

    The curve's end tangents come from mirrored ghost points (2 p0 - p1 and
    2 p_last - p_second_last), folded into the matrix.
    """
    ghosted = np.zeros((n_points + 2, n_points))     # padded points as combinations of the real ones
    ghosted[1:-1] = np.eye(n_points)
    ghosted[0, 0], ghosted[0, 1] = 2.0, -1.0
    ghosted[-1, -1], ghosted[-1, -2] = 2.0, -1.0
    weights = _segment_weights(smooth)
    rows = [weights @ ghosted[g:g + 4] for g in range(n_points - 1)]
    rows.append(np.eye(n_points)[-1:])
    basis = np.concatenate(rows)
    basis.setflags(write=False)
    return basis


def densify(points: np.ndarray, smooth: bool) -> np.ndarray:
    """Sample a curve through control points.

    points: [..., P, 2] (P >= 2) -> [..., (P - 1) * SAMPLES_PER_SEGMENT + 1, 2] points along the curve.
    """
    return _curve_basis(points.shape[-2], smooth) @ points


# ----------------------------------------------------------------------------- stroke shapes

def _primitive(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Control points [P, 2] of one stroke shape, roughly spanning [-1, 1]."""
    if kind == "line":
        return np.array([[-1.0, 0.0], [0.0, rng.normal(0, 0.08)], [1.0, 0.0]])
    if kind == "arc":
        span = rng.uniform(0.55, 1.45) * math.pi
        return _ellipse_points(rng.uniform(0, 2 * math.pi), span, 3 + int(span / (0.45 * math.pi)),
                               rng.uniform(0.55, 1.0))
    if kind == "loop":
        return _loop(rng)
    if kind == "hook":
        return _hook(rng)
    if kind == "wave":
        n = int(rng.integers(4, 6))
        amp = rng.uniform(0.25, 0.55)
        y = amp * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        return np.stack([np.linspace(-1, 1, n), y], axis=1)
    if kind == "zigzag":
        n = int(rng.integers(3, 5))
        amp = rng.uniform(0.45, 0.9)
        y = amp * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        return np.stack([np.linspace(-1, 1, n), y], axis=1)
    if kind == "corner":
        angle = rng.uniform(0.35, 0.65) * math.pi
        arm_a, arm_b = rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0)
        return np.array([[arm_a, 0.0], [0.0, 0.0], [arm_b * math.cos(angle), arm_b * math.sin(angle)]]) * 1.6 - 0.5
    raise ValueError(kind)


def _ellipse_points(start: float, span: float, n: int, ratio: float) -> np.ndarray:
    angles = start + np.linspace(0, span, n)
    return np.stack([np.cos(angles), ratio * np.sin(angles)], axis=1)


def _loop(rng: np.random.Generator) -> np.ndarray:
    """A closed (slightly overlapping) oval, sometimes with a tail."""
    ring = _ellipse_points(rng.uniform(0, 2 * math.pi), 2 * math.pi + rng.uniform(0.15, 0.5), 8,
                           rng.uniform(0.55, 1.0)) * rng.uniform(0.5, 0.8)
    if rng.random() < 0.5:
        tail = ring[0] + (ring[0] - ring[1]) * rng.uniform(1.5, 3.0)
        ring = np.concatenate([tail[None], ring], axis=0)
    return ring


def _hook(rng: np.random.Generator) -> np.ndarray:
    """A straight stem ending in a curl (like a J)."""
    side = rng.choice([-1.0, 1.0])
    curl = rng.uniform(0.3, 0.6)
    return np.array([[0.0, -1.0], [0.0, 0.0], [0.0, 0.6],
                     [side * curl * 0.5, 1.0], [side * curl, 0.75]])


# ----------------------------------------------------------------------------- alphabets

def _alphabet_name(rng: np.random.Generator, taken: set[str]) -> str:
    """A pronounceable invented name (capitalised, unique within ``taken``)."""
    while True:
        n_syllables = int(rng.integers(1, 3))
        word = "".join(str(rng.choice(_CONSONANTS)) + str(rng.choice(_VOWELS)) for _ in range(n_syllables))
        word = (word + str(rng.choice(_SUFFIXES))).capitalize()
        if word not in taken and 4 <= len(word) <= 11:
            taken.add(word)
            return word


def make_style(name: str, rng: np.random.Generator) -> AlphabetStyle:
    """Draw an alphabet's style, including its recurring stroke prototypes."""
    weights = rng.dirichlet(np.full(len(PRIMITIVES), 0.6))
    smooth_prob = float(rng.choice([0.1, 0.5, 0.85, 0.97]))
    low = int(rng.integers(1, 3))
    style = AlphabetStyle(
        name=name, primitive_weights=weights, smooth_prob=smooth_prob,
        n_strokes=(low, int(min(4, low + rng.integers(1, 3)))),
        angle_step=float(rng.choice([0.0, math.pi / 4, math.pi / 2, math.pi / 3])),
        symmetry_prob=float(rng.uniform(0.0, 0.35)), connect_prob=float(rng.uniform(0.55, 0.95)),
        headline_prob=float(rng.choice([0.0, 0.0, 0.0, 0.75])), dot_prob=float(rng.choice([0.0, 0.0, 0.25, 0.4])),
        slant=float(rng.normal(0, 0.15)), aspect=float(rng.uniform(0.75, 1.15)), prototypes=[],
    )
    style.prototypes = [_new_stroke(style, rng) for _ in range(int(rng.integers(5, 9)))]
    return style


def _new_stroke(style: AlphabetStyle, rng: np.random.Generator) -> Stroke:
    kind = str(rng.choice(PRIMITIVES, p=style.primitive_weights))
    smooth = kind not in _ANGULAR_ONLY and rng.random() < style.smooth_prob
    return Stroke(_primitive(kind, rng), smooth)


def _placed_stroke(style: AlphabetStyle, rng: np.random.Generator, earlier: list[Stroke],
                   existing: np.ndarray, n_candidates: int = 6) -> Stroke:
    """A prototype (or fresh) stroke, scaled, rotated and placed.

    ``existing`` [M, 2] are the dense points of the ``earlier`` strokes. Of a few
    candidate placements the one that keeps the character compact without piling
    ink onto earlier strokes wins.
    """
    base = style.prototypes[int(rng.integers(len(style.prototypes)))] if rng.random() < 0.75 \
        else _new_stroke(style, rng)
    theta = rng.uniform(0, 2 * math.pi)
    if style.angle_step > 0:
        theta = round(theta / style.angle_step) * style.angle_step
    points = base.points @ _rotation(theta).T * rng.uniform(0.55, 1.0)
    if rng.random() < 0.5:
        points = points * np.array([-1.0, 1.0])
    if not earlier:
        return Stroke(points - points.mean(axis=0), base.smooth)
    if rng.random() < style.connect_prob:
        anchors = np.concatenate([s.points for s in earlier])[rng.integers(0, sum(len(s.points) for s in earlier),
                                                                           n_candidates)]
        own = points[rng.choice([0, len(points) // 2, len(points) - 1], n_candidates)]
        offsets = anchors - own                                        # [C, 2]
    else:
        centre = (existing.min(axis=0) + existing.max(axis=0)) / 2
        offsets = centre - points.mean(axis=0) + rng.uniform(-0.8, 0.8, (n_candidates, 2))
    candidates = points[None] + offsets[:, None, :]                   # [C, P, 2]
    scores = _placement_scores(densify(candidates, base.smooth), existing)
    return Stroke(candidates[int(np.argmin(scores))], base.smooth)


def _placement_scores(dense: np.ndarray, existing: np.ndarray) -> np.ndarray:
    """Lower is better: overflow of the box plus the share of ink on top of earlier ink.

    dense: [C, N, 2] candidate strokes; existing: [M, 2] -> scores [C].
    """
    low = np.minimum(dense.min(axis=1), existing.min(axis=0))
    high = np.maximum(dense.max(axis=1), existing.max(axis=0))
    extent = (high - low).max(axis=1)
    squared = ((dense * dense).sum(axis=2)[:, :, None] + (existing * existing).sum(axis=1)[None, None, :]
               - 2.0 * dense @ existing.T)                                              # [C, N, M]
    crowded = squared.min(axis=2) < 0.18 ** 2
    return np.maximum(0.0, extent - 2.2) + 3.0 * crowded.mean(axis=1)


def _dense_points(strokes: list[Stroke]) -> np.ndarray:
    """All strokes of a clean character sampled densely: [N, 2]."""
    return np.concatenate([densify(s.points[None], s.smooth)[0] for s in strokes])


def _normalise(strokes: list[Stroke], aspect: float, half_size: float = 0.82) -> list[Stroke]:
    """Centre the character and scale its longer side to 2 * half_size (aspect kept)."""
    dense = _dense_points(strokes)
    low, high = dense.min(axis=0), dense.max(axis=0)
    centre = (low + high) / 2
    size = np.maximum(high - low, 1e-6)
    scale = 2 * half_size / max(float(size[0]) / aspect, float(size[1]), float(size[0]))
    return [Stroke((s.points - centre) * scale, s.smooth) for s in strokes]


def _add_dot(strokes: list[Stroke], rng: np.random.Generator) -> None:
    """Add a diacritic dot in free space near the character, if one fits."""
    dense = _dense_points(strokes)
    spots = np.clip(dense[rng.integers(0, len(dense), 8)] + rng.normal(0, 0.35, (8, 2)), -0.9, 0.9)
    clearance = np.linalg.norm(dense[None] - spots[:, None], axis=2).min(axis=1)
    free = np.nonzero(clearance > 0.28)[0]
    if len(free):
        spot = spots[free[0]]
        strokes.append(Stroke(np.stack([spot, spot + rng.normal(0, 0.015, size=2)]), False))


def make_character(style: AlphabetStyle, rng: np.random.Generator) -> list[Stroke]:
    """One clean character of the alphabet, normalised to the unit box."""
    n_strokes = int(rng.integers(style.n_strokes[0], style.n_strokes[1] + 1))
    strokes: list[Stroke] = []
    if rng.random() < style.headline_prob:
        strokes.append(Stroke(np.array([[-0.9, -0.9], [0.0, -0.9], [0.9, -0.9]]), False))
    target = min(4, n_strokes + len(strokes))
    existing = _dense_points(strokes) if strokes else np.zeros((0, 2))
    while len(strokes) < target:
        strokes.append(_placed_stroke(style, rng, strokes, existing))
        existing = np.concatenate([existing, densify(strokes[-1].points[None], strokes[-1].smooth)[0]])
    if rng.random() < style.symmetry_prob and len(strokes) < 4:
        centre_x = (existing[:, 0].min() + existing[:, 0].max()) / 2
        mirror = strokes[-1].points * np.array([-1.0, 1.0]) + np.array([2 * centre_x, 0.0])
        strokes.append(Stroke(mirror, strokes[-1].smooth))
    strokes = _normalise(strokes, style.aspect)
    if rng.random() < style.dot_prob:
        _add_dot(strokes, rng)
    return strokes


def _acceptable(strokes: list[Stroke], dense: np.ndarray) -> bool:
    """Neither too plain (a bare line) nor too cluttered (a blob of ink). dense: [N, 2] of the strokes."""
    if sum(len(s.points) for s in strokes) < 5:
        return False
    size = dense.max(axis=0) - dense.min(axis=0)
    if size.min() < 0.3 * size.max():
        return False
    steps = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    stroke_ends = np.cumsum([(len(s.points) - 1) * SAMPLES_PER_SEGMENT + 1 for s in strokes])[:-1] - 1
    steps[stroke_ends] = 0.0                                # the jumps between strokes are no ink
    return MIN_INK_LENGTH <= float(steps.sum()) <= MAX_INK_LENGTH


def make_alphabet(style: AlphabetStyle, n_chars: int, rng: np.random.Generator,
                  max_similarity: float = 0.8, max_attempts: int = 40) -> list[list[Stroke]]:
    """``n_chars`` distinct characters: a candidate too similar to an earlier one is redrawn."""
    chars: list[list[Stroke]] = []
    thumbs = np.zeros((0, THUMB_SIZE * THUMB_SIZE))
    for _ in range(n_chars):
        for attempt in range(max_attempts):
            candidate = make_character(style, rng)
            dense = _dense_points(candidate)
            last_try = attempt == max_attempts - 1
            if not _acceptable(candidate, dense) and not last_try:
                continue
            thumb = _thumbnail(dense)
            if last_try or not len(thumbs) or float((thumbs @ thumb).max()) < max_similarity:
                break
        chars.append(candidate)
        thumbs = np.concatenate([thumbs, thumb[None]])
    return chars


@lru_cache(maxsize=4)
def _blur_matrix(size: int) -> np.ndarray:
    """[size*size, size*size] matrix summing each cell's 3x3 neighbourhood."""
    near = (np.abs(np.arange(size)[:, None] - np.arange(size)[None, :]) <= 1).astype(np.float64)
    return np.kron(near, near)


def _thumbnail(dense: np.ndarray) -> np.ndarray:
    """Blurred, centred, unit-norm ink-density image [THUMB_SIZE**2] of a clean character. dense: [N, 2]."""
    size = THUMB_SIZE
    cells = np.clip(((dense + 1) / 2 * size).astype(np.int64), 0, size - 1)
    counts = np.bincount(cells[:, 1] * size + cells[:, 0], minlength=size * size).astype(np.float64)
    blurred = _blur_matrix(size) @ counts
    blurred -= blurred.mean()
    return blurred / (np.linalg.norm(blurred) + 1e-9)


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
        alphabet_names.append(f"Alphabet_{a + 1:02d}_{_alphabet_name(names_rng, taken)}")
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
