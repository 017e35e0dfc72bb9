"""A redraw of the live plots costs what is on screen, not the run's length (issue 23): min/max
pyramids kept incrementally, envelopes that hold each group's true extremes, a bounded number of
points handed to pyqtgraph whatever the history, and full detail when zoomed in."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from studio.widgets.plot_series import GrowingArray, PeakPyramid, envelope, visible_indices
from studio.widgets.training_plots import TrainingPlots


def _filled(values: np.ndarray, chunks: list[int]) -> tuple[GrowingArray, PeakPyramid]:
    """values appended in chunks of the given sizes, at x = 2 * index + 1, the pyramid asked (so kept
    up to date) in between."""
    array, x = GrowingArray(capacity=4), GrowingArray(capacity=4)
    pyramid = PeakPyramid(array, x)
    done = 0
    for size in chunks:
        x.extend(2.0 * np.arange(done, done + size) + 1)
        array.extend(values[done: done + size])
        done += size
        pyramid.level(2)
    x.extend(2.0 * np.arange(done, len(values)) + 1)
    array.extend(values[done:])
    return array, pyramid


def _noisy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(size=n)) + 5 * rng.standard_cauchy(size=n).clip(-50, 50)
    values[rng.integers(0, n, size=n // 97)] = np.nan  # non-finite losses happen
    return values


def test_incremental_pyramid_equals_one_built_at_once():
    values = _noisy(50_000)
    chunks = list(np.random.default_rng(1).integers(1, 700, size=150))
    incremental = _filled(values, chunks)[1]
    at_once = _filled(values, [])[1]
    for k in range(4):
        assert np.array_equal(incremental.level(k), at_once.level(k), equal_nan=True)
    assert incremental.bounds() == (np.nanmin(values), np.nanmax(values))


def test_a_cleared_and_refilled_array_rebuilds_its_pyramid():
    array, pyramid = _filled(_noisy(5_000), [])
    pyramid.level(1)
    array.clear()
    array.extend(np.arange(5_000.0))  # the same length: only the generation tells it changed
    assert np.array_equal(pyramid.level(0)[:, 0], np.arange(0, 5_000, 8))
    assert np.array_equal(pyramid.level(0)[:, 3], 2.0 * np.minimum(np.arange(7, 5_007, 8), 4_999) + 1)
    assert pyramid.bounds() == (0.0, 4999.0)


@pytest.mark.parametrize("n", [3_000, 40_000, 700_000])
@pytest.mark.parametrize("mode", ["peak", "max", "min"])
def test_each_drawn_group_holds_the_true_min_and_max_of_its_values(n, mode):
    values = _noisy(n, seed=n)
    y, pyramid = _filled(values, [n // 3, 17, n // 5])  # x = 2 * index + 1: the drawn x tell the indices
    rng = np.random.default_rng(2)
    for i0, i1, buckets in [(0, n, 500), (int(rng.integers(0, n // 2)), n, 333),
                            (n // 7, n // 7 + 4 * 301, 301), (5, n - 5, 64)]:
        shown = envelope(pyramid, i0, i1, buckets, mode)
        assert len(shown.x) <= 2 * buckets and shown.decimated
        first, last = (shown.x[0::2].astype(int) - 1) // 2, (shown.x[1::2].astype(int) - 1) // 2
        assert first[0] <= i0 and last[-1] >= i1 - 1 and np.all(first[1:] == last[:-1] + 1)  # no gap
        for j in range(len(first)):
            group = values[first[j]: last[j] + 1]
            low, high = np.nanmin(group), np.nanmax(group)
            expected = {"peak": (low, high), "max": (high, high), "min": (low, low)}[mode]
            assert (shown.y[2 * j], shown.y[2 * j + 1]) == expected, f"group {j} of [{i0}, {i1})"


def test_few_values_are_drawn_as_they_are():
    values = _noisy(900)
    y, pyramid = _filled(values, [])
    shown = envelope(pyramid, 100, 700, 300)
    assert not shown.decimated
    assert np.array_equal(shown.y, values[100:700], equal_nan=True)
    assert np.array_equal(shown.x, 2.0 * np.arange(100, 700) + 1)
    assert visible_indices(pyramid.x, 198.5, 401.2) == (98, 202)  # plus a neighbour each side


def _steps(start: int, stop: int) -> list[SimpleNamespace]:
    rng = np.random.default_rng(start)
    return [SimpleNamespace(step=s, loss=1.0 / s + rng.random(), accuracy=rng.random(), lr=1e-3)
            for s in range(start, stop)]


def _plots(qtbot) -> TrainingPlots:
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.timer.stop()
    plots.resize(1000, 700)
    plots.show()
    qtbot.waitExposed(plots)
    return plots


def test_points_handed_per_redraw_do_not_grow_with_the_history(qtbot):
    """1k and 200k steps (and 400 validations) give the curves the same number of points: at most
    two per pixel of the plot's width."""
    small, large = _plots(qtbot), _plots(qtbot)
    small.add_steps(_steps(1, 1_001))
    for start in range(1, 200_001, 25_000):
        large.add_steps(_steps(start, start + 25_000))
    for step in range(500, 200_001, 500):
        large.add_validation(step, 0.5, 0.05)
    for plots in (small, large):
        plots.auto_step_range()  # the view fits all the data: the most a redraw can have to show
        plots.refresh(everything=True)
    width = int(large.loss_plot.getViewBox().width())
    assert width > 100
    for curve in (large.loss_raw, large.loss_curve, large.accuracy_curve, large.lr_curve, large.val_curve):
        assert len(curve.getData()[0]) <= 2 * width
    assert len(large.loss_curve.getData()[0]) == len(small.loss_curve.getData()[0])
    assert large.points_handed() <= small.points_handed() + 3 * 2 * width  # + the validation curves
    x, y = large.loss_raw.getData()  # yet the extremes of all 200k steps are drawn
    assert np.nanmax(y) == np.nanmax(large.loss.raw.view) and np.nanmin(y) == np.nanmin(large.loss.raw.view)
    assert x[0] == 1 and x[-1] == 200_000


