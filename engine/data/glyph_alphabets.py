"""Clean characters of invented alphabets: stroke shapes, alphabet styles, character layout.

Every alphabet gets a *style* (a small vocabulary of stroke shapes, curvy or angular strokes,
a stroke-count range, a slant, a tendency to symmetry, to a top bar, to diacritic dots); every
character of the alphabet is built from 1-4 strokes of that vocabulary, so characters of one
alphabet look related. Points live in the unit box, y down. :mod:`engine.data.glyph_writers`
"writes" these clean characters by hand; :mod:`engine.data.glyphs` assembles the data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLES_PER_SEGMENT = 6  # dense points per control-point segment
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

def alphabet_name(rng: np.random.Generator, taken: set[str]) -> str:
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
