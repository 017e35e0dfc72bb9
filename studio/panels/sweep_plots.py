"""The Sweep view's three plots, drawn from a :class:`engine.api.SweepSnapshot`: the optimisation history
(each complete trial's value and the best so far, against trial number), every trial's validation curve
(pruned trials grey, ending with a cross at the step where they were stopped; failed ones dotted), and
the parameter importances (Optuna's own evaluator, once enough trials are complete)."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QWidget

from engine.api import MIN_TRIALS_FOR_IMPORTANCE

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
PRUNED_COLOUR = "#a0a0a0"


def _plot(title: str, x: str, y: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, color="#333", size="10pt")
    plot.setLabel("bottom", x)
    plot.setLabel("left", y)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setMenuEnabled(False)
    plot.setMinimumHeight(160)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)  # accuracies in %, not "x0.001"
    return plot


class SweepPlots(QWidget):
    """History, validation curves, importances side by side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.history = _plot("Optimisation history (best so far: red)", "trial", "validation accuracy (%)")
        self.curves = _plot("Validation curves (pruned: grey)", "step", "validation accuracy (%)")
        self.importances = _plot("Parameter importances", "importance", "")
        self.importances.getAxis("left").setStyle(tickTextWidth=110, autoExpandTextSpace=True)
        self.importance_note = pg.TextItem(f"after {MIN_TRIALS_FOR_IMPORTANCE} complete trials", color="#777")
        for plot in (self.history, self.curves, self.importances):
            layout.addWidget(plot, 1)
        self.pruned_items: list[Any] = []  # the grey curves of pruned trials (tests look at them)
        self.curve_items: dict[int, Any] = {}

    def show_snapshot(self, snapshot: Any) -> None:
        self._draw_history(snapshot)
        self._draw_curves(snapshot)
        self._draw_importances(snapshot.importances)

    def _draw_history(self, snapshot: Any) -> None:
        self.history.clear()
        done = [(r.number, r.value) for r in snapshot.rows if r.state == "complete" and r.value is not None]
        if done:
            xs, ys = zip(*sorted(done))
            self.history.plot(list(xs), [100 * y for y in ys], pen=None, symbol="o", symbolSize=7, symbolBrush="#1f77b4",
                              name="trial")
        best = snapshot.history()
        if best:
            xs, ys = zip(*best)
            self.history.plot(list(xs), [100 * y for y in ys], pen=pg.mkPen("#d62728", width=2), stepMode=None, name="best")

    def _draw_curves(self, snapshot: Any) -> None:
        self.curves.clear()
        self.pruned_items, self.curve_items = [], {}
        for row in sorted(snapshot.rows, key=lambda r: r.number):
            if not row.curve:
                continue
            steps = [s for s, _ in row.curve]
            values = [100 * v for _, v in row.curve]
            if row.state == "pruned":
                item = self.curves.plot(steps, values, pen=pg.mkPen(PRUNED_COLOUR, width=1))
                self.curves.plot([steps[-1]], [values[-1]], pen=None, symbol="x", symbolSize=9,
                                 symbolPen=pg.mkPen(PRUNED_COLOUR, width=2))
                self.pruned_items.append(item)
            else:
                colour = PALETTE[row.number % len(PALETTE)]
                style = Qt.PenStyle.DotLine if row.state == "failed" else Qt.PenStyle.SolidLine
                width = 2 if row.state == "running" else 1.5
                item = self.curves.plot(steps, values, pen=pg.mkPen(colour, width=width, style=style))
            self.curve_items[row.number] = item

    def _draw_importances(self, importances: dict[str, float]) -> None:
        self.importances.clear()
        if not importances:
            self.importances.addItem(self.importance_note)
            self.importance_note.setPos(0, 0)
            self.importances.getAxis("left").setTicks([[]])
            return
        names = list(importances)[::-1]  # the most important on top
        values = [importances[name] for name in names]
        bars = pg.BarGraphItem(x0=0, y=list(range(len(names))), height=0.6, width=values, brush="#1f77b4")
        self.importances.addItem(bars)
        self.importances.getAxis("left").setTicks([[(i, name) for i, name in enumerate(names)]])
        self.importances.setXRange(0, max(values) * 1.05 if values else 1)
