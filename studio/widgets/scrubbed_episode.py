"""The inner-loop scrubber's episode: the support images by class, then the query images as tiles
(one row per true class) showing the prediction at the selected step."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPixmap, QStaticText
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QToolTip, QVBoxLayout, QWidget

from engine.api import TestEpisode
from studio.widgets.elide import WrappedLabel, elide_middle
from studio.widgets.images import pixels_to_qimage
from studio.widgets.plot_parts import PALETTE

THUMB = 48              # query thumbnails (28 px glyphs scaled up)
SUPPORT_THUMB = 40
TILE_WIDTH = 100
TILE_HEIGHT = THUMB + 38
TILE_GAP = 5
GRID_HEADER = 104       # width of the class names left of the query rows
CLASSES_PER_SUPPORT_ROW = 5
RIGHT, WRONG = "#2e7d32", "#c62828"


def short_class_name(name: str, limit: int = 16) -> str:
    """A compact label: ``"Alphabet_01_Zukiish/character07"`` -> ``"Zukiish 07"``; other names are cut in the
    middle (their ends, which tell classes apart, kept)."""
    if "/" in name:
        group, leaf = name.rsplit("/", 1)
        digits = "".join(ch for ch in leaf if ch.isdigit())
        name = f"{group.split('/')[-1].split('_')[-1]} {digits or leaf}"
    return name if len(name) <= limit else name[: limit - 6] + "…" + name[-5:]



def _thumbnail(pixels: Any, size: int = THUMB) -> QPixmap:
    """uint8 [C, H, W] -> a square pixmap (an integer enlargement keeps its pixels sharp)."""
    image = pixels_to_qimage(pixels)
    mode = (Qt.TransformationMode.FastTransformation if size % image.width() == 0
            else Qt.TransformationMode.SmoothTransformation)
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))



class QueryTile:
    """One query image and the prediction shown for it at the current step (drawn by :class:`QueryGrid`)."""

    def __init__(self, pixmap: QPixmap, true_label: int, true_name: str, rect: QRect) -> None:
        self.pixmap = pixmap
        self.true_label = true_label
        self.true_name = true_name
        self.rect = rect
        self.predicted = -1
        self.predicted_name = ""
        self.probability = 0.0
        self.correct = False
        self.probabilities: np.ndarray | None = None   # [n_way] at the current step, for the tooltip

    def text(self) -> str:
        """What the tile shows under the image: mark, predicted class, probability."""
        return f"{'✓' if self.correct else '✗'} {self.predicted_name} {self.probability:.0%}"


class QueryGrid(QWidget):
    """The query images as tiles, one row per true class, painted in one pass.

    One widget instead of one per image, with the texts laid out once (``QStaticText``), so that
    moving the slider repaints quickly even with many query images.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.tiles: list[QueryTile] = []
        self.names: list[str] = []
        self.colours: list[QColor] = []
        self._headers: list[tuple[QRect, int]] = []
        self._bold = QFont(self.font())
        self._bold.setBold(True)
        self._name_texts: list[QStaticText] = []
        self._header_texts: list[QStaticText] = []
        self._percent_texts = [QStaticText(f"{p}%") for p in range(101)]
        self._marks = {True: QStaticText("✓"), False: QStaticText("✗")}
        self._borders = {True: QPen(QColor(RIGHT), 2), False: QPen(QColor(WRONG), 2)}
        self._white, self._track, self._grey = QColor("#ffffff"), QColor("#e6e6e6"), QColor("#404040")
        self._size = QSize(0, 0)

    def set_episode(self, episode: TestEpisode, names: list[str], colours: list[str]) -> None:
        """Lay out the tiles of ``episode``'s query images (rows: true classes, in label order)."""
        self.names, self.colours = names, [QColor(c) for c in colours]
        metrics_bold = QFontMetrics(self._bold)
        metrics = QFontMetrics(self.font())
        self._name_texts = [QStaticText(elide_middle(n, metrics_bold, TILE_WIDTH - 26)) for n in names]
        self._header_texts = [QStaticText(elide_middle(n, metrics, GRID_HEADER - 22)) for n in names]
        for text in self._name_texts + self._header_texts + self._percent_texts + list(self._marks.values()):
            text.setTextFormat(Qt.TextFormat.PlainText)
        labels = episode.task.query_y.tolist()
        columns: dict[int, int] = {}
        self.tiles, self._headers = [], []
        rows = sorted(set(labels))
        row_of = {label: row for row, label in enumerate(rows)}
        for index, label in enumerate(labels):
            column = columns.get(label, 0)
            columns[label] = column + 1
            rect = QRect(GRID_HEADER + column * (TILE_WIDTH + TILE_GAP), row_of[label] * (TILE_HEIGHT + TILE_GAP),
                         TILE_WIDTH, TILE_HEIGHT)
            pixmap = _thumbnail(episode.query_pixels[index])
            self.tiles.append(QueryTile(pixmap, label, episode.class_names[label], rect))
        self._headers = [(QRect(0, row_of[label] * (TILE_HEIGHT + TILE_GAP), GRID_HEADER, TILE_HEIGHT), label)
                         for label in rows]
        width = GRID_HEADER + max(columns.values(), default=0) * (TILE_WIDTH + TILE_GAP)
        self._size = QSize(width, len(rows) * (TILE_HEIGHT + TILE_GAP))
        self.setFixedSize(self._size)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self._size

    def show_step(self, probabilities: np.ndarray, correct: np.ndarray) -> None:
        """probabilities: [Q, n_way] of one step; correct: [Q] bool. Updates every tile and repaints once."""
        predicted = probabilities.argmax(1)
        for tile, row, label, right in zip(self.tiles, probabilities, predicted.tolist(), correct.tolist()):
            tile.predicted, tile.predicted_name = label, self.names[label]
            tile.probability, tile.correct, tile.probabilities = float(row[label]), bool(right), row
        self.update()

    def tile_at(self, point: QPoint) -> QueryTile | None:
        return next((tile for tile in self.tiles if tile.rect.contains(point)), None)

    def event(self, event: QEvent) -> bool:  # noqa: D102 - tooltips of the tiles, built when asked
        if event.type() == QEvent.Type.ToolTip:
            tile = self.tile_at(event.pos())
            if tile is None or tile.probabilities is None:
                QToolTip.hideText()
                event.ignore()
                return True
            ranking = np.argsort(-tile.probabilities)[:5]
            lines = "\n".join(f"{self.names[c]}: {tile.probabilities[c]:.1%}" for c in ranking)
            QToolTip.showText(event.globalPos(), f"true class: {tile.true_name}\n{lines}", self, tile.rect)
            return True
        return super().event(event)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(event.rect(), self.palette().window())
        for rect, label in self._headers:
            if rect.intersects(event.rect()):
                y = rect.center().y() - 8
                painter.fillRect(QRect(rect.x() + 2, y + 3, 10, 10), self.colours[label])
                painter.setPen(QColor("#202020"))
                painter.drawStaticText(rect.x() + 18, y, self._header_texts[label])
        for tile in self.tiles:
            if tile.rect.intersects(event.rect()):
                self._paint_tile(painter, tile)
        painter.end()

    def _paint_tile(self, painter: QPainter, tile: QueryTile) -> None:
        rect = tile.rect
        border = self._borders[tile.correct]
        painter.fillRect(rect, self._white)
        painter.setPen(border)
        painter.drawRect(rect.adjusted(1, 1, -1, -1))
        painter.drawPixmap(rect.x() + (rect.width() - tile.pixmap.width()) // 2, rect.y() + 4, tile.pixmap)
        if tile.predicted < 0:
            return
        colour = self.colours[tile.predicted]
        top = rect.y() + THUMB + 5
        painter.setFont(self._bold)
        painter.drawStaticText(rect.x() + 6, top, self._marks[tile.correct])
        painter.setPen(colour)
        painter.drawStaticText(rect.x() + 20, top, self._name_texts[tile.predicted])
        bar_width = rect.width() - 46
        painter.fillRect(rect.x() + 6, top + 19, bar_width, 6, self._track)
        painter.fillRect(rect.x() + 6, top + 19, int(bar_width * tile.probability + 0.5), 6, colour)
        painter.setFont(self.font())
        painter.setPen(self._grey)
        percent = self._percent_texts[int(round(100 * tile.probability))]
        painter.drawStaticText(rect.right() - 4 - int(percent.size().width()), top + 14, percent)


class EpisodeView(QWidget):
    """The support images by class on top, then the query images (one row per true class) as tiles."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.names: list[str] = []
        self.colours: list[str] = []
        self.grid = QueryGrid()
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._support: QWidget | None = None
        self.placeholder = QLabel("Press Run to adapt to a test episode; its support and query images appear here.")
        self.placeholder.setStyleSheet("color: #808080;")
        self.placeholder.setWordWrap(True)
        self.support_heading = self._heading("")
        self.query_heading = self._heading("Query set: prediction at the selected step (one row per true class)")
        self._layout.addWidget(self.placeholder)
        self._layout.addWidget(self.support_heading)
        self._support_slot = QVBoxLayout()
        self._layout.addLayout(self._support_slot)
        self._layout.addWidget(self.query_heading)
        self._layout.addWidget(self.grid)
        self._layout.addStretch(1)
        for widget in (self.support_heading, self.query_heading, self.grid):
            widget.hide()

    @property
    def tiles(self) -> list[QueryTile]:
        return self.grid.tiles

    def set_episode(self, episode: TestEpisode) -> None:
        """Build the thumbnails of ``episode`` (once per run of the loop)."""
        self.placeholder.hide()
        self.names = [short_class_name(name) for name in episode.class_names]
        self.colours = [PALETTE[i % len(PALETTE)] for i in range(len(self.names))]
        if self._support is not None:
            self._support_slot.removeWidget(self._support)
            self._support.deleteLater()
        self._support = self._support_strip(episode)
        self._support_slot.addWidget(self._support)
        self.support_heading.setText(f"Support set: {episode.n_shot} image(s) per class")
        self.grid.set_episode(episode, self.names, self.colours)
        for widget in (self.support_heading, self.query_heading, self.grid):
            widget.show()

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = WrappedLabel(text)  # wraps in a narrow view instead of widening it (a sideways scroll bar)
        label.setStyleSheet("font-weight: bold; margin-top: 4px;")
        return label

    def _class_label(self, label: int, full_name: str, width: int) -> QLabel:
        """A coloured square and the class's short name, elided to ``width`` pixels (full name as tooltip)."""
        chip = QLabel()
        name = elide_middle(self.names[label], QFontMetrics(chip.font()), width - 18)
        chip.setText(f"<span style='color:{self.colours[label]}'>■</span> {name}")
        chip.setToolTip(full_name)
        chip.setMaximumWidth(width)
        return chip

    def _support_strip(self, episode: TestEpisode) -> QWidget:
        strip_widget = QWidget()
        strip = QGridLayout(strip_widget)
        strip.setContentsMargins(0, 0, 0, 0)
        strip.setHorizontalSpacing(12)
        strip.setVerticalSpacing(2)
        support_y = episode.task.support_y.tolist()
        per_row = max(1, CLASSES_PER_SUPPORT_ROW // max(1, episode.n_shot))
        width = max(88, episode.n_shot * (SUPPORT_THUMB + 2))
        for label, full_name in enumerate(episode.class_names):
            group = QHBoxLayout()
            group.setSpacing(2)
            for index in [i for i, y in enumerate(support_y) if y == label]:
                image = QLabel()
                image.setPixmap(_thumbnail(episode.support_pixels[index], SUPPORT_THUMB))
                image.setToolTip(f"support image of {full_name}")
                group.addWidget(image)
            group.addStretch(1)
            column, row = label % per_row, 2 * (label // per_row)
            strip.addWidget(self._class_label(label, full_name, width), row, column)
            strip.addLayout(group, row + 1, column)
        strip.setColumnStretch(min(per_row, len(episode.class_names)), 1)
        return strip_widget

    def show_step(self, probabilities: np.ndarray, correct: np.ndarray) -> None:
        """probabilities: [Q, n_way] of one step; correct: [Q] bool."""
        self.grid.show_step(probabilities, correct)
