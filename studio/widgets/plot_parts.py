"""Pieces shared by the studio's pyqtgraph plots: palette, axis caching, the training-plot look,
curves drawn from growing buffers, round axis ranges and the hover read-out.

Importing this module sets pyqtgraph's global look (white background, no antialiasing).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPainterPath
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem

from studio.widgets.plot_series import Envelope, GrowingArray, PeakPyramid, envelope, visible_indices

pg.setConfigOptions(antialias=False, background="w", foreground="#303030")

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22"]


def cache_axes(plot: pg.PlotItem) -> None:
    """Draw ``plot``'s axes, and the grid lines they own, from a pixmap that is re-rendered only when
    their range or size changes. A grid axis spans the whole view, so every new point of a live
    curve repainted its ticks, labels and grid lines: with the cache one refresh and paint of a
    training plot takes 0.78 ms instead of 1.55 ms (this 2-core machine, offscreen)."""
    for name in ("left", "bottom", "right", "top"):
        plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def widen_single_value_ranges(plot: pg.PlotItem) -> None:
    """While ``plot`` fits its range to its data (auto-range), an axis whose data is a single value
    (one point) shows a sensible span instead of pyqtgraph's value +- 0.5 ("step 19.6..20.4"):
    x from 0 to the value plus 20%, rounded up, y the value +- 10%, rounded."""
    view = plot.getViewBox()

    def widen(*_: Any) -> None:
        if not any(view.state["autoRange"]):
            return  # (a fixed range, as the live plots have: nothing to compute)
        bounds = view.childrenBounds()
        ranges = {}
        for axis, name in ((0, "xRange"), (1, "yRange")):
            if not view.state["autoRange"][axis] or bounds[axis] is None:
                continue
            low, high = bounds[axis]
            if high - low > 1e-12 * max(abs(high), 1.0):
                continue
            if axis == 0:
                ranges[name] = (min(0.0, low), nice_range(0.0, 1.2 * high or 1.0)[1] if high >= 0 else 0.0)
            else:
                ranges[name] = nice_range(low - 0.1 * (abs(low) or 1.0), high + 0.1 * (abs(high) or 1.0))
        if ranges:
            view.setRange(**ranges, padding=0.02, disableAutoRange=False)

    view.sigRangeChanged.connect(widen)


def configure_plot(plot: pg.PlotItem, title: str, y_label: str) -> None:
    """The look of a live training plot: title and labels, a fixed-width y axis, a y grid, rectangle
    zoom and cached axes. Its curves are :class:`BufferedCurve` s (they down-sample and clip to the
    view themselves), so pyqtgraph's own down-sampling and clipping stay off."""
    plot.setTitle(title, size="10pt")
    plot.setLabel("bottom", "step")
    plot.setLabel("left", y_label)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)
    plot.getAxis("left").setWidth(56)  # a fixed width: new tick labels never re-layout the plot
    plot.showGrid(x=False, y=True, alpha=0.25)
    plot.getViewBox().setMouseMode(pg.ViewBox.RectMode)
    cache_axes(plot)
    widen_single_value_ranges(plot)


