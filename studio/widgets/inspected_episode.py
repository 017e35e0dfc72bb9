"""One inspected episode on screen: support thumbnails grouped by class and a card per query image
(its predicted class, the probability and a ✓ / ✗ mark: a symbol as well as a colour).

The widgets are built once per episode shape and refilled when paging (the episode inspector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QLayout, QVBoxLayout, QWidget

from studio.widgets.elide import elide_middle

THUMB = 56             # thumbnail side in pixels: 28-px glyphs are shown at 2x
CARD_WIDTH = THUMB + 10
CARD_SPACING = 3
CLASS_LABEL_WIDTH = 104
SUPPORT_COLUMNS = 5
GOOD = "#1b7f3b"       # green, with a ✓
BAD = "#c62828"        # red, with a ✗
CHECK, CROSS = "✓", "✗"
PLACEHOLDER = "#d8d8d8"


def pixels_to_pixmap(pixels: Any, size: int = THUMB) -> QPixmap:
    """uint8 [C, H, W] tensor (C = 1 or 3) -> a ``size`` px square pixmap.

    Small images are enlarged by a whole factor without smoothing (crisp glyph strokes),
    large ones shrunk smoothly.
    """
    array = np.ascontiguousarray(pixels.numpy())
    if array.shape[0] == 1:
        plane = np.ascontiguousarray(array[0])
        image = QImage(plane.data, plane.shape[1], plane.shape[0], plane.strides[0], QImage.Format.Format_Grayscale8)
    else:
        rgb = np.ascontiguousarray(array[:3].transpose(1, 2, 0))
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
    side = max(image.width(), image.height())
    mode = (Qt.TransformationMode.FastTransformation if side <= size and size % side == 0
            else Qt.TransformationMode.SmoothTransformation)
    scaled = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode)
    return QPixmap.fromImage(scaled)  # converts (copies) now, while the numpy buffer is alive


def placeholder_pixmap(size: int = THUMB) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(PLACEHOLDER))
    return pixmap


def split_class_name(name: str) -> tuple[str, str]:
    """``"group/class"`` -> ("group", "class"); a flat name has no group."""
    group, _, leaf = name.rpartition("/")
    return group, leaf


def elided(text: str, label: QLabel, width: int, point_size: float = 0) -> str:
    """``text`` cut in its middle to ``width`` pixels of ``label``'s font (at ``point_size``, if given): both ends
    kept ("Alpha…Zukiish")."""
    font = QFont(label.font())
    if point_size:
        font.setPointSizeF(point_size)
    return elide_middle(text, QFontMetrics(font), width)



class QueryCard(QWidget):
    """A query thumbnail with its mark (✓/✗), the probability and the predicted class.

    Colours go through palettes and a painted border (solid green / dashed red): much
    cheaper than style sheets when 75 cards change on every page.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("query_card")
        self.setFixedWidth(CARD_WIDTH)
        self.image = QLabel()
        self.image.setFixedSize(THUMB, THUMB)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.mark = QLabel()
        self.mark.setObjectName("query_mark")
        bold = self.mark.font()
        bold.setBold(True)
        self.mark.setFont(bold)
        self.prediction = QLabel()
        self.prediction.setObjectName("query_prediction")
        small = self.prediction.font()
        small.setPointSizeF(max(6.0, small.pointSizeF() - 1))
        self.prediction.setFont(small)
        self.correct: bool | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(3, 3, 3, 2)
        layout.setSpacing(0)
        layout.addWidget(self.image, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.mark, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.prediction, 0, Qt.AlignmentFlag.AlignHCenter)

    def show_prediction(self, pixmap: QPixmap, correct: bool, probability: float, predicted_label: str,
                        tooltip: str) -> None:
        self.image.setPixmap(pixmap)
        self.mark.setText(f"{CHECK if correct else CROSS} {probability:.0%}")
        self.prediction.setText(elided(predicted_label, self.prediction, CARD_WIDTH - 4))
        self.setToolTip(tooltip)
        if correct != self.correct:
            self.correct = correct
            _set_text_colour(self.mark, GOOD if correct else BAD)
            _set_text_colour(self.prediction, "#606060" if correct else BAD)
            self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        if self.correct is None:
            return
        painter = QPainter(self)
        pen = QPen(QColor(GOOD if self.correct else BAD), 2)
        pen.setStyle(Qt.PenStyle.SolidLine if self.correct else Qt.PenStyle.DashLine)  # a pattern, not only a hue
        painter.setPen(pen)
        painter.drawRoundedRect(self.rect().adjusted(1, 1, -1, -1), 3, 3)
        painter.end()


