"""Evaluation charts (pyqtgraph): a row-normalised confusion matrix heatmap and per-class accuracy bars,
and how a class is named where its name does not fit (:func:`elide_class_name`, :class:`ClassNameDelegate`).

Empty (before an evaluation), each chart says what will appear in it, over plain 0..1 axes without ticks.
Hovering a cell or a bar names its class in full.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QModelIndex
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from studio.widgets.elide import ELLIPSIS, elide_middle
from studio.widgets.plot_parts import PALETTE, EmptyHint

MATRIX_HINT = "The confusion matrix of the test classes\nappears here after an evaluation."
BARS_HINT = "The accuracy of each test class\nappears here after an evaluation."


def elide_class_name(name: str, metrics: QFontMetrics, width: int) -> str:
    """A class name as it fits in ``width`` pixels, keeping what distinguishes it: whole when it fits; in a
    nested data set ("Alphabet_of_the_Magi/character02") the class folder whole and the group elided in its
    middle ("Alph…Magi/character02"); where even that does not fit, the whole name elided in its middle
    (both the group's start and the class's end kept)."""
    if metrics.horizontalAdvance(name) <= width:
        return name
    group, slash, leaf = name.rpartition("/")
    room = width - metrics.horizontalAdvance(slash + leaf)
    if slash and room >= metrics.horizontalAdvance(group[:3] + ELLIPSIS):
        return elide_middle(group, metrics, room) + slash + leaf
    return elide_middle(name, metrics, width)


class ClassNameDelegate(QStyledItemDelegate):
    """Draws a table column of class names with :func:`elide_class_name` at the column's width (the item's
    tooltip holds the full name)."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex) -> None:  # noqa: N802 - Qt API
        super().initStyleOption(option, index)
        widget = option.widget
        style = widget.style() if widget is not None else None
        margin = (style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, widget) + 1) if style else 3
        width = option.rect.width() - 2 * margin
        if option.text and width > 0:
            option.text = elide_class_name(option.text, option.fontMetrics, width)


def _hover_anchor(x: float, y: float, width: float, height: float) -> tuple[float, float]:
    """Where a hover label hangs from the pointer: towards the middle of the plot, so it is never cut
    at an edge (left of the pointer in the right half, below it in the top half)."""
    return (1.0 if x > width / 2 else 0.0, 0.0 if y < height / 2 else 1.0)


class _MatrixImage(pg.ImageItem):
    """The heatmap; clearing it (as the Evaluation view does) shows the view's empty state."""

    def __init__(self, on_clear: Any) -> None:
        super().__init__(axisOrder="row-major")
        self._on_clear = on_clear

    def clear(self) -> None:
        super().clear()
        self._on_clear()


def _show_class_ticks(plot: pg.PlotItem, shown: bool) -> None:
    """Empty: no tick labels on the class axes (a class 0.4 means nothing)."""
    for axis in ("left", "bottom"):
        plot.getAxis(axis).setStyle(showValues=shown)