class BufferedCurve(pg.PlotDataItem):
    """A curve drawn from growing buffers: each :meth:`redraw` hands pyqtgraph at most two points per
    horizontal pixel of the visible x range (the min/max envelope of the values under each pixel,
    from a :class:`PeakPyramid`), never the whole history. Zooming in redraws the new range, in
    full detail once it holds few enough values.

    ``x`` must grow with ``y`` (the same length); ``mode`` "max" or "min" draws one edge of a band.
    A ``symbol`` marks the values only while they are drawn as they are.
    """

    MIN_BUCKETS, MAX_BUCKETS, DEFAULT_BUCKETS = 64, 4096, 1000

    def __init__(self, x: GrowingArray, y: GrowingArray, mode: str = "peak", **options: Any) -> None:
        super().__init__([], [], **options)
        self.source_x, self.source_y = x, y
        self.peaks = PeakPyramid(y, x)
        self.mode = mode
        self.raw_symbol = options.get("symbol")  # drawn on values as they are, not on groups' extremes
        self.shown = Envelope(np.empty(0), np.empty(0), False)
        self.drawn_plan = (0, 0, 0)  # (i0, i1, groups) drawn

    def source_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The curve's full data (what the hover read-out reads)."""
        n = min(len(self.source_x), len(self.source_y))
        return self.source_x.view[:n], self.source_y.view[:n]

    def plan(self) -> tuple[int, int, int]:
        """What to draw: the index range [i0, i1) in view and the number of groups to draw it with,
        one per horizontal pixel the data covers (at least MIN_BUCKETS: a run's first steps in a
        long run's axis cover one pixel). A view that follows the data (x auto-range) shows all."""
        n = min(len(self.source_x), len(self.source_y))
        view = self.getViewBox()
        if not isinstance(view, pg.ViewBox) or view.width() < 2:
            return 0, n, self.DEFAULT_BUCKETS
        width = view.width()
        if view.state["autoRange"][0]:
            return 0, n, int(np.clip(width, self.MIN_BUCKETS, self.MAX_BUCKETS))
        low, high = view.viewRange()[0]
        i0, i1 = visible_indices(self.source_x, low, high)
        i1 = min(i1, n)
        covered = width
        if i1 - i0 >= 2 and high > low and self.source_x.nondecreasing:
            x = self.source_x.view
            covered = width * (min(x[i1 - 1], high) - max(x[i0], low)) / (high - low)
        return i0, i1, int(np.clip(covered, self.MIN_BUCKETS, self.MAX_BUCKETS))

    def redraw(self) -> None:
        """Hand pyqtgraph what the view shows of the buffers now (O(pixels))."""
        self.drawn_plan = self.plan()
        self.shown = envelope(self.peaks, *self.drawn_plan, self.mode)
        symbol = None if self.shown.decimated else self.raw_symbol
        if self.opts["symbol"] != symbol:
            self.setSymbol(symbol)
        self.setData(self.shown.x, self.shown.y)

    def redraw_if_moved(self) -> None:
        """Redraw when the view asks for another range or resolution than the one drawn."""
        if len(self.source_y) and self.plan() != self.drawn_plan:
            self.redraw()

    def bounds(self) -> tuple[float, float] | None:
        """(min, max) of the finite y values (all of them, O(1) amortised)."""
        return self.peaks.bounds()

    def viewRangeChanged(self, vb: Any = None, ranges: Any = None, changed: Any = None) -> None:
        super().viewRangeChanged(vb, ranges, changed)
        if changed is None or changed[0]:
            self.redraw_if_moved()


def redraw_on_resize(plot: pg.PlotItem, curves: Any) -> None:
    """Redraw ``curves()`` (BufferedCurves of ``plot``) when the plot's width changes: the number of
    pixels, so of groups to draw, changed."""
    plot.getViewBox().sigResized.connect(lambda *_: [curve.redraw_if_moved() for curve in curves()])


class BandItem(QGraphicsPathItem):
    """The area between two :class:`BufferedCurve` s (a band's upper and lower edges; they can be
    hidden), as one path built from what the two curves were handed. (pyqtgraph's FillBetweenItem
    re-walks both curves' paths: 10 ms for two 1000-point edges, here about 0.1 ms.)"""

    def __init__(self, upper: BufferedCurve, lower: BufferedCurve, brush: Any) -> None:
        super().__init__()
        self.upper, self.lower = upper, lower
        self.setBrush(pg.mkBrush(brush))
        self.setPen(pg.mkPen(None))
        upper.sigPlotChanged.connect(self.update_path)
        lower.sigPlotChanged.connect(self.update_path)

    def update_path(self, *_: Any) -> None:
        upper, lower = self.upper.shown, self.lower.shown
        if len(upper.x) < 2 or len(lower.x) < 2:
            self.setPath(QPainterPath())
            return
        x = np.concatenate((upper.x, lower.x[::-1]))
        y = np.concatenate((upper.y, lower.y[::-1]))
        finite = np.isfinite(x) & np.isfinite(y)
        path = pg.arrayToQPath(x[finite], y[finite], connect="all")
        path.closeSubpath()
        self.setPath(path)