def _set_text_colour(label: QLabel, colour: str) -> None:
    palette = label.palette()
    palette.setColor(QPalette.ColorRole.WindowText, QColor(colour))
    label.setPalette(palette)


class EpisodeView(QWidget):
    """Support thumbnails grouped by class (one row per class) and the query cards of that class.

    Built for one (n_way, n_shot, n_query) shape; :meth:`show_episode` refills the same
    widgets. Query cards wrap onto more lines when the view is narrow.
    """

    def __init__(self, n_way: int, n_shot: int, n_query: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shape = (n_way, n_shot, n_query)
        self.class_labels: list[QLabel] = []
        self.support_thumbs: list[QLabel] = []
        self.query_cards: list[QueryCard] = []
        self._query_grids: list[QGridLayout] = []
        self._query_boxes: list[QWidget] = []
        self._columns = 0
        grid = QGridLayout(self)
        # the width comes from the scroll area, not from the cards: they wrap instead
        grid.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        header = QLabel(f"One row per class: its name and support image(s) ({n_shot}-shot), then its queries with "
                        "✓ right / ✗ wrong, the probability and the predicted class")
        header.setWordWrap(True)
        header.setStyleSheet("color: #606060;")
        grid.addWidget(header, 0, 0, 1, 4)
        for row in range(n_way):
            self._build_row(grid, row, n_shot, n_query)
        grid.setColumnStretch(3, 1)
        grid.setRowStretch(n_way + 1, 1)
        self._relayout(self._query_columns(self.width()))

    def _build_row(self, grid: QGridLayout, row: int, n_shot: int, n_query: int) -> None:
        label = QLabel()
        label.setObjectName("class_label")
        columns = min(n_shot, SUPPORT_COLUMNS)
        label.setFixedWidth(max(CLASS_LABEL_WIDTH, columns * (THUMB + 4) + (columns - 1) * 3))
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.class_labels.append(label)
        support = QWidget()  # the class's name above its support images
        support_grid = QGridLayout(support)
        support_grid.setContentsMargins(0, 0, 0, 0)
        support_grid.setSpacing(3)
        support_grid.addWidget(label, 0, 0, 1, SUPPORT_COLUMNS, Qt.AlignmentFlag.AlignLeft)
        for i in range(n_shot):
            thumb = QLabel()
            thumb.setObjectName("support_thumb")
            thumb.setFixedSize(THUMB + 4, THUMB + 4)
            thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
            thumb.setStyleSheet("border: 1px solid #909090;")
            support_grid.addWidget(thumb, 1 + i // SUPPORT_COLUMNS, i % SUPPORT_COLUMNS)
            self.support_thumbs.append(thumb)
        separator = QFrame()
        separator.setFrameShape(QFrame.Shape.VLine)
        separator.setStyleSheet("color: #c0c0c0;")
        queries = QWidget()
        query_grid = QGridLayout(queries)
        query_grid.setContentsMargins(0, 0, 0, 0)
        query_grid.setSpacing(CARD_SPACING)
        query_grid.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self._query_grids.append(query_grid)
        self._query_boxes.append(queries)
        self.query_cards += [QueryCard() for _ in range(n_query)]
        top = Qt.AlignmentFlag.AlignTop
        grid.addWidget(support, row + 1, 0, top | Qt.AlignmentFlag.AlignLeft)
        grid.addWidget(separator, row + 1, 1)
        grid.addWidget(queries, row + 1, 2, 1, 2, top | Qt.AlignmentFlag.AlignLeft)

    # -- wrapping ---------------------------------------------------------------
    def _query_columns(self, width: int) -> int:
        """As many cards per line as fit right of the support images (estimated before the first layout)."""
        n_shot, n_query = self.shape[1], self.shape[2]
        left = self._query_boxes[0].x() if self._query_boxes else 0
        if left <= 0:
            left = max(CLASS_LABEL_WIDTH, min(n_shot, SUPPORT_COLUMNS) * (THUMB + 7)) + 32
        free = width - left - 6 + CARD_SPACING
        return max(1, min(n_query, free // (CARD_WIDTH + CARD_SPACING)))

    def _relayout(self, columns: int) -> None:
        if columns == self._columns:
            return
        self._columns = columns
        n_query = self.shape[2]
        for row, grid in enumerate(self._query_grids):
            cards = self.query_cards[row * n_query:(row + 1) * n_query]
            for card in cards:
                grid.removeWidget(card)
            for i, card in enumerate(cards):
                grid.addWidget(card, i // columns, i % columns)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self._relayout(self._query_columns(event.size().width()))
        QTimer.singleShot(0, self._refit)  # again once the columns left of the queries have their place

    def _refit(self) -> None:
        self._relayout(self._query_columns(self.width()))

    def minimumSizeHint(self) -> Any:  # noqa: N802 (Qt) - narrow enough to wrap instead of scrolling sideways
        hint = super().minimumSizeHint()
        hint.setWidth(max(CLASS_LABEL_WIDTH, min(self.shape[1], SUPPORT_COLUMNS) * (THUMB + 7)) + CARD_WIDTH + 50)
        return hint

    # -- content ---------------------------------------------------------------
    def show_episode(self, episode: Any, support: Any, query: Any, support_paths: Sequence[Path],
                     query_paths: Sequence[Path]) -> None:
        """Fill the widgets with one engine.inspection.InspectedEpisode and its uint8 images."""
        names = episode.class_names
        for i, (label, name) in enumerate(zip(self.class_labels, names)):
            group, leaf = split_class_name(name)
            width = label.width()
            group_line = f"<br><span style='color:#707070; font-size:8pt'>{elided(group, label, width, 8)}" \
                         "</span>" if group else ""
            label.setText(f"<b>class {i + 1}</b><br>{elided(leaf, label, width)}{group_line}")
            label.setToolTip(name)
        support_y = episode.support_y.tolist()
        for i, thumb in enumerate(self.support_thumbs):
            thumb.setPixmap(self._pixmap(support, i))
            thumb.setToolTip(f"support image of class {support_y[i] + 1} · {names[support_y[i]]}\n{support_paths[i]}")
        rows = episode.probabilities.tolist()  # python lists: per-element tensor access is slow
        for i, (card, true, predicted) in enumerate(zip(self.query_cards, episode.query_y.tolist(),
                                                        episode.predicted.tolist())):
            card.show_prediction(self._pixmap(query, i), true == predicted, rows[i][predicted],
                                 f"→ class {predicted + 1}",
                                 self._query_tooltip(names, true, predicted, rows[i], query_paths[i]))

    @staticmethod
    def _pixmap(images: Any, i: int) -> QPixmap:
        return placeholder_pixmap() if images is None else pixels_to_pixmap(images[i])

    @staticmethod
    def _query_tooltip(names: list[str], true: int, predicted: int, row: list[float], path: Path) -> str:
        top = sorted(range(len(names)), key=lambda c: -row[c])[:3]
        ranked = "\n".join(f"  class {c + 1} · {names[c]}: {row[c]:.1%}" for c in top)
        verdict = "right" if true == predicted else "wrong"
        return (f"true class: {true + 1} · {names[true]}\npredicted: class {predicted + 1} · {names[predicted]} "
                f"({verdict})\nmost probable:\n{ranked}\n{path}")