class ConfusionMatrixView(pg.GraphicsLayoutWidget):
    """A heatmap of a confusion matrix (rows = true class, columns = predicted), row-normalised."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = self.addPlot()
        self.plot.setTitle("Confusion matrix (row-normalised)", size="10pt")
        self.plot.setLabel("left", "true class")
        self.plot.setLabel("bottom", "predicted class")
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)  # never "true class (x0.001)"
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        self.image = _MatrixImage(self._show_empty)
        self.plot.addItem(self.image)
        self.colormap = pg.colormap.get("viridis")
        self.image.setLookupTable(self.colormap.getLookupTable(nPts=256))
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=self.colormap, interactive=False, width=12)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.matrix = np.zeros((0, 0))
        self.counts = np.zeros((0, 0))
        self.hover_label = pg.TextItem(color="#ffffff", fill=pg.mkBrush(0, 0, 0, 180), anchor=(0, 1))
        self.hover_label.setZValue(10)
        self.hover_label.hide()
        self.plot.addItem(self.hover_label, ignoreBounds=True)
        self.class_names: list[str] = []
        self._proxy = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30, slot=self._moved)
        self.hint = EmptyHint(self.plot, MATRIX_HINT)
        self._ticks: tuple[list, list] | None = None
        view = self.plot.getViewBox()
        view.sigResized.connect(self._retick)
        view.sigRangeChanged.connect(self._retick)
        self._show_empty()

    def clear(self) -> None:
        """No matrix: the view says what will appear."""
        self.image.clear()  # (shows the empty state)

    def _show_empty(self) -> None:
        self.matrix = np.zeros((0, 0))
        self.counts = np.zeros((0, 0))
        self.class_names = []
        self.hover_label.hide()
        _show_class_ticks(self.plot, False)
        self.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        self.hint.set_empty(True)

    def set_matrix(self, counts: np.ndarray, class_names: Sequence[str]) -> None:
        counts = np.asarray(counts, dtype=np.float64)
        if counts.ndim != 2 or counts.size == 0:
            self.clear()
            return
        self.hint.set_empty(False)
        _show_class_ticks(self.plot, True)
        totals = counts.sum(axis=1, keepdims=True)
        self.counts = counts
        self.matrix = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        self.class_names = list(class_names)
        self.image.setImage(self.matrix, levels=(0.0, 1.0), autoLevels=False)
        self.image.setRect(0, 0, counts.shape[1], counts.shape[0])
        self._ticks = None
        self.plot.autoRange()
        self._retick()

    def _retick(self, *_: Any) -> None:
        """Class numbers at cell centres, as many as fit the matrix as drawn (its size on screen, the zoom):
        every class when the cells are large enough, else a round stride, never overlapping."""
        if self.matrix.size == 0:
            return
        units_per_pixel = [abs(u) for u in self.plot.getViewBox().viewPixelSize()]
        if not all(math.isfinite(u) and u > 0 for u in units_per_pixel):
            return  # not laid out yet
        n_rows, n_cols = self.matrix.shape
        metrics = self.fontMetrics()
        label_width = metrics.horizontalAdvance(str(max(n_cols - 1, 0))) + 10
        label_height = metrics.height() + 2
        ticks = (_index_ticks(n_cols, int(n_cols / units_per_pixel[0] / label_width)),
                 _index_ticks(n_rows, int(n_rows / units_per_pixel[1] / label_height)))
        if ticks != self._ticks:
            self._ticks = ticks
            self.plot.getAxis("bottom").setTicks([ticks[0]])
            self.plot.getAxis("left").setTicks([ticks[1]])

    def _moved(self, event: tuple[Any, ...]) -> None:
        position = event[0]
        if self.matrix.size == 0 or not self.plot.sceneBoundingRect().contains(position):
            self.hover_label.hide()
            return
        point = self.plot.getViewBox().mapSceneToView(position)
        row, col = int(math.floor(point.y())), int(math.floor(point.x()))
        n_rows, n_cols = self.matrix.shape
        if not (0 <= row < n_rows and 0 <= col < n_cols):
            self.hover_label.hide()
            return
        name = (lambda i: self.class_names[i] if i < len(self.class_names) else str(i))
        self.hover_label.setText(f"true {row} {name(row)}\npred {col} {name(col)}\n"
                                 f"{self.matrix[row, col]:.0%} ({int(self.counts[row, col])})")
        self.hover_label.setAnchor(_hover_anchor(point.x(), point.y(), n_cols, n_rows))  # y grows downwards
        self.hover_label.setPos(point.x(), point.y())
        self.hover_label.show()


def _index_ticks(n: int, max_ticks: int) -> list[tuple[float, str]]:
    """At most ``max_ticks`` (at least one) tick labels at cell centres: every class, else a round stride."""
    max_ticks, every = max(1, max_ticks), 1
    for stride in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        every = stride
        if n / stride <= max_ticks:
            break
    return [(i + 0.5, str(i)) for i in range(0, n, every)]


class BarChart(pg.PlotWidget):
    """Per-class accuracy as bars (class index on the x axis; hovering a bar names its class in full)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTitle("Per-class accuracy", size="10pt")
        self.setLabel("bottom", "test class")
        self.setLabel("left", "accuracy")
        for axis in ("left", "bottom"):
            self.getAxis(axis).enableAutoSIPrefix(False)
        self.showGrid(y=True, alpha=0.25)
        self.setYRange(0, 1)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush=PALETTE[0])
        self.addItem(self.bars)
        self.hint = EmptyHint(self.getPlotItem(), BARS_HINT)
        self.values = np.zeros(0)
        self.class_names: list[str] = []
        self.hover_label = pg.TextItem(color="#ffffff", fill=pg.mkBrush(0, 0, 0, 180), anchor=(0, 1))
        self.hover_label.setZValue(10)
        self.hover_label.hide()
        self.addItem(self.hover_label, ignoreBounds=True)
        self._proxy = pg.SignalProxy(self.scene().sigMouseMoved, rateLimit=30, slot=self._moved)
        self.set_values([])

    def set_values(self, values: Sequence[float], class_names: Sequence[str] = ()) -> None:
        """One bar per class (``class_names``: the names hovering a bar shows, in the same order)."""
        values = np.nan_to_num(np.asarray(values, dtype=np.float64))
        self.values, self.class_names = values, list(class_names)
        self.hover_label.hide()
        self.bars.setOpts(x=np.arange(len(values)), height=values, width=0.8)
        empty = len(values) == 0
        self.hint.set_empty(empty)
        self.getAxis("bottom").setStyle(showValues=not empty)
        self.setXRange(*((0, 1) if empty else (-0.5, len(values) - 0.5)), padding=0 if empty else None)
        self.setYRange(0, 1.0)

    def hover_text(self, index: int) -> str:
        """What hovering bar ``index`` shows: its class's number, full name and accuracy."""
        name = self.class_names[index] if index < len(self.class_names) else ""
        return f"{index} {name}".strip() + f"\n{self.values[index]:.0%}"

    def _moved(self, event: tuple[Any, ...]) -> None:
        position = event[0]
        plot = self.getPlotItem()
        if len(self.values) == 0 or not plot.sceneBoundingRect().contains(position):
            self.hover_label.hide()
            return
        point = plot.getViewBox().mapSceneToView(position)
        index = int(round(point.x()))
        if not (0 <= index < len(self.values) and abs(point.x() - index) <= 0.4 and 0 <= point.y() <= 1):
            self.hover_label.hide()
            return
        self.hover_label.setText(self.hover_text(index))
        anchor = _hover_anchor(point.x() + 0.5, 1.0 - point.y(), len(self.values), 1.0)  # y grows upwards here
        self.hover_label.setAnchor(anchor)
        self.hover_label.setPos(point.x(), point.y())
        self.hover_label.show()
