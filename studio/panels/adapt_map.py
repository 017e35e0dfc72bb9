"""Live 2-D map of the Adapt panel: PCA of support embeddings, class prototypes and test images.

Support images are dots in their class colour, prototypes big stars, test
images triangles coloured by their predicted class. Hovering a point shows its
thumbnail next to the cursor.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from engine.api import Example, MapData
from studio.panels.adapt_cards import example_pixmap

POPUP_THUMB = 72


class EmbeddingMap(QWidget):
    """PCA map; ``set_map`` redraws it, ``clear`` shows a message instead."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("Embedding map (PCA)")
        self.title.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.caption = QLabel("")
        self.caption.setStyleSheet("color: #777;")
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.getPlotItem().getAxis("bottom").setLabel("PC 1")
        self.plot.getPlotItem().getAxis("left").setLabel("PC 2")
        self.legend = self.plot.addLegend(offset=(-8, 8), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 220))
        self.support_item = pg.ScatterPlotItem(hoverable=True, tip=None, hoverSize=13)
        self.query_item = pg.ScatterPlotItem(hoverable=True, tip=None, hoverSize=15)
        self.prototype_item = pg.ScatterPlotItem(hoverable=True, tip=None)
        for item in (self.support_item, self.query_item, self.prototype_item):
            self.plot.addItem(item)
            item.sigHovered.connect(self._hovered)
        self.message = pg.TextItem("", color="#888", anchor=(0.5, 0.5))
        self.plot.addItem(self.message)
        self.popup = QFrame(self.plot)
        self.popup.setObjectName("map_popup")
        self.popup.setStyleSheet("QFrame#map_popup { background: white; border: 1px solid #aab; border-radius: 4px; }"
                                 "QLabel { border: none; color: #333; font-size: 8pt; }")
        self.popup.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.popup_image = QLabel()
        self.popup_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.popup_text = QLabel()
        self.popup_text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        popup_layout = QVBoxLayout(self.popup)
        popup_layout.setContentsMargins(4, 4, 4, 4)
        popup_layout.setSpacing(2)
        popup_layout.addWidget(self.popup_image)
        popup_layout.addWidget(self.popup_text)
        self.popup.hide()
        self.hovered_text = ""
        self._examples: dict[int, list[Example]] = {}
        self._labels: dict[int, list[str]] = {}
        self.n_support = self.n_queries = self.n_prototypes = 0

        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.caption, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        frame = QFrame()
        frame.setObjectName("map_frame")
        frame.setStyleSheet("QFrame#map_frame { border: 1px solid #d6d9de; border-radius: 8px; background: white; }")
        inner = QVBoxLayout(frame)
        inner.setContentsMargins(4, 4, 4, 4)
        inner.addWidget(self.plot)
        layout.addWidget(frame, 1)
        self.clear("Add images to two classes to see the map.")

    def clear(self, text: str) -> None:
        for item in (self.support_item, self.query_item, self.prototype_item):
            item.setData([])
        self.legend.clear()
        self.n_support = self.n_queries = self.n_prototypes = 0
        self.message.setText(text)
        self.message.setPos(0, 0)
        self.message.setVisible(True)
        self.caption.setText("")
        self.plot.getPlotItem().getViewBox().setRange(xRange=(-1, 1), yRange=(-1, 1), padding=0)

    def set_map(self, data: MapData, class_names: list[str], colours: list[str], support: list[Example],
                queries: list[Example]) -> None:
        """Draw ``data``; ``support`` and ``queries`` are the examples of its points (for the hover thumbnails)."""
        self.message.setVisible(False)
        support_xy, proto_xy, query_xy = (data.support_xy.numpy(), data.prototype_xy.numpy(), data.query_xy.numpy())
        labels = data.support_labels.tolist()
        predicted = data.query_predicted.tolist()
        self._examples = {id(self.support_item): support, id(self.query_item): queries[:len(query_xy)],
                          id(self.prototype_item): []}
        self._labels = {id(self.support_item): [class_names[c] for c in labels],
                        id(self.query_item): [f"test \u2192 {class_names[c]}" for c in predicted],
                        id(self.prototype_item): [f"{data.prototype_kind} of {n}" for n in class_names]}
        self.support_item.setData(
            pos=support_xy, data=list(range(len(support_xy))), size=9, symbol="o",
            brush=[pg.mkBrush(_alpha(colours[c], 200)) for c in labels], pen=pg.mkPen("w", width=0.8))
        self.prototype_item.setData(
            pos=proto_xy, data=list(range(len(proto_xy))), size=24, symbol="star",
            brush=[pg.mkBrush(colours[c]) for c in range(len(proto_xy))], pen=pg.mkPen("#202020", width=1.4))
        self.query_item.setData(
            pos=query_xy, data=list(range(len(query_xy))), size=12, symbol="t",
            brush=[pg.mkBrush(_alpha(colours[c], 90)) for c in predicted],
            pen=[pg.mkPen(colours[c], width=1.6) for c in predicted])
        self.n_support, self.n_prototypes, self.n_queries = len(support_xy), len(proto_xy), len(query_xy)
        self._legend(class_names, colours, data.prototype_kind, bool(len(query_xy)))
        self.caption.setText(f"PC 1 {100 * data.explained[0]:.0f}% \u00b7 PC 2 {100 * data.explained[1]:.0f}% of "
                             "variance \u00b7 hover a point to see its image")
        points = np.concatenate([support_xy, proto_xy, query_xy]) if len(query_xy) else \
            np.concatenate([support_xy, proto_xy])
        self._fit_view(points)

    def _legend(self, class_names: list[str], colours: list[str], prototype_kind: str, with_queries: bool) -> None:
        self.legend.clear()
        for name, colour in zip(class_names, colours):
            self.legend.addItem(pg.ScatterPlotItem(symbol="o", size=9, brush=pg.mkBrush(colour), pen=None), name)
        grey = pg.mkBrush("#9aa0a6")
        self.legend.addItem(pg.ScatterPlotItem(symbol="star", size=14, brush=grey, pen=pg.mkPen("#202020")),
                            prototype_kind)
        if with_queries:
            self.legend.addItem(pg.ScatterPlotItem(symbol="t", size=11, brush=pg.mkBrush(255, 255, 255, 0),
                                                   pen=pg.mkPen("#606060", width=1.5)), "test image")

    def _fit_view(self, points: np.ndarray) -> None:
        """Frame the points with a margin (room on the right for the legend); plain floats for pyqtgraph."""
        if not len(points):
            return
        low, high = points.astype(np.float64).min(0), points.astype(np.float64).max(0)
        span = np.maximum(high - low, 1e-3)
        x0, x1 = float(low[0] - 0.12 * span[0]), float(high[0] + 0.45 * span[0])
        y0, y1 = float(low[1] - 0.12 * span[1]), float(high[1] + 0.12 * span[1])
        self.plot.getPlotItem().getViewBox().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _hovered(self, item, points, event) -> None:
        if points is None or len(points) == 0:
            self.popup.hide()
            return
        index = int(points[0].data())
        labels = self._labels.get(id(item), [])
        examples = self._examples.get(id(item), [])
        text = labels[index] if index < len(labels) else ""
        if index < len(examples):
            example = examples[index]
            self.popup_image.setPixmap(example_pixmap(example, POPUP_THUMB))
            self.popup_image.setVisible(True)
            self.popup_text.setText(f"{example.name}\n{text}")
        else:
            self.popup_image.setVisible(False)
            self.popup_text.setText(text)
        self.popup.adjustSize()
        scene_pos = item.mapToScene(points[0].pos())
        view_pos = self.plot.mapFromScene(scene_pos)
        x = min(view_pos.x() + 14, self.plot.width() - self.popup.width() - 4)
        y = max(4, min(view_pos.y() - self.popup.height() - 10, self.plot.height() - self.popup.height() - 4))
        self.popup.move(QPoint(int(x), int(y)))
        self.popup.show()
        self.popup.raise_()
        self.hovered_text = text


def _alpha(colour: str, alpha: int) -> QColor:
    result = QColor(colour)
    result.setAlpha(alpha)
    return result
