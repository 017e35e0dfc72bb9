"""The race view's plot: one curve per algorithm (validation accuracy, or smoothed training accuracy
or loss), against steps or each algorithm's own compute seconds, and the points behind the curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QHBoxLayout, QLabel, QPushButton, QRadioButton, QVBoxLayout,
                               QWidget)

from engine.api import display_title
from studio.widgets.plot_parts import PALETTE, cache_axes, widen_single_value_ranges
from studio.widgets.plot_series import EmaSeries, GrowingArray

SMOOTHING = 0.8
PLOT_MIN_HEIGHT = 100  # the plot shrinks to this on a short screen (1366x768) instead of cutting the page
METRIC_HELP = ("Validation accuracy: every algorithm on the same seeded validation episodes (the fair "
               "comparison). Training accuracy and loss are each algorithm's own training objective, smoothed: "
               "Baseline, Baseline++ and SimpleShot classify all training classes at once, Reptile reports its "
               "inner loop, so their training curves are not comparable with the episodic ones.")
TITLES = {"val": "Validation accuracy (the same seeded episodes for every algorithm)",
          "accuracy": "Training accuracy (smoothed; each algorithm's own training task)",
          "loss": "Training loss (smoothed; each algorithm's own objective)"}


@dataclass
class RacerSeries:
    """One algorithm's points: training loss/accuracy by step (smoothed), own seconds, validation points."""

    loss: EmaSeries = field(default_factory=lambda: EmaSeries(SMOOTHING))
    accuracy: EmaSeries = field(default_factory=lambda: EmaSeries(SMOOTHING))
    seconds: GrowingArray = field(default_factory=GrowingArray)
    val_step: GrowingArray = field(default_factory=GrowingArray)
    val_seconds: GrowingArray = field(default_factory=GrowingArray)
    val_accuracy: GrowingArray = field(default_factory=GrowingArray)

    def add_steps(self, steps: list[int], losses: list[float], accuracies: list[float],
                  seconds: list[float]) -> None:
        self.loss.extend(steps, losses)
        self.accuracy.extend(steps, accuracies)
        self.seconds.extend(seconds)

    def add_validation(self, step: int, accuracy: float, seconds: float) -> None:
        self.val_step.append(step)
        self.val_accuracy.append(accuracy)
        self.val_seconds.append(seconds)



