"""The episode inspector's histogram: per-episode accuracy as bars, the mean and its 95% CI as lines.

The lines are named in the title line above the plot (issue 22: labels on the lines overlapped the bars
and each other when the CI was narrow)."""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QWidget

from studio.widgets.plot_parts import EmptyHint

HINT = "The accuracy of each inspected episode\nappears here (press Inspect)."
TITLE = "Per-episode accuracy (click a bar for its episodes)"
MEAN_COLOUR, CI_COLOUR = "#202020", "#b35c00"


def stats_title(mean_percent: float, low_percent: float, high_percent: float) -> str:
    """The title line naming the mean (solid line) and the 95% CI bounds (dashed lines), in their colours."""
    return (f"<span style='color:{MEAN_COLOUR}'>— mean {mean_percent:.1f}%</span> &nbsp; "
            f"<span style='color:{CI_COLOUR}'>- - 95% CI {low_percent:.1f}% – {high_percent:.1f}%</span>"
            f" &nbsp; (click a bar for its episodes)")


class AccuracyHistogram(pg.PlotWidget):
    """Per-episode accuracy (in %) as bars, with the mean and the 95% CI bounds as labelled lines.

    ``bin_clicked(i)`` fires when a non-empty bar is clicked (anywhere in its column).
    """

    bin_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle(TITLE, size="9pt")
        self.setLabel("bottom", "episode accuracy (%)")
        self.setLabel("left", "episodes")
        for axis in ("left", "bottom"):
            self.getAxis(axis).enableAutoSIPrefix(False)
        self.showGrid(y=True, alpha=0.25)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.bins: list[tuple[float, float, list[int]]] = []
        self.selected: int | None = None
        self.bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush="#7fa7cf", pen="#3f6f9f")
        self.addItem(self.bars)
        self.ci_band = pg.LinearRegionItem(values=(0, 0), movable=False, brush=pg.mkBrush(255, 160, 0, 40),
                                           pen=pg.mkPen(None))
        self.ci_band.setZValue(-10)
        self.addItem(self.ci_band)
        dashed = pg.mkPen(CI_COLOUR, width=1.5, style=Qt.PenStyle.DashLine)
        self.mean_line = self._line(pg.mkPen(MEAN_COLOUR, width=2))
        self.low_line = self._line(dashed)
        self.high_line = self._line(dashed)
        self.scene().sigMouseClicked.connect(self._clicked)
        self._show_lines(False)
        self.hint = EmptyHint(self.getPlotItem(), HINT)
        self.setXRange(0, 100, padding=0.02)  # empty: the axes of what will come (%, episodes)
        self.setYRange(0, 1, padding=0)
        self.getAxis("left").setStyle(showValues=False)  # (no 0.4 episodes)

    def _line(self, pen: Any) -> pg.InfiniteLine:
        """A vertical line without a label of its own (the title line names it)."""
        line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.addItem(line, ignoreBounds=True)
        return line

    def _show_lines(self, shown: bool) -> None:
        for item in (self.mean_line, self.low_line, self.high_line, self.ci_band):
            item.setVisible(shown)

    def set_data(self, bins: list[tuple[float, float, list[int]]], mean: float, ci95: float) -> None:
        self.bins = bins
        self.selected = None
        self.hint.set_empty(not any(members for _, _, members in bins))
        self.getAxis("left").setStyle(showValues=True)
        counts = [len(members) for _, _, members in bins]
        self.bars.setOpts(x0=[100 * low for low, _, _ in bins], x1=[100 * high for _, high, _ in bins],
                          height=counts, brushes=self._brushes())
        finite = math.isfinite(mean) and math.isfinite(ci95)
        self._show_lines(finite)
        if finite:
            low, high = 100 * (mean - ci95), 100 * (mean + ci95)
            self.mean_line.setValue(100 * mean)
            self.low_line.setValue(low)
            self.high_line.setValue(high)
            self.ci_band.setRegion((low, high))
        self.setTitle(stats_title(100 * mean, low, high) if finite else TITLE, size="9pt")
        filled = [low for low, _, members in bins if members]
        left = max(0.0, (min(filled) if filled else 0.0) - 0.1)
        self.setXRange(100 * left, 100.0, padding=0.02)
        top = max(counts + [1])
        self.setYRange(0, top * 1.25, padding=0)
        axis = self.getAxis("left")
        if top <= 8:
            axis.setTickSpacing(1, 1)  # whole episodes, not 0.5 steps
        else:
            axis.setTickSpacing()      # automatic

    def set_selected(self, index: int | None) -> None:
        self.selected = index
        self.bars.setOpts(brushes=self._brushes())

    def _brushes(self) -> list[Any]:
        return [pg.mkBrush("#ff8c1a" if i == self.selected else "#7fa7cf") for i in range(len(self.bins))]

    def bin_at(self, x_percent: float) -> int | None:
        for i, (low, high, _) in enumerate(self.bins):
            last = i == len(self.bins) - 1
            if 100 * low <= x_percent < 100 * high or (last and x_percent == 100 * high):
                return i
        return None

    def bar_centre(self, index: int) -> QPointF:
        """The middle of bar ``index`` in data coordinates (x in %, y in episodes)."""
        low, high, members = self.bins[index]
        return QPointF(50 * (low + high), len(members) / 2)

    def _clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton or not self.bins:
            return
        view_box = self.getPlotItem().getViewBox()
        if not view_box.sceneBoundingRect().contains(event.scenePos()):
            return
        point = view_box.mapSceneToView(event.scenePos())
        index = self.bin_at(point.x())
        if index is not None and self.bins[index][2] and point.y() >= 0:
            self.bin_clicked.emit(index)