class EmptyHint:
    """A grey sentence in the middle of an empty plot saying what will appear there (kept centred
    when the range changes); :meth:`set_empty` shows or hides it."""

    def __init__(self, plot: pg.PlotItem, text: str) -> None:
        self.plot = plot
        self.item = pg.TextItem("", color="#808080", anchor=(0.5, 0.5))
        self.item.setZValue(50)
        self.set_text(text)
        plot.addItem(self.item, ignoreBounds=True)
        plot.getViewBox().sigRangeChanged.connect(lambda *_: self._centre())
        self._centre()

    @property
    def text(self) -> str:
        return self.item.toPlainText()

    def set_text(self, text: str) -> None:
        self.item.setText(text)
        document = self.item.textItem.document()
        option = document.defaultTextOption()
        option.setAlignment(Qt.AlignmentFlag.AlignHCenter)  # each line centred
        document.setDefaultTextOption(option)
        self.item.textItem.setTextWidth(document.idealWidth())
        self.item.updateTextPos()

    def is_shown(self) -> bool:
        return self.item.isVisible()

    def set_empty(self, empty: bool) -> None:
        self.item.setVisible(empty)
        if empty:
            self._centre()

    def _centre(self) -> None:
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        self.item.setPos((x0 + x1) / 2, (y0 + y1) / 2)


class HoverReadout:
    """A vertical crosshair and a label with the step and the values of the curves under the mouse."""

    def __init__(self, plot: pg.PlotItem, fmt: str = "{:.4g}") -> None:
        self.plot = plot
        self.fmt = fmt
        self.line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888888", style=Qt.PenStyle.DashLine))
        self.label = pg.TextItem(anchor=(0, 0), color="#202020", fill=pg.mkBrush(255, 255, 255, 220),
                                 border=pg.mkPen("#bbbbbb"))
        self.label.setZValue(100)
        self.line.setZValue(99)
        self.hide()
        plot.addItem(self.line, ignoreBounds=True)
        plot.addItem(self.label, ignoreBounds=True)
        self.text = ""
        self._proxy = pg.SignalProxy(plot.scene().sigMouseMoved, rateLimit=30, slot=self._moved)

    def hide(self) -> None:
        self.line.hide()
        self.label.hide()

    def _moved(self, event: tuple[Any, ...]) -> None:
        position = event[0]
        view = self.plot.getViewBox()
        if not self.plot.sceneBoundingRect().contains(position):
            self.hide()
            return
        point = view.mapSceneToView(position)
        self.show_at(point.x())

    def show_at(self, x: float) -> str:
        """Place the read-out at step ``x``; returns the text shown (empty if no curve has data)."""
        lines = []
        step = None
        for item in self.plot.listDataItems():
            xs, ys = item.source_data() if isinstance(item, BufferedCurve) else (item.xData, item.yData)
            name = item.name()
            if xs is None or len(xs) == 0 or not name:
                continue
            i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
            if i > 0 and abs(xs[i - 1] - x) < abs(xs[i] - x):
                i -= 1
            step = xs[i] if step is None else step
            lines.append(f"{name}: {self.fmt.format(ys[i])}")
        if not lines:
            self.hide()
            return ""
        self.text = f"step {int(step)}\n" + "\n".join(lines)
        self.label.setText(self.text)
        view_range = self.plot.getViewBox().viewRange()
        self.line.setPos(step)
        self.label.setPos(step, view_range[1][1])
        self.line.show()
        self.label.show()
        return self.text


def nice_range(low: float, high: float) -> tuple[float, float]:
    """Widen [low, high] to multiples of a round step (1, 2 or 5 times a power of ten)."""
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return low - 0.5, high + 0.5
    magnitude = 10 ** math.floor(math.log10(span))
    step = next(m * magnitude for m in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0) if span / (m * magnitude) <= 12)
    return math.floor(low / step) * step, math.ceil(high / step) * step
