"""The data behind the live plots: growing numpy arrays, EMA-smoothed series, metrics rows.

Qt-free. Arrays grow by doubling (amortised O(1) appends) and a series keeps its smoothed
values incrementally, so a plot's ``setData`` gets a view of the filled part, not a copy.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np


class GrowingArray:
    """A float64 array with amortised O(1) appends (capacity doubles when full)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._data = np.empty(max(1, capacity), dtype=np.float64)
        self._size = 0

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
        self._reserve(self._size + values.size)
        self._data[self._size: self._size + values.size] = values
        self._size += values.size

    def append(self, value: float) -> None:
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

    def _smooth_values(self, ys: Iterable[float]) -> list[float]:
        a = self.alpha
        out = []
        ema, weight = self._ema, self._weight
        for y in ys:
            if not math.isfinite(y):
                out.append(float("nan"))
                continue
            ema = a * ema + (1.0 - a) * y
            weight = a * weight + (1.0 - a)
            out.append(ema / weight if weight > 0 else y)
        self._ema, self._weight = ema, weight
        return out

    def set_alpha(self, alpha: float) -> None:
        """Change the smoothing and recompute the whole smoothed series."""
        self.alpha = float(alpha)
        self._ema = self._weight = 0.0
        raw = self.raw.view.copy()
        self.smooth.clear()
        self.smooth.extend(self._smooth_values(raw.tolist()))

    def clear(self) -> None:
        self.x.clear()
        self.raw.clear()
        self.smooth.clear()
        self._ema = self._weight = 0.0


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
