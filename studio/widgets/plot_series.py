"""The data behind the live plots: growing numpy arrays, EMA-smoothed series, min/max pyramids,
metrics rows.

Qt-free. Arrays grow by doubling (amortised O(1) appends), a series keeps its smoothed values
incrementally, and a :class:`PeakPyramid` keeps the minimum and maximum of aligned buckets of an
array, so that what a plot draws of any x range (:func:`envelope`) costs O(pixels), not O(history).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np


class GrowingArray:
    """A float64 array with amortised O(1) appends (capacity doubles when full)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._data = np.empty(max(1, capacity), dtype=np.float64)
        self._size = 0
        self.generation = 0        # counts clear()s: what was derived from the values is stale
        self.nondecreasing = True  # every value >= the one before (kept with each append)

    def __len__(self) -> int:
        return self._size

    def _reserve(self, needed: int) -> None:
        if needed <= self._data.size:
            return
        capacity = self._data.size
        while capacity < needed:
            capacity *= 2
        grown = np.empty(capacity, dtype=np.float64)
        grown[: self._size] = self._data[: self._size]
        self._data = grown

    def extend(self, values: Iterable[float] | np.ndarray) -> None:
        values = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
        if values.size == 0:
            return
        self._note_order(values[0], values)
        self._reserve(self._size + values.size)
        self._data[self._size: self._size + values.size] = values
        self._size += values.size

    def _note_order(self, first: float, values: np.ndarray | None = None) -> None:
        if not self.nondecreasing:
            return
        if self._size and not first >= self._data[self._size - 1]:
            self.nondecreasing = False
        elif values is not None and values.size > 1 and not bool(np.all(values[1:] >= values[:-1])):
            self.nondecreasing = False

    def append(self, value: float) -> None:
        self._note_order(value)
        self._reserve(self._size + 1)
        self._data[self._size] = value
        self._size += 1

    @property
    def view(self) -> np.ndarray:
        """The filled part (a view, not a copy)."""
        return self._data[: self._size]

    @property
    def capacity(self) -> int:
        return self._data.size

    def clear(self) -> None:
        self._size = 0
        self.generation += 1
        self.nondecreasing = True


def ema_run(values: np.ndarray, alpha: float, ema: float = 0.0, weight: float = 0.0) -> tuple[np.ndarray, float, float]:
    """The bias-corrected exponential moving average of ``values`` continued from the state
    (``ema``, ``weight``): returns (smoothed values, new ema, new weight). A non-finite value gives NaN
    and leaves the state as it is. Few values: a plain loop; many (a smoothing change over a long
    run): in chunks whose powers of ``alpha`` stay within float64, about 30x faster than the loop."""
    a = float(alpha)
    if len(values) < 64 or not 0.0 < a < 1.0:
        out = np.empty(len(values))
        for i, y in enumerate(values.tolist()):
            if not math.isfinite(y):
                out[i] = math.nan
                continue
            ema = a * ema + (1.0 - a) * y
            weight = a * weight + (1.0 - a)
            out[i] = ema / weight if weight > 0 else y
        return out, ema, weight
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    y = values[finite]  # skipped values leave the state alone: the average runs over the finite ones
    smooth = np.empty(len(y))
    chunk = max(1, int(250 / -math.log10(a)))  # a ** -chunk < 1e250
    for start in range(0, len(y), chunk):
        part = y[start: start + chunk]
        decay = a ** np.arange(1, len(part) + 1)  # a ** t
        # ema_t = a^t (ema_0 + (1 - a) sum_{i <= t} a^-i y_i); weight_t = a^t weight_0 + 1 - a^t
        sums = decay * (ema + (1.0 - a) * np.cumsum(part / decay))
        weights = decay * weight + (1.0 - decay)
        smooth[start: start + len(part)] = sums / weights
        ema, weight = float(sums[-1]), float(weights[-1])
    out[finite] = smooth
    return out, ema, weight


class EmaSeries:
    """Raw values plus their bias-corrected exponential moving average, kept incrementally."""

    def __init__(self, alpha: float = 0.0) -> None:
        self.x = GrowingArray()
        self.raw = GrowingArray()
        self.smooth = GrowingArray()
        self.alpha = alpha
        self._ema = 0.0
        self._weight = 0.0

    def __len__(self) -> int:
        return len(self.x)

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        self.x.extend(xs)
        self.raw.extend(ys)
        self.smooth.extend(self._smooth_values(ys))

    def _smooth_values(self, ys: Iterable[float] | np.ndarray) -> np.ndarray:
        values = np.asarray(ys if isinstance(ys, np.ndarray) else list(ys), dtype=np.float64)
        smooth, self._ema, self._weight = ema_run(values, self.alpha, self._ema, self._weight)
        return smooth

    def set_alpha(self, alpha: float) -> None:
        """Change the smoothing and recompute the whole smoothed series."""
        self.alpha = float(alpha)
        self._ema = self._weight = 0.0
        raw = self.raw.view.copy()
        self.smooth.clear()
        self.smooth.extend(self._smooth_values(raw))

    def clear(self) -> None:
        self.x.clear()
        self.raw.clear()
        self.smooth.clear()
        self._ema = self._weight = 0.0


