"""The sinusoid regression task family of Finn et al. 2017 (MAML, section 5.1).

Each task is a sine wave ``y = amplitude * sin(x - phase)`` with the amplitude
drawn uniformly from [0.1, 5.0], the phase uniformly from [0, pi] and the inputs
uniformly from [-5, 5]. (The paper does not fix the sign of the phase; with the
phase uniform over [0, pi] both signs give the same family up to a shift, and
this module uses ``x - phase`` throughout.) A task shows ``k_shot`` labelled
support points and ``k_query`` held-out query points from the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from engine.errors import ConfigError


@dataclass
class SinusoidTask:
    """One regression task.

    Shapes (K = k_shot, Q = k_query): x_support, y_support: [K, 1] float32;
    x_query, y_query: [Q, 1] float32. ``y = amplitude * sin(x - phase)``.
    Unpacks as ``x_support, y_support, x_query, y_query, amplitude, phase``.
    """

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor
    amplitude: float
    phase: float

    def true_curve(self, x: Tensor) -> Tensor:
        """The task's noiseless curve at ``x`` (any shape): ``amplitude * sin(x - phase)``, same shape."""
        return self.amplitude * torch.sin(x - self.phase)

    def __iter__(self) -> Iterator[object]:
        return iter((self.x_support, self.y_support, self.x_query, self.y_query, self.amplitude, self.phase))


def _check_range(name: str, value: tuple[float, float], minimum: float | None = None) -> tuple[float, float]:
    """A (low, high) pair of finite numbers with low <= high (and low >= minimum), else ConfigError."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError(name)
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{name} must be finite with low <= high, got {value!r}")
    if minimum is not None and low < minimum:
        raise ConfigError(f"{name} must not go below {minimum}, got {value!r}")
    return low, high


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class SinusoidTasks:
    """Seeded sampler of sinusoid regression tasks (a torch.Generator on the CPU)."""

    def __init__(self, seed: int = 0, amplitude_range: tuple[float, float] = (0.1, 5.0),
                 phase_range: tuple[float, float] = (0.0, math.pi),
                 x_range: tuple[float, float] = (-5.0, 5.0)) -> None:
        _check_count("seed", seed, 0)
        self.amplitude_range = _check_range("amplitude_range", amplitude_range, minimum=0.0)
        self.phase_range = _check_range("phase_range", phase_range)
        self.x_range = _check_range("x_range", x_range)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, bounds: tuple[float, float], shape: tuple[int, ...]) -> Tensor:
        low, high = bounds
        return low + (high - low) * torch.rand(shape, generator=self.generator, dtype=torch.float32)

    def sample(self, k_shot: int, k_query: int = 10) -> SinusoidTask:
        """One task with ``k_shot`` support and ``k_query`` query points ([K, 1] and [Q, 1] float32)."""
        _check_count("k_shot", k_shot, 1)
        _check_count("k_query", k_query, 0)
        amplitude = float(self._uniform(self.amplitude_range, (1,)).item())
        phase = float(self._uniform(self.phase_range, (1,)).item())
        x = self._uniform(self.x_range, (k_shot + k_query, 1))
        y = amplitude * torch.sin(x - phase)
        return SinusoidTask(x[:k_shot], y[:k_shot], x[k_shot:], y[k_shot:], amplitude, phase)

    def sample_batch(self, n: int, k_shot: int, k_query: int = 10) -> list[SinusoidTask]:
        """``n`` independent tasks (see :meth:`sample`)."""
        _check_count("n", n, 1)
        _check_count("k_shot", k_shot, 1)
        return [self.sample(k_shot, k_query) for _ in range(n)]