class RaceCurves:
    """The plot part of :class:`studio.panels.race_panel.RacePanel` (a mixin: ``self`` is the panel)."""

    order: list[str]
    total_steps: int
    series: dict[str, RacerSeries]
    curves: dict[str, pg.PlotDataItem]
    rows: dict[str, Any]
    last_step: dict[str, int]
    trained: dict[str, str]
    evaluating: dict[str, tuple[int, int]]
    _dirty: bool
    _fill_table: Any

    def _build_plot(self) -> pg.PlotWidget:
        self.x_steps = QRadioButton("steps")
        self.x_steps.setChecked(True)
        self.x_seconds = QRadioButton("seconds")
        self.x_seconds.setToolTip("Each algorithm's own compute seconds in its training steps.")
        self.x_group = QButtonGroup(self)
        self.x_group.addButton(self.x_steps)
        self.x_group.addButton(self.x_seconds)
        self.x_steps.toggled.connect(lambda *_: self._axes_changed())
        self.metric_combo = QComboBox()
        self.metric_combo.setObjectName("race_metric")
        for text, key in (("validation accuracy", "val"), ("training accuracy", "accuracy"),
                          ("training loss", "loss")):
            self.metric_combo.addItem(text, key)
        self.metric_combo.setToolTip(METRIC_HELP)
        self.metric_combo.currentIndexChanged.connect(lambda *_: self._axes_changed())
        widget = pg.PlotWidget()
        widget.setMinimumHeight(PLOT_MIN_HEIGHT)
        self.plot = widget.getPlotItem()
        self.plot.showGrid(x=False, y=True, alpha=0.25)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        self.plot.getAxis("left").setWidth(56)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.plot.setClipToView(True)
        cache_axes(self.plot)
        widen_single_value_ranges(self.plot)  # one point: not a 19.6..20.4 step axis
        self.legend = QLabel("")  # above the plot, so it never hides a curve
        self.legend.setObjectName("race_legend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        bar = QHBoxLayout()
        bar.addWidget(_bold("Race"))
        bar.addSpacing(12)
        bar.addWidget(self.legend)
        bar.addStretch(1)
        bar.addWidget(QLabel("y:"))
        bar.addWidget(self.metric_combo)
        bar.addWidget(QLabel("x:"))
        bar.addWidget(self.x_steps)
        bar.addWidget(self.x_seconds)
        self.plot_box = QWidget()
        box_layout = QVBoxLayout(self.plot_box)
        box_layout.setContentsMargins(0, 0, 0, 0)
        box_layout.addLayout(bar)
        box_layout.addWidget(widget, 1)
        self._label_axes()
        return widget


    def x_axis(self) -> str:
        return "seconds" if self.x_seconds.isChecked() else "steps"

    def set_x_axis(self, axis: str) -> None:
        (self.x_seconds if axis == "seconds" else self.x_steps).setChecked(True)


    def _reset(self, names: list[str], total_steps: int) -> None:
        for item in self.curves.values():
            self.plot.removeItem(item)
        self.order = list(names)
        self.total_steps = total_steps
        self.series = {name: RacerSeries() for name in names}
        self.curves, self.rows, self.last_step = {}, {}, {}
        self.trained, self.evaluating = {}, {}  # racers' training ends and final-test progress
        for i, name in enumerate(names):
            colour = PALETTE[i % len(PALETTE)]
            self.curves[name] = self.plot.plot([], [], pen=pg.mkPen(colour, width=2), name=display_title(name),
                                               symbolSize=7, symbolBrush=colour, symbolPen=pg.mkPen("#ffffff"))
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(
            f'<span style="color:{PALETTE[i % len(PALETTE)]}; font-weight:bold;">&#9473;&#9473;</span>&nbsp;'
            f"{display_title(name)}" for i, name in enumerate(names)))
        self._fill_table()
        self._axes_changed()

    def metric(self) -> str:
        """What the y axis shows: "val" (validation accuracy), "accuracy" or "loss" (training, smoothed)."""
        return self.metric_combo.currentData()

    def set_metric(self, metric: str) -> None:
        self.metric_combo.setCurrentIndex(self.metric_combo.findData(metric))

    def _label_axes(self) -> None:
        metric = self.metric()
        self.plot.setLabel("bottom", "own compute seconds" if self.x_axis() == "seconds" else "step")
        self.plot.setLabel("left", "loss" if metric == "loss" else "accuracy")
        self.plot.setTitle(TITLES[metric], size="10pt")

    def _axes_changed(self) -> None:
        self._label_axes()
        for curve in self.curves.values():
            curve.setSymbol("o" if self.metric() == "val" else None)
        self.plot.enableAutoRange()
        self.redraw(force=True)

    def redraw(self, force: bool = False) -> None:
        """Push the new points to the curves (on the timer, only when something arrived)."""
        if not (self._dirty or force):
            return
        self._dirty = False
        seconds_axis = self.x_axis() == "seconds"
        metric = self.metric()
        for name, series in self.series.items():
            if metric == "val":
                x = series.val_seconds.view if seconds_axis else series.val_step.view
                self.curves[name].setData(x, series.val_accuracy.view)
                continue
            values = series.loss if metric == "loss" else series.accuracy
            x = series.seconds.view if seconds_axis else values.x.view
            n = min(len(x), len(values.smooth))
            self.curves[name].setData(x[:n], values.smooth.view[:n])

    def n_points(self, name: str) -> int:
        """Points of ``name``'s curve as drawn."""
        x = self.curves[name].xData
        return 0 if x is None else len(x)



def _bold(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: bold;")
    return label


def titled_box(title: str, buttons: list[QPushButton], main: QWidget, *below: QWidget) -> QWidget:
    """A bold ``title`` with ``buttons`` at the right, ``main`` taking the height, then ``below``."""
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    title_row = QHBoxLayout()
    title_row.addWidget(_bold(title))
    title_row.addStretch(1)
    for button in buttons:
        title_row.addWidget(button)
    layout.addLayout(title_row)
    layout.addWidget(main, 1)
    for widget in below:
        layout.addWidget(widget)
    return box