def test_zooming_in_shows_every_step_of_the_range(qtbot):
    plots = _plots(qtbot)
    plots.add_steps(_steps(1, 100_001))
    plots.set_step_range(100_000)
    plots.refresh(everything=True)
    assert plots.loss_raw.shown.decimated
    plots.loss_plot.setXRange(50_000, 50_300, padding=0)  # as a rectangle zoom does
    x, y = plots.loss_raw.getData()
    assert not plots.loss_raw.shown.decimated
    assert x[0] <= 50_000 and x[-1] >= 50_300 and np.array_equal(np.diff(x), np.ones(len(x) - 1))
    assert np.array_equal(y, plots.loss.raw.view[int(x[0]) - 1: int(x[-1])])
    assert plots.readouts[0].show_at(50_100.2).startswith("step 50100")


def test_hover_reads_the_full_history_not_the_drawn_envelope(qtbot):
    plots = _plots(qtbot)
    plots.set_smoothing(0.0)
    plots.add_steps(_steps(1, 50_001))
    plots.auto_step_range()
    plots.refresh(everything=True)
    assert plots.loss_curve.shown.decimated
    text = plots.readouts[0].show_at(12_345)
    assert text.startswith("step 12345") and f"loss: {plots.loss.raw.view[12_344]:.4g}" in text


def test_a_wider_plot_gets_more_groups_without_new_data(qtbot):
    plots = _plots(qtbot)
    plots.add_steps(_steps(1, 100_001))
    plots.set_step_range(100_000)  # a fixed range: resizing changes the pixels, not the range
    plots.refresh(everything=True)
    narrow = len(plots.loss_raw.getData()[0])
    width = plots.loss_plot.getViewBox().width()
    assert narrow <= 2 * width
    plots.resize(1800, 700)  # the window grows: one group per pixel still
    qtbot.waitUntil(lambda: plots.loss_plot.getViewBox().width() > width + 300)
    qtbot.waitUntil(lambda: len(plots.loss_raw.getData()[0]) > narrow + 600)
    assert len(plots.loss_raw.getData()[0]) <= 2 * plots.loss_plot.getViewBox().width()


def test_validation_symbols_mark_values_not_group_extremes(qtbot):
    plots = _plots(qtbot)
    for step in range(10, 50_001, 10):  # 5000 validations: more than the plot's pixels
        plots.add_validation(step, 0.5 + 0.1 * np.sin(step / 700), 0.02)
    plots.auto_step_range()
    plots.refresh(everything=True)
    assert plots.val_curve.shown.decimated and plots.val_curve.opts["symbol"] is None
    plots.val_plot.setXRange(20_000, 20_200, padding=0)  # zoomed in: 20 validations, each marked
    assert not plots.val_curve.shown.decimated and plots.val_curve.opts["symbol"] == "o"
    assert len(plots.val_curve.getData()[0]) == 23  # (and a neighbour each side)
