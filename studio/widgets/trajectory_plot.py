"""The inner-loop scrubber's plot: query and support accuracy and loss after each inner step, with a
draggable step marker and the algorithm's training and default step counts marked. What the curves and
lines are is said in a key line above the plots (issue 22: a legend and line labels inside the plots sat
on the curves)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QWidget

from engine.api import AdaptationTrajectory

ACCURACY_COLOUR, LOSS_COLOUR, SUPPORT_COLOUR = "#1f77b4", "#d62728", "#9a9a9a"
TRAIN_COLOUR, DEFAULT_COLOUR = "#2ca02c", "#ff7f0e"


def key_text(train_steps: int | None, default_steps: int | None) -> str:
    """The key line: the query and support curves, then the marked step counts (those shown)."""
    parts = [f"<span style='color:{ACCURACY_COLOUR}'>— query</span>",
             f"<span style='color:{SUPPORT_COLOUR}'>- - support</span>"]
    if train_steps is not None:
        parts.append(f"<span style='color:{TRAIN_COLOUR}'>··· training inner steps: {train_steps}</span>")
    if default_steps is not None:
        parts.append(f"<span style='color:{DEFAULT_COLOUR}'>··· adapt default: {default_steps}</span>")
    return " &nbsp; ".join(parts)


class TrajectoryPlot(pg.GraphicsLayoutWidget):
    """Query accuracy (top) and cross-entropy loss (bottom) against the inner step, with step markers.

    ``marker_dragged(step)`` fires when the user drags the step marker of either plot.
    """

    marker_dragged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = self.addLabel(key_text(None, None), row=0, col=0, size="9pt")  # above the plots
        self.accuracy_plot = self.addPlot(row=1, col=0)
        self.loss_plot = self.addPlot(row=2, col=0)
        self.loss_plot.setXLink(self.accuracy_plot)
        for plot, title, label in ((self.accuracy_plot, "Accuracy after each inner step", "accuracy"),
                                   (self.loss_plot, "Cross-entropy loss", "loss")):
            plot.setTitle(title, size="10pt")
            plot.setLabel("left", label)
            plot.setLabel("bottom", "inner step")
            plot.getAxis("left").setWidth(48)
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.showGrid(x=False, y=True, alpha=0.25)
            plot.setMouseEnabled(x=False, y=False)
        self.accuracy_plot.setYRange(0, 1.02, padding=0)
        dashed = Qt.PenStyle.DashLine
        self.query_accuracy = self.accuracy_plot.plot([], [], pen=pg.mkPen(ACCURACY_COLOUR, width=2), name="query")
        self.support_accuracy = self.accuracy_plot.plot([], [], pen=pg.mkPen(SUPPORT_COLOUR, width=1.5, style=dashed),
                                                        name="support")
        self.query_loss = self.loss_plot.plot([], [], pen=pg.mkPen(LOSS_COLOUR, width=2), name="query")
        self.support_loss = self.loss_plot.plot([], [], pen=pg.mkPen(SUPPORT_COLOUR, width=1.5, style=dashed),
                                                name="support")
        self.markers = [self._step_marker(plot) for plot in (self.accuracy_plot, self.loss_plot)]
        self.dots = [pg.ScatterPlotItem(size=9, pen=pg.mkPen("#ffffff", width=1.5), brush=pg.mkBrush(colour))
                     for colour in (ACCURACY_COLOUR, LOSS_COLOUR)]
        self.accuracy_plot.addItem(self.dots[0])
        self.loss_plot.addItem(self.dots[1])
        plots = (self.accuracy_plot, self.loss_plot)
        self.train_lines = [self._reference_line(plot, TRAIN_COLOUR) for plot in plots]
        self.default_lines = [self._reference_line(plot, DEFAULT_COLOUR) for plot in plots]

    def _step_marker(self, plot: pg.PlotItem) -> pg.InfiniteLine:
        line = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=pg.mkPen("#303030", width=2),
                               hoverPen=pg.mkPen("#000000", width=3))
        line.setZValue(50)
        line.hide()
        line.sigDragged.connect(lambda item: self.marker_dragged.emit(int(round(item.value()))))
        plot.addItem(line, ignoreBounds=True)
        return line

    @staticmethod
    def _reference_line(plot: pg.PlotItem, colour: str) -> pg.InfiniteLine:
        """A dotted vertical line at a marked step count (named in the key line, not on the line)."""
        pen = pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DotLine)
        line = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pen)
        line.hide()
        plot.addItem(line, ignoreBounds=True)
        return line

    def set_trajectory(self, trajectory: AdaptationTrajectory) -> None:
        steps = np.arange(trajectory.steps + 1)
        self.query_accuracy.setData(steps, trajectory.query_accuracy.numpy())
        self.support_accuracy.setData(steps, trajectory.support_accuracy.numpy())
        self.query_loss.setData(steps, trajectory.query_loss.numpy())
        self.support_loss.setData(steps, trajectory.support_loss.numpy())
        marked = []
        for lines, value in ((self.train_lines, trajectory.train_steps),
                             (self.default_lines, trajectory.default_steps)):
            shown = value is not None and value <= trajectory.steps
            marked.append(value if shown else None)
            for line in lines:
                line.setVisible(shown)
                if shown:
                    line.setValue(value)
        self.key.setText(key_text(*marked), size="9pt")
        for marker in self.markers:
            marker.setBounds((0, trajectory.steps))
            marker.show()
        self.accuracy_plot.setXRange(0, max(1, trajectory.steps), padding=0.02)
        self.loss_plot.enableAutoRange(axis="y")

    def set_step(self, step: int) -> None:
        """Move the step markers and the dots on the query curves to ``step``."""
        for marker in self.markers:
            marker.setValue(step)
        for dot, curve in zip(self.dots, (self.query_accuracy, self.query_loss)):
            ys = curve.getData()[1]
            if ys is not None and 0 <= step < len(ys):
                dot.setData([step], [ys[step]])

    def n_points(self) -> int:
        data = self.query_accuracy.getData()[0]
        return 0 if data is None else len(data)
