"""Evaluation charts (pyqtgraph): a row-normalised confusion matrix heatmap and per-class accuracy bars."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from studio.widgets.plot_parts import PALETTE


class ConfusionMatrixView(pg.GraphicsLayoutWidget):
    """A heatmap of a confusion matrix (rows = true class, columns = predicted), row-normalised."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = self.addPlot()
        self.plot.setTitle("Confusion matrix (row-normalised)", size="10pt")
        self.plot.setLabel("left", "true class")
        self.plot.setLabel("bottom", "predicted class")
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        self.image = pg.ImageItem(axisOrder="row-major")
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

    def set_matrix(self, counts: np.ndarray, class_names: Sequence[str]) -> None:
        counts = np.asarray(counts, dtype=np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        self.counts = counts
        self.matrix = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        self.class_names = list(class_names)
        self.image.setImage(self.matrix, levels=(0.0, 1.0), autoLevels=False)
        self.image.setRect(0, 0, counts.shape[1], counts.shape[0])
        n = counts.shape[0]
        self.plot.getAxis("bottom").setTicks([_index_ticks(n, 12)])
        self.plot.getAxis("left").setTicks([_index_ticks(n, 24)])
        self.plot.autoRange()

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
        self.hover_label.setPos(point.x(), point.y())
        self.hover_label.show()


def _index_ticks(n: int, max_ticks: int) -> list[tuple[float, str]]:
    """Tick labels at cell centres: every class when few, else a round stride."""
    every = 1
    for stride in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        every = stride
        if n / stride <= max_ticks:
            break
    return [(i + 0.5, str(i)) for i in range(0, n, every)]


class BarChart(pg.PlotWidget):
    """Per-class accuracy as bars (class index on the x axis)."""

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

    def set_values(self, values: Sequence[float]) -> None:
        values = np.nan_to_num(np.asarray(values, dtype=np.float64))
        self.bars.setOpts(x=np.arange(len(values)), height=values, width=0.8)
        self.setXRange(-0.5, max(len(values) - 0.5, 0.5))
        self.setYRange(0, 1.0)
