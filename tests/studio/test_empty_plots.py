"""Plots that mean something before and between runs (issue 22): an empty plot says what will appear
there over sane axes, one validation shows its interval as a bar, one point does not make a
19.6..20.4 axis, a new run starts from fresh y ranges, and no legend floats over the curves."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from studio.widgets.accuracy_histogram import AccuracyHistogram
from studio.widgets.eval_charts import BarChart, ConfusionMatrixView
from studio.widgets.plot_parts import widen_single_value_ranges
from studio.widgets.training_plots import EMPTY_TEXT, TrainingPlots


def _steps(start: int, stop: int, loss: float = 1.0) -> list[SimpleNamespace]:
    return [SimpleNamespace(step=s, loss=loss * (1 + 0.1 * (s % 3)), accuracy=0.5, lr=1e-3) for s in range(start, stop)]


def _shown(qtbot, widget):
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _plots(qtbot) -> TrainingPlots:
    plots = _shown(qtbot, TrainingPlots())
    plots.timer.stop()
    return plots


def test_empty_training_plots_say_what_will_appear_over_sane_axes(qtbot):
    plots = _plots(qtbot)
    for name in plots.PLOTS:
        assert plots.hints[name].is_shown() and plots.hints[name].text == EMPTY_TEXT[name]
        assert plots.widgets[name].getPlotItem().viewRange()[1] == [0.0, 1.0]  # not the band's -0.5..0.5
    plots.add_steps(_steps(1, 30))
    plots.refresh(everything=True)
    assert not any(plots.hints[name].is_shown() for name in ("loss", "accuracy", "lr"))
    assert plots.hints["val"].is_shown()  # no validation yet
    plots.add_validation(20, 0.6, 0.05)
    plots.refresh(everything=True)
    assert not plots.hints["val"].is_shown()


def test_a_lone_validation_shows_its_interval_as_a_bar_then_the_band_takes_over(qtbot):
    plots = _plots(qtbot)
    plots.set_step_range(100)
    plots.add_validation(20, 0.6, 0.05)
    plots.refresh(everything=True)
    bar = plots.val_error_bar
    assert bar.isVisible() and bar.opts["x"][0] == 20 and bar.opts["y"][0] == 0.6
    assert np.isclose(bar.opts["height"][0], 0.1)  # the 95% interval 0.55..0.65
    assert plots.val_band.path().isEmpty()
    low, high = plots.val_plot.viewRange()[1]
    assert low <= 0.55 and high >= 0.65
    plots.add_validation(40, 0.7, 0.04)
    plots.refresh(everything=True)
    assert not bar.isVisible()
    band = plots.val_band.path().boundingRect()
    assert np.isclose(band.top(), 0.55) and np.isclose(band.bottom(), 0.74)
    assert np.isclose(band.left(), 20) and np.isclose(band.right(), 40)


def _wheel(widget: pg.PlotWidget, steps: int) -> None:
    """A real mouse-wheel event over the middle of the plot (pyqtgraph zooms, as by the user)."""
    viewport = widget.viewport()
    centre = QPointF(viewport.rect().center())
    event = QWheelEvent(centre, QPointF(viewport.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)


def test_a_new_run_starts_with_fresh_y_ranges_even_after_a_zoom(qtbot):
    plots = _plots(qtbot)
    plots.set_step_range(100)
    plots.add_steps(_steps(1, 100, loss=100.0))
    plots.refresh(everything=True)
    before = plots.loss_plot.viewRange()[1]
    assert before[1] >= 100
    _wheel(plots.widgets["loss"], 3)  # the user zooms the previous run
    zoomed = plots.loss_plot.viewRange()[1]
    assert zoomed != before
    plots.clear()  # a new run
    plots.refresh(everything=True)
    assert plots.loss_plot.viewRange()[1] == [0.0, 1.0] and plots.hints["loss"].is_shown()
    plots.add_steps(_steps(1, 50, loss=0.2))
    plots.refresh(everything=True)
    low, high = plots.loss_plot.viewRange()[1]
    assert 0.0 <= low <= 0.2 and 0.24 <= high < 1.0  # fitted to the new run's 0.2..0.24


def test_overlays_are_named_above_the_plots_not_by_a_legend_over_the_curves(qtbot):
    plots = _plots(qtbot)
    rows = [{"kind": "step", "step": s, "loss": 1.0 / s, "accuracy": 0.5, "lr": 1e-3} for s in range(1, 20)]
    long_name = "20261207-013023-protonet-5-way-1-shot-built-in-glyphs-876c"
    plots.set_overlays([("run A", rows), (long_name, rows)])
    qtbot.waitUntil(lambda: plots.legend.isVisible())
    for name in plots.PLOTS:
        plot = plots.widgets[name].getPlotItem()
        assert plot.legend is None
        assert not [item for item in plot.scene().items() if isinstance(item, pg.LegendItem)]
    text = plots.legend.text()
    assert "this run" in text and "run A" in text and "876c" in text and "…" in text  # elided in the middle
    assert long_name in plots.legend.toolTip()
    assert plots.legend.geometry().bottom() < plots.graphics.geometry().top()  # above the plots
    plots.set_overlays([])
    assert not plots.legend.isVisible()


def test_one_point_does_not_make_a_tiny_axis(qtbot):
    widget = _shown(qtbot, pg.PlotWidget())
    widen_single_value_ranges(widget.getPlotItem())  # as the race plot and the training plots do
    curve = widget.plot([20.0], [0.6], symbol="o")
    qtbot.waitUntil(lambda: widget.getPlotItem().viewRange()[0][1] >= 20)
    (x0, x1), (y0, y1) = widget.getPlotItem().viewRange()
    assert x0 <= 0 and 24 <= x1 <= 26 and y0 <= 0.54 and y1 >= 0.66 and y1 - y0 < 0.3
    curve.setData([20.0, 40.0], [0.6, 0.7])  # two points: fitted as usual
    qtbot.waitUntil(lambda: widget.getPlotItem().viewRange()[0][0] > 15)
    plots = _plots(qtbot)
    plots.load_metrics([{"kind": "step", "step": 20, "loss": 0.5, "accuracy": 0.5, "lr": 1e-3}])
    qtbot.waitUntil(lambda: plots.loss_plot.viewRange()[0][0] <= 0)
    assert plots.loss_plot.viewRange()[0][1] >= 24


def test_empty_evaluation_charts_show_a_text_not_empty_axes(qtbot):
    matrix = _shown(qtbot, ConfusionMatrixView())
    left = matrix.plot.getAxis("left")
    assert matrix.hint.is_shown() and "confusion matrix" in matrix.hint.text
    assert not left.style["showValues"] and "x0.001" not in left.labelString()
    (x0, x1), (y0, y1) = matrix.plot.viewRange()
    assert -0.5 <= x0 < x1 <= 1.5 and -0.5 <= y0 < y1 <= 1.5  # 0..1 (widened by the locked aspect)
    matrix.set_matrix(np.array([[3, 1], [0, 4]]), ["a", "b"])
    assert not matrix.hint.is_shown() and left.style["showValues"]
    matrix.image.clear()  # how the Evaluation view empties it
    assert matrix.hint.is_shown() and matrix.matrix.size == 0 and not left.style["showValues"]
    bars = _shown(qtbot, BarChart())
    assert bars.hint.is_shown() and "accuracy of each test class" in bars.hint.text
    bars.set_values([0.5, 0.7])
    assert not bars.hint.is_shown()
    bars.set_values([])
    assert bars.hint.is_shown()
    histogram = _shown(qtbot, AccuracyHistogram())
    assert histogram.hint.is_shown() and not histogram.getAxis("left").style["showValues"]
    histogram.set_data([(0.4, 0.6, [0, 1]), (0.6, 0.8, [2])], 0.55, 0.1)
    assert not histogram.hint.is_shown() and histogram.getAxis("left").style["showValues"]
