"""Live training curves (pyqtgraph): loss, accuracy, validation accuracy with its band, learning rate.

Curves are created once and updated with ``setData``; data lives in numpy
arrays that grow by doubling (amortised O(1) appends), and the plots redraw on
a timer only when new points arrived. Auto down-sampling ("peak") and
clip-to-view keep a 100k-step run smooth.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from studio.widgets.plot_parts import PALETTE, HoverReadout, configure_plot, nice_range
from studio.widgets.plot_series import EmaSeries, GrowingArray, ema, split_metric_rows


@dataclass
class _RunCurves:
    """The curves of one overlaid past run."""

    loss: pg.PlotDataItem
    accuracy: pg.PlotDataItem
    val: pg.PlotDataItem
    lr: pg.PlotDataItem


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
    ``bench/bench_studio_overhead.py``).
    Past runs can be overlaid with :meth:`set_overlays`.
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
        self.val_ci = GrowingArray()
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

        raw_pen = pg.mkPen(QColor(31, 119, 180, 70), width=1)
        main_pen = pg.mkPen(PALETTE[0], width=2)
        self.loss_raw = self.loss_plot.plot([], [], pen=raw_pen)
        self.loss_curve = self.loss_plot.plot([], [], pen=main_pen, name="loss")
        self.accuracy_raw = self.accuracy_plot.plot([], [], pen=raw_pen)
        self.accuracy_curve = self.accuracy_plot.plot([], [], pen=main_pen, name="accuracy")
        self.val_upper = pg.PlotDataItem([], [], pen=pg.mkPen(None))
        self.val_lower = pg.PlotDataItem([], [], pen=pg.mkPen(None))
        self.val_band = pg.FillBetweenItem(self.val_upper, self.val_lower, brush=pg.mkBrush(214, 39, 40, 50))
        self.val_plot.addItem(self.val_upper)
        self.val_plot.addItem(self.val_lower)
        self.val_plot.addItem(self.val_band)
        self.val_curve = self.val_plot.plot([], [], pen=pg.mkPen(PALETTE[1], width=2), symbol="o", symbolSize=5,
                                            symbolBrush=PALETTE[1], symbolPen=None, name="val accuracy")
        self.lr_curve = self.lr_plot.plot([], [], pen=pg.mkPen(PALETTE[2], width=2), name="lr")
        self._follow = {name: True for name in self.PLOTS}
        self._fitted = {name: False for name in self.PLOTS}
        for name in self.PLOTS:
            self.widgets[name].getPlotItem().getViewBox().sigRangeChangedManually.connect(
                lambda *_, n=name: self._follow.__setitem__(n, False))
        self.main_curves = {"loss": self.loss_curve, "accuracy": self.accuracy_curve, "val": self.val_curve,
                            "lr": self.lr_curve}
        self.readouts = [HoverReadout(self.loss_plot), HoverReadout(self.accuracy_plot),
                         HoverReadout(self.val_plot), HoverReadout(self.lr_plot, fmt="{:.3g}")]

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
        self.status_label = QLabel("No run yet: press Train.")
        self.status_label.setStyleSheet("color: #606060;")

        bar = QHBoxLayout()
        bar.addWidget(self.status_label, 1)
        bar.addWidget(QLabel("Smoothing"))
        bar.addWidget(self.smoothing_slider)
        bar.addWidget(self.smoothing_label)
        bar.addWidget(self.show_raw)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.graphics, 1)
        self._smoothing_moved(self.smoothing_slider.value())

        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / refresh_hz))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    # -- data in ------------------------------------------------------------
    def clear(self) -> None:
        self._fitted = {name: False for name in self.PLOTS}
        self._drawn_at = {name: -math.inf for name in self.PLOTS}  # a new run's first points show at once
        for series in (self.loss, self.accuracy):
            series.clear()
        for array in (self.lr_x, self.lr_y, self.val_x, self.val_y, self.val_ci):
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
        self.val_ci.append(ci95)
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
        self.val_ci.extend(vals["ci95"])
        self.refresh(everything=True)
        self.auto_step_range()
        for name in self.PLOTS:
            self._fitted[name] = False
            self._fit_y(name)

    @property
    def n_points(self) -> int:
        return len(self.loss)

    # -- overlays -----------------------------------------------------------
    def set_overlays(self, runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> None:
        """Overlay past runs' curves: a list of (label, metrics rows); an empty list removes them."""
        for curves in self._overlays:
            self.loss_plot.removeItem(curves.loss)
            self.accuracy_plot.removeItem(curves.accuracy)
            self.val_plot.removeItem(curves.val)
            self.lr_plot.removeItem(curves.lr)
        self._overlays = []
        if runs:
            self._ensure_legends()
        for i, (label, rows) in enumerate(runs):
            steps, vals = split_metric_rows(rows)
            pen = pg.mkPen(PALETTE[(i + 3) % len(PALETTE)], width=1.5, style=Qt.PenStyle.DashLine)
            smooth = self.loss.alpha
            self._overlays.append(_RunCurves(
                self.loss_plot.plot(steps["step"], ema(steps["loss"], smooth), pen=pen, name=label),
                self.accuracy_plot.plot(steps["step"], ema(steps["accuracy"], smooth), pen=pen, name=label),
                self.val_plot.plot(vals["step"], vals["accuracy"], pen=pen, symbol="t", symbolSize=6,
                                   symbolBrush=pen.color(), symbolPen=None, name=label),
                self.lr_plot.plot(steps["step"], steps["lr"], pen=pen, name=label),
            ))
        for name in self.PLOTS:
            self._fit_y(name)

    @property
    def n_overlays(self) -> int:
        return len(self._overlays)

    def _ensure_legends(self) -> None:
        """Legends appear with the first overlay (a single live run needs none: the titles say it)."""
        for name in self.PLOTS:
            plot = self.widgets[name].getPlotItem()
            if plot.legend is None:
                legend = plot.addLegend(offset=(-8, 8) if name == "loss" else (-8, -8),
                                        labelTextSize="8pt")
                legend.addItem(self.main_curves[name], "this run")

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

    def _y_values(self, name: str) -> list[np.ndarray]:
        """The values the y range of plot ``name`` must show (its own curves and the overlays)."""
        if name == "loss":
            own = [self.loss.raw.view if self.show_raw.isChecked() else self.loss.smooth.view]
        elif name == "accuracy":
            own = [self.accuracy.raw.view if self.show_raw.isChecked() else self.accuracy.smooth.view]
        elif name == "lr":
            own = [self.lr_y.view]
        else:
            own = [self.val_y.view + self.val_ci.view, self.val_y.view - self.val_ci.view]
        overlays = [getattr(curves, name).yData for curves in self._overlays]
        return own + [values for values in overlays if values is not None]

    def _fit_y(self, name: str) -> None:
        """Keep the data in view with a y range that changes rarely (so the axis is rarely redrawn).

        The range is refitted, to rounded bounds with some headroom, only when data leaves it or
        fills less than 40% of it. A plot the user zoomed or panned is left alone until its "A"
        (auto-range) button is pressed.
        """
        view = self.widgets[name].getPlotItem().getViewBox()
        if view.state["autoRange"][1]:  # fresh, or the user pressed "A": we manage y from now on
            view.disableAutoRange(axis=pg.ViewBox.YAxis)
            self._follow[name] = True
        if not self._follow[name]:
            return
        chunks = [v[np.isfinite(v)] for v in self._y_values(name) if v is not None and len(v)]
        chunks = [c for c in chunks if c.size]
        if not chunks:
            return
        low = min(float(c.min()) for c in chunks)
        high = max(float(c.max()) for c in chunks)
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

    def _update_plot(self, name: str) -> None:
        if name == "loss":
            self.loss_raw.setData(self.loss.x.view, self.loss.raw.view)
            self.loss_curve.setData(self.loss.x.view, self.loss.smooth.view)
        elif name == "accuracy":
            self.accuracy_raw.setData(self.accuracy.x.view, self.accuracy.raw.view)
            self.accuracy_curve.setData(self.accuracy.x.view, self.accuracy.smooth.view)
        elif name == "lr":
            self.lr_curve.setData(self.lr_x.view, self.lr_y.view)
        else:
            vx, vy, ci = self.val_x.view, self.val_y.view, self.val_ci.view
            self.val_upper.setData(vx, vy + ci)
            self.val_lower.setData(vx, vy - ci)
            self.val_curve.setData(vx, vy)
        self._fit_y(name)
