"""Live training curves (pyqtgraph): loss, accuracy, validation accuracy with its band, learning rate.

Curves are created once and updated in place; data lives in numpy arrays that grow by doubling
(amortised O(1) appends), and the plots redraw on a timer only when new points arrived. A redraw
costs what is on screen, not the run's length: each curve is a :class:`BufferedCurve` that hands
pyqtgraph at most two points per pixel of the visible range (min/max envelopes kept incrementally),
and the y range is fitted from bounds kept incrementally too.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from studio.widgets.elide import ElidedLabel, elide_middle
from studio.widgets.plot_parts import (PALETTE, BandItem, BufferedCurve, EmptyHint, HoverReadout, configure_plot,
                                       nice_range, redraw_on_resize)
from studio.widgets.plot_series import EmaSeries, GrowingArray, ema, split_metric_rows

EMPTY_TEXT = {"loss": "The training loss of each step appears here.",
              "accuracy": "The training accuracy of each step appears here.",
              "val": "Validation accuracy (mean, 95% CI) appears here\nafter each validation.",
              "lr": "The learning rate of each step appears here."}
LEGEND_NAME_WIDTH = 240  # pixels of a run's name in the legend line (longer names: elided in the middle)
EMPTY_Y_RANGE = {"loss": (0.0, 1.0), "accuracy": (0.0, 1.0), "val": (0.0, 1.0), "lr": (0.0, 1.0)}


def _buffers(values: Sequence[float]) -> GrowingArray:
    array = GrowingArray(max(16, len(values)))
    array.extend(values)
    return array


@dataclass
class _RunCurves:
    """The curves of one overlaid past run."""

    label: str
    colour: str
    loss: BufferedCurve
    accuracy: BufferedCurve
    val: BufferedCurve
    lr: BufferedCurve


class TrainingPlots(QWidget):
    """Four live plots: training loss, training accuracy, validation accuracy (95% CI band), learning rate.

    Feed it with :meth:`add_steps` (a list of StepMetrics-like objects) and
    :meth:`add_validation`. A timer ticking at ``refresh_hz`` pushes new data to
    at most ``plots_per_tick`` changed plots per tick (round robin), so the GUI
    thread never spends long in one paint, even with a busy training thread.
    Each plot is redrawn at most ``PLOT_HZ[name]`` times a second while data streams
    in (a new validation point shows at the next tick; user actions and the end of a
    run draw at once): on a 2-core machine every plot redraw during training is CPU
    the trainer loses, about 5% of its speed at 12 redraws a second (measured with
    ``bench/bench_studio_overhead.py``). A redraw's cost does not grow with the run
    (``bench/bench_plot_redraw.py``). Past runs can be overlaid with :meth:`set_overlays`;
    a legend above the plots names them. An empty plot says what will appear in it.
    """

    smoothing_changed = Signal(float)
    PLOTS = ("loss", "accuracy", "val", "lr")
    PLOT_HZ = {"loss": 2.0, "accuracy": 2.0, "val": 12.0, "lr": 1.0}

    def __init__(self, refresh_hz: float = 12.0, plots_per_tick: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss = EmaSeries()
        self.accuracy = EmaSeries()
        self.lr_x = GrowingArray()
        self.lr_y = GrowingArray()
        self.val_x = GrowingArray()
        self.val_y = GrowingArray()
        self.val_high = GrowingArray()  # val_y + its 95% CI half-width: the band's edges
        self.val_low = GrowingArray()
        self._dirty: set[str] = set()
        self._drawn_at = {name: -math.inf for name in self.PLOTS}
        self.clock: Callable[[], float] = time.monotonic  # seconds; tests replace it
        self._next = 0
        self.plots_per_tick = plots_per_tick
        self.n_redraws = 0
        self._overlays: list[_RunCurves] = []

        self.widgets = {name: pg.PlotWidget() for name in self.PLOTS}
        self.graphics = QWidget()
        self.graphics.setMinimumSize(400, 300)
        grid = QGridLayout(self.graphics)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        for i, name in enumerate(self.PLOTS):
            grid.addWidget(self.widgets[name], i // 2, i % 2)
        self.loss_plot = self.widgets["loss"].getPlotItem()
        self.accuracy_plot = self.widgets["accuracy"].getPlotItem()
        self.val_plot = self.widgets["val"].getPlotItem()
        self.lr_plot = self.widgets["lr"].getPlotItem()
        configure_plot(self.loss_plot, "Training loss", "loss")
        configure_plot(self.accuracy_plot, "Training accuracy", "accuracy")
        configure_plot(self.val_plot, "Validation accuracy (95% CI)", "accuracy")
        configure_plot(self.lr_plot, "Learning rate", "lr")
        self._build_curves()
        self.hints = {name: EmptyHint(self.widgets[name].getPlotItem(), EMPTY_TEXT[name]) for name in self.PLOTS}
        self._follow = {name: True for name in self.PLOTS}
        self._fitted = {name: False for name in self.PLOTS}
        for name in self.PLOTS:
            plot = self.widgets[name].getPlotItem()
            plot.getViewBox().sigRangeChangedManually.connect(lambda *_, n=name: self._follow.__setitem__(n, False))
            redraw_on_resize(plot, lambda n=name: self._curves_of(n))
        self.readouts = [HoverReadout(self.loss_plot), HoverReadout(self.accuracy_plot),
                         HoverReadout(self.val_plot), HoverReadout(self.lr_plot, fmt="{:.3g}")]
        self._build_bar()
        for name in self.PLOTS:
            self._show_empty(name)
        self._smoothing_moved(self.smoothing_slider.value())

        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / refresh_hz))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def _build_curves(self) -> None:
        raw_pen = pg.mkPen(QColor(31, 119, 180, 70), width=1)
        main_pen = pg.mkPen(PALETTE[0], width=2)
        self.loss_raw = self._curve(self.loss_plot, self.loss.x, self.loss.raw, pen=raw_pen)
        self.loss_curve = self._curve(self.loss_plot, self.loss.x, self.loss.smooth, pen=main_pen, name="loss")
        self.accuracy_raw = self._curve(self.accuracy_plot, self.accuracy.x, self.accuracy.raw, pen=raw_pen)
        self.accuracy_curve = self._curve(self.accuracy_plot, self.accuracy.x, self.accuracy.smooth, pen=main_pen,
                                          name="accuracy")
        self.val_upper = self._curve(self.val_plot, self.val_x, self.val_high, mode="max", pen=pg.mkPen(None))
        self.val_lower = self._curve(self.val_plot, self.val_x, self.val_low, mode="min", pen=pg.mkPen(None))
        self.val_upper.hide()  # the band's edges: drawn by the band, bounds fitted by _fit_y
        self.val_lower.hide()
        self.val_band = BandItem(self.val_upper, self.val_lower, brush=(214, 39, 40, 50))
        self.val_plot.addItem(self.val_band, ignoreBounds=True)
        self.val_error_bar = pg.ErrorBarItem(x=np.empty(0), y=np.empty(0), height=np.empty(0), beam=0.0,
                                             pen=pg.mkPen(PALETTE[1], width=2))
        self.val_error_bar.hide()
        self.val_plot.addItem(self.val_error_bar)  # a lone validation's interval (no band with one point)
        self.val_curve = self._curve(self.val_plot, self.val_x, self.val_y, pen=pg.mkPen(PALETTE[1], width=2),
                                     symbol="o", symbolSize=5, symbolBrush=PALETTE[1], symbolPen=None,
                                     name="val accuracy")
        self.lr_curve = self._curve(self.lr_plot, self.lr_x, self.lr_y, pen=pg.mkPen(PALETTE[2], width=2), name="lr")
        self.main_curves = {"loss": self.loss_curve, "accuracy": self.accuracy_curve, "val": self.val_curve,
                            "lr": self.lr_curve}
        self._own_curves = {"loss": [self.loss_raw, self.loss_curve],
                            "accuracy": [self.accuracy_raw, self.accuracy_curve],
                            "val": [self.val_upper, self.val_lower, self.val_curve], "lr": [self.lr_curve]}

    @staticmethod
    def _curve(plot: pg.PlotItem, x: GrowingArray, y: GrowingArray, mode: str = "peak",
               **options: Any) -> BufferedCurve:
        curve = BufferedCurve(x, y, mode, **options)
        plot.addItem(curve)
        return curve

    def _build_bar(self) -> None:
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, 99)
        self.smoothing_slider.setValue(85)
        self.smoothing_slider.setFixedWidth(160)
        self.smoothing_slider.setToolTip("Exponential moving average of the training curves "
                                         "(0 = raw values; the raw curve stays visible, faint).")
        self.smoothing_label = QLabel()
        self.smoothing_slider.valueChanged.connect(self._smoothing_moved)
        self.show_raw = QCheckBox("raw")
        self.show_raw.setChecked(True)
        self.show_raw.setToolTip("Show the unsmoothed training curves, faint, behind the smoothed ones.")
        self.show_raw.toggled.connect(self._toggle_raw)
        self.status_label = ElidedLabel("No run yet: press Train.")
        self.status_label.setStyleSheet("color: #606060;")
        self.legend = QLabel("")  # above the plots: it never hides a curve
        self.legend.setObjectName("plots_legend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.hide()
        bar = QHBoxLayout()
        bar.addWidget(self.status_label, 1)
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing_slider)
        bar.addWidget(self.smoothing_label)
        bar.addWidget(self.show_raw)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.legend)
        layout.addWidget(self.graphics, 1)

    # -- data in ------------------------------------------------------------
    def clear(self) -> None:
        """Forget the run's data: a new run starts with empty plots, sane axes and the y ranges
        managed again (a zoom of the previous run is not kept)."""
        self._fitted = {name: False for name in self.PLOTS}
        self._follow = {name: True for name in self.PLOTS}
        self._drawn_at = {name: -math.inf for name in self.PLOTS}  # a new run's first points show at once
        for series in (self.loss, self.accuracy):
            series.clear()
        for array in (self.lr_x, self.lr_y, self.val_x, self.val_y, self.val_high, self.val_low):
            array.clear()
        self._dirty.update(self.PLOTS)

    def add_steps(self, metrics: Sequence[Any]) -> None:
        """Append step metrics (objects with step, loss, accuracy, lr attributes)."""
        if not metrics:
            return
        steps = [m.step for m in metrics]
        self.loss.extend(steps, [m.loss for m in metrics])
        self.accuracy.extend(steps, [m.accuracy for m in metrics])
        self.lr_x.extend(steps)
        self.lr_y.extend([m.lr for m in metrics])
        self._dirty.update(("loss", "accuracy", "lr"))

    def add_validation(self, step: int, accuracy: float, ci95: float) -> None:
        self.val_x.append(step)
        self.val_y.append(accuracy)
        self.val_high.append(accuracy + ci95)
        self.val_low.append(accuracy - ci95)
        self._dirty.add("val")

    def load_metrics(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace the curves with a finished run's metrics.jsonl rows."""
        self.clear()
        steps, vals = split_metric_rows(rows)
        self.loss.extend(steps["step"], steps["loss"])
        self.accuracy.extend(steps["step"], steps["accuracy"])
        self.lr_x.extend(steps["step"])
        self.lr_y.extend(steps["lr"])
        self.val_x.extend(vals["step"])
        self.val_y.extend(vals["accuracy"])
        self.val_high.extend(np.add(vals["accuracy"], vals["ci95"]))
        self.val_low.extend(np.subtract(vals["accuracy"], vals["ci95"]))
        self.auto_step_range()
        self.refresh(everything=True)

    @property
    def n_points(self) -> int:
        return len(self.loss)

    # -- overlays -----------------------------------------------------------
    def set_overlays(self, runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> None:
        """Overlay past runs' curves: a list of (label, metrics rows); an empty list removes them."""
        for curves in self._overlays:
            for name in self.PLOTS:
                self.widgets[name].getPlotItem().removeItem(getattr(curves, name))
        self._overlays = []
        for i, (label, rows) in enumerate(runs):
            steps, vals = split_metric_rows(rows)
            colour = PALETTE[(i + 3) % len(PALETTE)]
            pen = pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine)
            smooth = self.loss.alpha
            x, val_x = _buffers(steps["step"]), _buffers(vals["step"])
            self._overlays.append(_RunCurves(
                label, colour,
                self._curve(self.loss_plot, x, _buffers(ema(steps["loss"], smooth)), pen=pen, name=label),
                self._curve(self.accuracy_plot, x, _buffers(ema(steps["accuracy"], smooth)), pen=pen, name=label),
                self._curve(self.val_plot, val_x, _buffers(vals["accuracy"]), pen=pen, symbol="t", symbolSize=6,
                            symbolBrush=pen.color(), symbolPen=None, name=label),
                self._curve(self.lr_plot, x, _buffers(steps["lr"]), pen=pen, name=label),
            ))
        self._show_legend()
        for name in self.PLOTS:
            for curve in self._curves_of(name):
                curve.redraw()
            self._show_empty(name)
            self._fit_y(name)

    @property
    def n_overlays(self) -> int:
        return len(self._overlays)

    def _show_legend(self) -> None:
        """One line above the plots names the overlaid runs (a single live run needs none: the titles
        say it); long names are elided in the middle, the tooltip has them in full."""
        if not self._overlays:
            self.legend.hide()
            return
        entries = [(PALETTE[0], "━━", "this run")] + [(c.colour, "╍╍", c.label) for c in self._overlays]
        metrics = self.legend.fontMetrics()
        self.legend.setText("&nbsp;&nbsp;&nbsp; ".join(
            f'<span style="color:{colour}; font-weight:bold;">{mark}</span>&nbsp;'
            f"{html.escape(elide_middle(label, metrics, LEGEND_NAME_WIDTH))}" for colour, mark, label in entries))
        self.legend.setToolTip("\n".join(label for _, _, label in entries))
        self.legend.show()

    def _curves_of(self, name: str) -> list[BufferedCurve]:
        return self._own_curves[name] + [getattr(curves, name) for curves in self._overlays]

    # -- drawing ------------------------------------------------------------
    def _smoothing_moved(self, value: int) -> None:
        alpha = value / 100.0
        self.smoothing_label.setText(f"{alpha:.2f}")
        self.loss.set_alpha(alpha)
        self.accuracy.set_alpha(alpha)
        self._dirty.update(("loss", "accuracy"))
        self.refresh(everything=True)
        self.smoothing_changed.emit(alpha)

    def set_smoothing(self, alpha: float) -> None:
        self.smoothing_slider.setValue(int(round(alpha * 100)))

    def _toggle_raw(self, shown: bool) -> None:
        self.loss_raw.setVisible(shown)
        self.accuracy_raw.setVisible(shown)
        for name in ("loss", "accuracy"):
            self._fitted[name] = False
            self._fit_y(name)

    def refresh(self, everything: bool = False) -> bool:
        """Push new data to the changed plots due a redraw (``plots_per_tick`` of them), or to all
        changed plots at once with ``everything``.

        Returns whether a plot was redrawn (False: nothing changed, or nothing is due yet).
        """
        if not self._dirty:
            return False
        budget = len(self.PLOTS) if everything else self.plots_per_tick
        now = self.clock()
        drawn = False
        for _ in range(len(self.PLOTS)):
            if budget == 0 or not self._dirty:
                break
            name = self.PLOTS[self._next]
            self._next = (self._next + 1) % len(self.PLOTS)
            if name in self._dirty and (everything or now - self._drawn_at[name] >= self._period(name)):
                self._dirty.discard(name)
                self._drawn_at[name] = now
                self._update_plot(name)
                budget -= 1
                drawn = True
        self.n_redraws += drawn
        return drawn

    def _period(self, name: str) -> float:
        """Seconds between redraws of plot ``name`` while data streams in, less 10 ms: the timer's
        ticks come a little early (83 ms for 12 Hz), and 6 of them must make half a second."""
        return 1.0 / self.PLOT_HZ[name] - 0.01

    def _y_curves(self, name: str) -> list[BufferedCurve]:
        """The curves whose values the y range of plot ``name`` must show."""
        if name in ("loss", "accuracy"):
            raw, smooth = self._own_curves[name]
            own = [raw if self.show_raw.isChecked() else smooth]
        elif name == "val":
            own = [self.val_upper, self.val_lower]
        else:
            own = [self.lr_curve]
        return own + [getattr(curves, name) for curves in self._overlays]

    def _fit_y(self, name: str) -> None:
        """Keep the data in view with a y range that changes rarely (so the axis is rarely redrawn).

        The range is refitted, to rounded bounds with some headroom, only when data leaves it or
        fills less than 40% of it. A plot the user zoomed or panned is left alone until its "A"
        (auto-range) button is pressed. The bounds are kept incrementally (O(1) per redraw).
        """
        view = self.widgets[name].getPlotItem().getViewBox()
        if view.state["autoRange"][1]:  # fresh, or the user pressed "A": we manage y from now on
            view.disableAutoRange(axis=pg.ViewBox.YAxis)
            self._follow[name] = True
        if not self._follow[name]:
            return
        bounds = [b for b in (curve.bounds() for curve in self._y_curves(name)) if b is not None]
        if not bounds:
            return
        low = min(b[0] for b in bounds)
        high = max(b[1] for b in bounds)
        current_low, current_high = view.viewRange()[1]
        span = max(high - low, abs(high) * 1e-3, 1e-12)
        inside = current_low <= low and high <= current_high
        if inside and span >= 0.4 * (current_high - current_low) and self._fitted[name]:
            return
        if name == "lr" and high - low <= 1e-9 * max(abs(high), 1e-30):
            low, high = 0.0, high * 1.25 if high > 0 else 1.0  # a constant rate, shown from 0
        else:
            low, high = nice_range(low - 0.08 * span, high + 0.08 * span)
        self._fitted[name] = True
        view.setYRange(low, high, padding=0)

    def _show_empty(self, name: str) -> None:
        """An empty plot: its hint, and a y range that means something (not pyqtgraph's -0.5..0.5)."""
        empty = not any(len(curve.source_y) for curve in self._curves_of(name))
        self.hints[name].set_empty(empty)
        if empty and self._follow[name]:
            view = self.widgets[name].getPlotItem().getViewBox()
            view.disableAutoRange(axis=pg.ViewBox.YAxis)
            view.setYRange(*EMPTY_Y_RANGE[name], padding=0)

    def set_step_range(self, total_steps: int) -> None:
        """Fix every plot's step axis to 0..total_steps for a live run: aligned plots, and axes that
        do not change (nor repaint) with every new point. Zooming with the mouse still works."""
        for plot in (self.loss_plot, self.accuracy_plot, self.val_plot, self.lr_plot):
            view = plot.getViewBox()
            view.disableAutoRange(axis=pg.ViewBox.XAxis)
            view.setXRange(0, max(total_steps, 1), padding=0.01)

    def auto_step_range(self) -> None:
        for plot in (self.loss_plot, self.accuracy_plot, self.val_plot, self.lr_plot):
            plot.getViewBox().enableAutoRange(axis=pg.ViewBox.XAxis)

    @property
    def pending(self) -> bool:
        """Whether some plot has data it does not show yet."""
        return bool(self._dirty)

    def points_handed(self) -> int:
        """Points the curves of all plots were last handed (what pyqtgraph processes per redraw)."""
        return sum(len(curve.shown.x) for name in self.PLOTS for curve in self._curves_of(name))

    def _update_plot(self, name: str) -> None:
        for curve in self._own_curves[name]:
            curve.redraw()
        if name == "val":
            self._show_lone_validation()
        self._show_empty(name)
        self._fit_y(name)

    def _show_lone_validation(self) -> None:
        """With one validation there is no band to draw: its 95% CI shows as an error bar."""
        if len(self.val_x) == 1:
            self.val_error_bar.setData(x=self.val_x.view.copy(), y=self.val_y.view.copy(),
                                       height=self.val_high.view - self.val_low.view, beam=0.0)
            self.val_error_bar.show()
        else:
            self.val_error_bar.hide()
