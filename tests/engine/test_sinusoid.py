"""The sinusoid regression task family (Finn et al. 2017)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.data.sinusoid import SinusoidTask, SinusoidTasks
from engine.errors import ConfigError


def test_shapes_and_dtypes() -> None:
    task = SinusoidTasks(seed=0).sample(k_shot=5, k_query=7)
    assert isinstance(task, SinusoidTask)
    assert task.x_support.shape == (5, 1) and task.y_support.shape == (5, 1)
    assert task.x_query.shape == (7, 1) and task.y_query.shape == (7, 1)
    for tensor in (task.x_support, task.y_support, task.x_query, task.y_query):
        assert tensor.dtype == torch.float32
    assert SinusoidTasks(seed=0).sample(3).x_query.shape == (10, 1)   # k_query defaults to 10


def test_ranges_respected_over_many_samples() -> None:
    tasks = SinusoidTasks(seed=1).sample_batch(500, k_shot=10, k_query=10)
    amplitudes = torch.tensor([t.amplitude for t in tasks])
    phases = torch.tensor([t.phase for t in tasks])
    xs = torch.cat([torch.cat([t.x_support, t.x_query]) for t in tasks])
    assert amplitudes.min() >= 0.1 and amplitudes.max() <= 5.0
    assert phases.min() >= 0.0 and phases.max() <= math.pi
    assert xs.min() >= -5.0 and xs.max() <= 5.0
    # the draws cover their ranges (not stuck at a constant)
    assert amplitudes.max() - amplitudes.min() > 4.0
    assert phases.max() - phases.min() > 2.5
    assert xs.max() - xs.min() > 9.5


def test_custom_ranges() -> None:
    tasks = SinusoidTasks(seed=2, amplitude_range=(1.0, 2.0), phase_range=(0.5, 0.6),
                          x_range=(0.0, 1.0)).sample_batch(50, k_shot=4)
    assert all(1.0 <= t.amplitude <= 2.0 and 0.5 <= t.phase <= 0.6 for t in tasks)
    assert all(float(t.x_support.min()) >= 0.0 and float(t.x_support.max()) <= 1.0 for t in tasks)


def test_y_matches_formula() -> None:
    for task in SinusoidTasks(seed=3).sample_batch(20, k_shot=5, k_query=15):
        expected_s = task.amplitude * torch.sin(task.x_support - task.phase)
        expected_q = task.amplitude * torch.sin(task.x_query - task.phase)
        torch.testing.assert_close(task.y_support, expected_s)
        torch.testing.assert_close(task.y_query, expected_q)
        torch.testing.assert_close(task.true_curve(task.x_query), task.y_query)


def test_true_curve_on_a_grid() -> None:
    task = SinusoidTask(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(0, 1), torch.zeros(0, 1),
                        amplitude=2.0, phase=math.pi / 2)
    grid = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(task.true_curve(grid), -2.0 * torch.cos(grid))


def test_deterministic_in_seed() -> None:
    first = SinusoidTasks(seed=7).sample_batch(5, k_shot=3, k_query=4)
    second = SinusoidTasks(seed=7).sample_batch(5, k_shot=3, k_query=4)
    other = SinusoidTasks(seed=8).sample_batch(5, k_shot=3, k_query=4)
    for a, b in zip(first, second):
        assert (a.amplitude, a.phase) == (b.amplitude, b.phase)
        assert torch.equal(a.x_support, b.x_support) and torch.equal(a.y_query, b.y_query)
    assert [t.amplitude for t in first] != [t.amplitude for t in other]


def test_successive_tasks_differ() -> None:
    sampler = SinusoidTasks(seed=0)
    a, b = sampler.sample(5), sampler.sample(5)
    assert a.amplitude != b.amplitude and not torch.equal(a.x_support, b.x_support)


def test_unpacks_as_tuple() -> None:
    x_s, y_s, x_q, y_q, amplitude, phase = SinusoidTasks(seed=0).sample(2, 3)
    assert x_s.shape == (2, 1) and y_q.shape == (3, 1)
    assert isinstance(amplitude, float) and isinstance(phase, float)


@pytest.mark.parametrize("k_shot", [0, -1, 1.5, True])
def test_bad_k_shot_names_the_field(k_shot: object) -> None:
    with pytest.raises(ConfigError, match="k_shot"):
        SinusoidTasks(seed=0).sample(k_shot)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k_shot"):
        SinusoidTasks(seed=0).sample_batch(2, k_shot)  # type: ignore[arg-type]


def test_other_bad_input_names_the_field() -> None:
    with pytest.raises(ConfigError, match="k_query"):
        SinusoidTasks().sample(5, k_query=-1)
    with pytest.raises(ConfigError, match="amplitude_range"):
        SinusoidTasks(amplitude_range=(5.0, 1.0))
    with pytest.raises(ConfigError, match="x_range"):
        SinusoidTasks(x_range=(0.0, float("inf")))
    with pytest.raises(ConfigError, match="phase_range"):
        SinusoidTasks(phase_range="wide")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="seed"):
        SinusoidTasks(seed=-3)
    with pytest.raises(ConfigError, match="n must"):
        SinusoidTasks().sample_batch(0, 5)