class _Rows:
    """An (n, 4) float64 array with amortised O(1) growth; rows past ``size`` are scratch."""

    def __init__(self) -> None:
        self.data = np.empty((64, 4), dtype=np.float64)
        self.size = 0

    def reserve(self, needed: int) -> np.ndarray:
        if needed > len(self.data):
            grown = np.empty((max(needed, 2 * len(self.data)), 4), dtype=np.float64)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        return self.data


PEAK_FACTOR = 8
_STRIDES = np.arange(0, PEAK_FACTOR << 16, PEAK_FACTOR, dtype=np.intp)  # reduceat's group starts, sliced


def _group_starts(groups: int) -> np.ndarray:
    """0, 8, 16, ...: the starts of ``groups`` groups of 8 (no new array for the usual few)."""
    return _STRIDES[:groups] if groups <= len(_STRIDES) else np.arange(0, PEAK_FACTOR * groups, PEAK_FACTOR)


class PeakPyramid:
    """The minimum and maximum of a :class:`GrowingArray`'s values over aligned buckets of 8, 64, 512,
    ... values (level k: buckets of ``8 ** (k + 1)``), with the x of each bucket's first and last
    value, and the bounds of all its finite values.

    Brought up to date lazily, when asked, from the values appended since: amortised O(1) per value
    (a level recomputes only its last bucket and the new ones, in one ``reduceat``), and a query
    updates only the levels up to the one it reads. A level's rows are (min, -max, first x, last x):
    one ``np.fmin.reduceat`` merges both extremes, and an envelope reads its x from the level (a
    few KiB) rather than from all over a long x array. NaN values are ignored (a bucket of NaNs
    gives NaN). ``x`` (same length as the values) defaults to the values' indices.
    """

    FACTOR = PEAK_FACTOR

    def __init__(self, values: GrowingArray, x: GrowingArray | None = None) -> None:
        self.values = values
        self.x = x
        self._levels: list[_Rows] = []
        self._synced: list[int] = []  # the number of values each level reflects
        self._generation = values.generation
        self._low = math.inf
        self._high = -math.inf
        self._bounded = 0  # the number of values the finite bounds reflect

    def bucket_size(self, level: int) -> int:
        return self.FACTOR ** (level + 1)

    def x_at(self, indices: np.ndarray) -> np.ndarray:
        """The x of the values at ``indices``."""
        return self.x.view[indices] if self.x is not None else indices.astype(np.float64)

    def x_slice(self, i0: int, i1: int) -> np.ndarray:
        """The x of values [i0, i1) (a view)."""
        return self.x.view[i0:i1] if self.x is not None else np.arange(i0, i1, dtype=np.float64)

    def _reset_if_rewritten(self) -> None:
        if self.values.generation != self._generation or len(self.values) < self._bounded:
            self._generation = self.values.generation
            self._levels, self._synced = [], []
            self._low, self._high, self._bounded = math.inf, -math.inf, 0

    def bounds(self) -> tuple[float, float] | None:
        """(min, max) of the finite values, or None when there is none."""
        self._reset_if_rewritten()
        n = len(self.values)
        if self._bounded < n:
            new = self.values.view[self._bounded:]
            finite = new[np.isfinite(new)]
            if finite.size:
                self._low = min(self._low, float(finite.min()))
                self._high = max(self._high, float(finite.max()))
            self._bounded = n
        return (self._low, self._high) if self._low <= self._high else None

    def level(self, k: int) -> np.ndarray:
        """Level ``k``'s (min, -max, first x, last x) rows, up to date with the values."""
        self._reset_if_rewritten()
        while len(self._levels) <= k:
            self._levels.append(_Rows())
            self._synced.append(0)
        n = len(self.values)
        for j in range(k + 1):
            if self._synced[j] != n:
                self._sync(j, n)
        return self._levels[k].data[: self._levels[k].size]

    def _sync(self, k: int, n: int) -> None:
        """Recompute level ``k`` from its last (maybe partial) bucket on; level k - 1 is up to date."""
        factor, size = self.FACTOR, self.bucket_size(k)
        start = self._synced[k] // size
        count = -(-n // size)
        rows = self._levels[k].reserve(count)[start:count]
        at = _group_starts(count - start)
        if k == 0:
            segment = self.values.view[start * factor: n]
            np.fmin.reduceat(segment, at, out=rows[:, 0])
            np.fmax.reduceat(segment, at, out=rows[:, 1])
            np.negative(rows[:, 1], out=rows[:, 1])
            first = start * factor + at
            rows[:, 2] = self.x_at(first)
            rows[:, 3] = self.x_at(np.minimum(first + factor - 1, n - 1))
        else:
            below = self._levels[k - 1]
            segment = below.data[start * factor: below.size]
            np.fmin.reduceat(segment[:, :2], at, axis=0, out=rows[:, :2])
            rows[:, 2] = segment[at, 2]
            rows[:, 3] = segment[np.minimum(at + factor - 1, len(segment) - 1), 3]
        self._levels[k].size = count
        self._synced[k] = n


class Envelope(NamedTuple):
    """What a curve hands to pyqtgraph: x and y, and whether they are bucket extremes (not raw)."""

    x: np.ndarray
    y: np.ndarray
    decimated: bool


def visible_indices(x: GrowingArray, low: float, high: float) -> tuple[int, int]:
    """The index range [i0, i1) of the values with x in [low, high], plus one neighbour each side
    (so a line reaches the edges). The whole range when x is not sorted."""
    n = len(x)
    if not x.nondecreasing or not (math.isfinite(low) and math.isfinite(high)):
        return 0, n
    i0 = int(np.searchsorted(x.view, low, side="left")) - 1
    i1 = int(np.searchsorted(x.view, high, side="right")) + 1
    return max(i0, 0), min(i1, n)


def envelope(peaks: PeakPyramid, i0: int, i1: int, buckets: int, mode: str = "peak") -> Envelope:
    """At most ``2 * buckets`` points that draw values [i0, i1) of (peaks.x, peaks.values).

    Up to ``2 * buckets`` values are handed as they are. More are split into ``buckets``
    consecutive groups; each gives two points, at its first and last x: (min, max) with
    ``mode="peak"``, (max, max) with "max" and (min, min) with "min" (the edges of a band). The
    groups are unions of the coarsest pyramid level's buckets that fit (fewer than 8 per group:
    of the values), so the cost is O(buckets), whatever the number of values.
    """
    y = peaks.values
    n_visible = i1 - i0
    if n_visible <= 2 * buckets:
        return Envelope(peaks.x_slice(i0, i1), y.view[i0:i1], False)
    per_group = n_visible / buckets
    k = int(math.floor(math.log(per_group, peaks.FACTOR) + 1e-9)) - 1
    while k >= 0 and peaks.bucket_size(k) > per_group:  # (rounding)
        k -= 1
    starts = np.arange(buckets, dtype=np.intp)
    if k < 0:  # fewer than 8 values per group: group the values themselves (at most 8 per group)
        starts = starts * n_visible // buckets
        segment = y.view[i0:i1]
        low, high = np.fmin.reduceat(segment, starts), np.fmax.reduceat(segment, starts)
        first_x = peaks.x_at(i0 + starts)
        last_x = peaks.x_at(i0 + np.append(starts[1:], n_visible) - 1)
    else:
        size = peaks.bucket_size(k)
        first_unit = i0 // size
        rows = peaks.level(k)[first_unit: -(-i1 // size)]
        starts = starts * len(rows) // buckets  # len(rows) >= buckets: the group starts differ
        merged = np.fmin.reduceat(rows[:, :2], starts, axis=0)
        low, high = merged[:, 0], -merged[:, 1]
        first_x = rows[starts, 2]
        last_x = rows[np.append(starts[1:], len(rows)) - 1, 3]
    xs = np.empty(2 * buckets)
    xs[0::2], xs[1::2] = first_x, last_x
    ys = np.empty(2 * buckets)
    ys[0::2] = high if mode == "max" else low
    ys[1::2] = low if mode == "min" else high
    return Envelope(xs, ys, True)


def ema(values: Sequence[float], alpha: float) -> np.ndarray:
    series = EmaSeries(alpha)
    series.extend(range(len(values)), values)
    return series.smooth.view.copy()


def split_metric_rows(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """metrics.jsonl rows -> (step columns: step/loss/accuracy/lr, validation columns: step/accuracy/ci95)."""
    steps: dict[str, list[float]] = {"step": [], "loss": [], "accuracy": [], "lr": []}
    vals: dict[str, list[float]] = {"step": [], "accuracy": [], "ci95": []}
    for row in rows:
        kind = row.get("kind", "step")
        try:
            if kind == "step":
                values = [float(row.get(k, math.nan)) for k in ("step", "loss", "accuracy", "lr")]
                for key, value in zip(("step", "loss", "accuracy", "lr"), values):
                    steps[key].append(value)
            elif kind == "validation":
                values = [float(row.get(k, math.nan)) for k in ("step", "accuracy", "ci95")]
                for key, value in zip(("step", "accuracy", "ci95"), values):
                    vals[key].append(value)
        except (TypeError, ValueError):
            continue
    return steps, vals
