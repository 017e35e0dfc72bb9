"""studio.widgets (training plots, series, charts): amortised storage, smoothing, refresh only on new data, overlays, hover, confusion matrix."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from studio.widgets.eval_charts import ConfusionMatrixView
from studio.widgets.plot_parts import BufferedCurve
from studio.widgets.plot_series import EmaSeries, GrowingArray, split_metric_rows
from studio.widgets.training_plots import TrainingPlots


def _steps(start: int, stop: int):
    return [SimpleNamespace(step=s, loss=1.0 / s, accuracy=s / 1000, lr=1e-3) for s in range(start, stop)]


def test_growing_array_doubles_and_keeps_values():
    array = GrowingArray(capacity=4)
    capacities = set()
    for i in range(1000):
        array.append(i)
        capacities.add(array.capacity)
    array.extend(np.arange(1000, 1500))
    assert np.array_equal(array.view, np.arange(1500))
    assert sorted(capacities) == [4 * 2**k for k in range(9)]  # 4, 8, ..., 1024: O(log n) growths
    assert array.capacity == 2048


def test_incremental_ema_equals_recomputed_ema():
    values = list(np.random.default_rng(0).normal(size=300))
    incremental = EmaSeries(alpha=0.9)
    for i in range(0, 300, 7):
        incremental.extend(range(i, min(i + 7, 300)), values[i:i + 7])
    recomputed = EmaSeries(alpha=0.0)
    recomputed.extend(range(300), values)
    recomputed.set_alpha(0.9)
    assert np.allclose(incremental.smooth.view, recomputed.smooth.view)
    assert incremental.smooth.view[0] == values[0]  # bias-corrected: starts at the first value
    raw = EmaSeries(alpha=0.0)
    raw.extend(range(300), values)
    assert np.allclose(raw.smooth.view, values)


def _reference_ema(values: list[float], alpha: float) -> np.ndarray:
    """The bias-corrected EMA, one value at a time (non-finite values skipped, shown as NaN)."""
    out, ema, weight = [], 0.0, 0.0
    for y in values:
        if not np.isfinite(y):
            out.append(np.nan)
            continue
        ema, weight = alpha * ema + (1 - alpha) * y, alpha * weight + (1 - alpha)
        out.append(ema / weight)
    return np.array(out)


def test_smoothing_a_long_run_in_chunks_equals_the_value_by_value_average():
    rng = np.random.default_rng(3)
    values = rng.normal(size=30_000) * 5 + 2
    values[rng.integers(0, len(values), size=300)] = np.nan
    values[7] = np.inf
    for alpha in (0.0, 0.01, 0.5, 0.85, 0.99):
        series = EmaSeries(alpha)
        done = 0
        for size in (10, 70, 5_000, 3, 20_000):  # small batches (the loop) and large ones (in chunks)
            series.extend(range(done, done + size), values[done: done + size])
            done += size
        series.extend(range(done, len(values)), values[done:])
        expected = _reference_ema(values.tolist(), alpha)
        assert np.allclose(series.smooth.view, expected, rtol=1e-12, atol=1e-12, equal_nan=True), alpha
        series.set_alpha(alpha)  # the whole series at once
        assert np.allclose(series.smooth.view, expected, rtol=1e-12, atol=1e-12, equal_nan=True), alpha


def test_plots_update_only_with_new_data(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.timer.stop()
    plots.refresh(everything=True)
    assert not plots.refresh()  # nothing new: nothing drawn
    plots.add_steps(_steps(1, 101))
    plots.add_validation(50, 0.6, 0.05)
    plots.refresh(everything=True)
    x, y = plots.loss_curve.getData()
    assert np.array_equal(x, np.arange(1, 101)) and len(y) == 100
    assert np.allclose(plots.loss_raw.getData()[1], 1.0 / np.arange(1, 101))
    assert np.allclose(plots.val_upper.getData()[1], [0.65]) and np.allclose(plots.val_lower.getData()[1], [0.55])
    assert not plots.refresh()
    curve = plots.loss_curve
    plots.add_steps(_steps(101, 111))
    assert plots.refresh(everything=True)
    assert plots.loss_curve is curve  # curves are built once and updated
    for name in plots.PLOTS:  # the curves clip and down-sample themselves (BufferedCurve), not pyqtgraph
        assert all(isinstance(curve, BufferedCurve) for curve in plots.widgets[name].getPlotItem().listDataItems())


def _plots_on_a_clock(qtbot, plots_per_tick: int) -> tuple[TrainingPlots, dict[str, float]]:
    """Plots whose timer is stopped (the test ticks) and whose clock is ``clock["now"]``."""
    plots = TrainingPlots(plots_per_tick=plots_per_tick)  # (draws once, on the real clock)
    clock = {"now": time.monotonic() + 10.0}
    qtbot.addWidget(plots)
    plots.timer.stop()
    plots.clock = lambda: clock["now"]
    return plots, clock


def test_refresh_spreads_plots_over_timer_ticks(qtbot):
    plots, clock = _plots_on_a_clock(qtbot, plots_per_tick=1)
    plots.refresh(everything=True)
    clock["now"] += 1.0  # every plot is due again
    plots.add_steps(_steps(1, 11))   # loss, accuracy and lr change
    updated = 0
    while plots.refresh():
        updated += 1
    assert updated == 3
    assert len(plots.lr_curve.getData()[0]) == 10


def test_while_data_streams_each_plot_is_redrawn_at_most_at_its_rate(qtbot, monkeypatch):
    plots, clock = _plots_on_a_clock(qtbot, plots_per_tick=4)
    plots.clear()
    redraws = {name: 0 for name in plots.PLOTS}
    update = plots._update_plot
    monkeypatch.setattr(plots, "_update_plot", lambda name: (redraws.__setitem__(name, redraws[name] + 1),
                                                             update(name))[1])
    start = clock["now"]
    for tick in range(120):  # 10 s of 12 Hz ticks, a step per tick, a validation every 2 s
        clock["now"] = start + (tick + 1) * 0.083  # QTimer's interval for 12 Hz: int(1000 / 12) ms
        plots.add_steps(_steps(tick + 1, tick + 2))
        if tick % 24 == 23:
            plots.add_validation(tick + 1, 0.5, 0.05)
        plots.refresh()
    assert redraws["loss"] == redraws["accuracy"] == 20  # PLOT_HZ 2: every 6th tick, not every tick
    assert redraws["lr"] == 10  # once a second
    assert redraws["val"] == 1 + 5  # the cleared plot at the first tick, then each validation at once
    assert len(plots.loss_curve.getData()[0]) == 115  # the curve lags the data by at most half a second
    plots.refresh(everything=True)  # the end of a run (or a user action) draws everything now
    assert len(plots.loss_curve.getData()[0]) == 120 and len(plots.lr_curve.getData()[0]) == 120


def test_new_points_repaint_the_curve_but_not_the_axes_until_their_range_changes(qtbot, monkeypatch):
    import pyqtgraph as pg

    axis_paints: list[str] = []
    curve_paints: list[int] = []
    axis_paint, curve_paint = pg.AxisItem.paint, pg.PlotCurveItem.paint
    monkeypatch.setattr(pg.AxisItem, "paint",
                        lambda self, *args: (axis_paints.append(self.orientation), axis_paint(self, *args))[1])
    monkeypatch.setattr(pg.PlotCurveItem, "paint",
                        lambda self, *args: (curve_paints.append(1), curve_paint(self, *args))[1])
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.resize(900, 600)
    plots.show()
    plots.timer.stop()
    plots.set_step_range(1000)
    plots.add_steps(_steps(1, 101))
    plots.refresh(everything=True)
    qtbot.waitExposed(plots)
    qtbot.wait(50)
    loss_axis = plots.loss_plot.getAxis("left")
    labels_before = [s for _, s in loss_axis.tickValues(*plots.loss_plot.viewRange()[1], 300)]
    axis_paints.clear()
    curve_paints.clear()
    for start in range(101, 141, 10):  # within the y ranges: the curves grow, the axes stay as they are
        plots.add_steps([SimpleNamespace(step=s, loss=0.5, accuracy=0.05, lr=1e-3) for s in range(start, start + 10)])
        plots.refresh(everything=True)
        qtbot.wait(30)
    assert curve_paints and axis_paints == []  # the axes and grid came from their cached pixmaps
    plots.add_steps([SimpleNamespace(step=141, loss=50.0, accuracy=0.5, lr=1e-3)])  # leaves the range
    plots.refresh(everything=True)
    qtbot.waitUntil(lambda: "left" in axis_paints, timeout=2000)  # re-rendered for the new range
    assert plots.loss_plot.viewRange()[1][1] >= 50.0
    assert [s for _, s in loss_axis.tickValues(*plots.loss_plot.viewRange()[1], 300)] != labels_before


def test_smoothing_slider_changes_the_smoothed_curve(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    values = np.random.default_rng(1).random(50)
    plots.add_steps([SimpleNamespace(step=i + 1, loss=v, accuracy=0.5, lr=1e-3) for i, v in enumerate(values)])
    plots.set_smoothing(0.0)
    assert np.allclose(plots.loss_curve.getData()[1], values)
    plots.set_smoothing(0.9)
    smooth = plots.loss_curve.getData()[1]
    assert np.std(np.diff(smooth)) < np.std(np.diff(values))


def test_overlays_and_hover_readout(qtbot):
    plots = TrainingPlots()
    qtbot.addWidget(plots)
    rows = [{"kind": "step", "step": s, "loss": 2.0 / s, "accuracy": 0.1, "lr": 1e-3} for s in range(1, 31)]
    rows.append({"kind": "validation", "step": 30, "accuracy": 0.7, "ci95": 0.02})
    plots.set_smoothing(0.0)
    plots.set_overlays([("run A", rows), ("run B", rows[:10])])
    assert plots.n_overlays == 2
    names = [item.name() for item in plots.val_plot.listDataItems()]
    assert "run A" in names and "run B" in names
    plots.add_steps(_steps(1, 21))
    plots.refresh(everything=True)
    text = plots.readouts[0].show_at(10.2)
    assert text.startswith("step 10") and "loss: 0.1" in text and "run A: " in text
    plots.set_overlays([])
    assert plots.n_overlays == 0
    assert [item.name() for item in plots.val_plot.listDataItems() if item.name()] == ["val accuracy"]


def test_split_metric_rows_skips_malformed_rows():
    rows = [{"kind": "step", "step": 1, "loss": 1.0, "accuracy": 0.5, "lr": 0.1},
            {"kind": "step", "step": "x"}, {"kind": "validation", "step": 1, "accuracy": 0.4, "ci95": 0.1},
            {"kind": "other"}]
    steps, vals = split_metric_rows(rows)
    assert steps["step"] == [1.0] and vals["accuracy"] == [0.4]


def test_confusion_matrix_view_is_row_normalised(qtbot):
    view = ConfusionMatrixView()
    qtbot.addWidget(view)
    counts = np.array([[8, 2, 0], [0, 5, 5], [0, 0, 0]])
    view.set_matrix(counts, ["a", "b", "c"])
    assert view.image.image.shape == (3, 3)
    assert np.allclose(view.matrix[0], [0.8, 0.2, 0.0]) and np.allclose(view.matrix[2], 0.0)
    ticks = view.plot.getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks] == ["0", "1", "2"]
