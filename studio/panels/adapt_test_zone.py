"""The Adapt panel's test zone: dropped images show their predicted class with a bar per class;
a dropped folder fills a table (file, predicted, confidence) with the accuracy when its
sub-folders name the classes.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QFont, QPainter
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QLayout, QMenu,
                               QPushButton, QScrollArea, QSizePolicy, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget, QWidgetItem)

from engine.api import SESSION_FILES_PREFIX, Example
from studio.panels.adapt_cards import (example_pixmap, mime_has_content, mime_image, mime_paths, set_message,
                                      set_style)
from studio.panels.adapt_input import AddImagesButton, DropHint
from studio.widgets.draw_pad import DrawBox
from studio.widgets.elide import ElidedLabel, elide_middle

TILE_THUMB = 52
TILE_WIDTH = 196


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def example_caption(example: Example) -> str:
    """A test image's caption: its name, with the folder it came from when the name is just the file's
    ("character07/03.png": in a nested data set the file name alone does not say which image it is); not the
    session's own folder of pasted and drawn images ("drawn-1c2e.png")."""
    source = example.source
    if (source is not None and example.name == source.name and source.parent.name
            and not source.parent.name.startswith(SESSION_FILES_PREFIX)):
        return f"{source.parent.name}/{source.name}"
    return example.name


class FlowLayout(QLayout):
    """Places widgets left to right and wraps to the next line (height follows the width)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 8) -> None:
        super().__init__(parent)
        self._items: list[QWidgetItem] = []
        self._spacing = spacing

    def addItem(self, item) -> None:  # noqa: N802 - Qt API
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int):  # noqa: N802 - Qt API
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int):  # noqa: N802 - Qt API
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self):  # noqa: N802 - Qt API
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt API
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt API
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return self.minimumSize()

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt API
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        margins = self.contentsMargins()
        return size + QSize(margins.left() + margins.right(), margins.top() + margins.bottom())

    def _arrange(self, rect: QRect, move: bool) -> int:
        """A grid of equal columns as wide as the rect allows (items are at least their hint wide)."""
        margins = self.contentsMargins()
        area = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        if not self._items:
            return margins.top() + margins.bottom()
        base = max(item.sizeHint().width() for item in self._items)
        columns = max(1, (area.width() + self._spacing) // (base + self._spacing))
        width = max(base, (area.width() - (columns - 1) * self._spacing) // columns)
        y = area.y()
        for start in range(0, len(self._items), columns):
            row = self._items[start:start + columns]
            height = max(item.sizeHint().height() for item in row)
            if move:
                for column, item in enumerate(row):
                    item.setGeometry(QRect(QPoint(area.x() + column * (width + self._spacing), y),
                                           QSize(width, height)))
            y += height + self._spacing
        return y - self._spacing - rect.y() + margins.bottom()


def _small_font(font: QFont) -> QFont:
    small = QFont(font)
    small.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
    return small


class ProbabilityRow(QWidget):
    """One class of a test card: its name, a bar as long as the probability (in the class colour), the
    percentage; as tall as its text needs, so the card's layout makes room for every row."""

    NAME_WIDTH, PCT_WIDTH = 58, 32

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name, self.colour, self.value, self.best = "", "#888", 0.0, False
        self.setFont(_small_font(self.font()))
        self.setFixedHeight(self.fontMetrics().height() + 4)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_value(self, name: str, colour: str, value: float, best: bool) -> None:
        self.name, self.colour, self.value, self.best = name, colour, value, best
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        height = self.height()
        bar_x = self.NAME_WIDTH + 4
        bar_width = max(10, self.width() - bar_x - self.PCT_WIDTH - 2)
        text_colour = QColor("#222" if self.best else "#666")
        painter.setPen(text_colour)
        painter.drawText(QRect(0, 0, self.NAME_WIDTH, height), Qt.AlignmentFlag.AlignVCenter,
                         elide_middle(self.name, self.fontMetrics(), self.NAME_WIDTH))
        bar_height = min(8, height - 4)
        bar_top = (height - bar_height) // 2
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#eceff3"))
        painter.drawRoundedRect(QRect(bar_x, bar_top, bar_width, bar_height), 3, 3)
        painter.setBrush(QColor(self.colour))
        painter.drawRoundedRect(QRect(bar_x, bar_top, max(2, round(bar_width * self.value)), bar_height), 3, 3)
        painter.setPen(text_colour)
        painter.drawText(QRect(bar_x + bar_width + 2, 0, self.PCT_WIDTH, height),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, f"{100 * self.value:.0f}%")
        painter.end()


class ProbabilityBars(QWidget):
    """The probability of every class, one :class:`ProbabilityRow` each (all of them in the tooltip)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def rows(self) -> list[ProbabilityRow]:
        return [self._layout.itemAt(i).widget() for i in range(self._layout.count())]

    def set_values(self, names: list[str], colours: list[str], values: list[float]) -> None:
        rows = self.rows()
        for row in rows[len(names):]:
            self._layout.removeWidget(row)
            row.deleteLater()
        for _ in range(len(rows), len(names)):
            self._layout.addWidget(ProbabilityRow(self))
        best = max(range(len(values)), key=lambda i: values[i]) if values else -1
        for i, row in enumerate(self.rows()):
            row.set_value(names[i], colours[i], values[i], i == best)
        self.setToolTip("\n".join(f"{name}: {100 * value:.1f}%" for name, value in zip(names, values)))


class QueryTile(QFrame):
    """A dropped test image with its predicted class and the probability of every class."""

    remove_requested = Signal(str)  # example key

    def __init__(self, example: Example, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.example = example
        self.predicted: str | None = None
        self.probabilities: list[float] | None = None
        self.setObjectName("query_tile")
        self.setMinimumWidth(TILE_WIDTH)
        self.setStyleSheet("QFrame#query_tile { background: white; border: 1px solid #d6d9de; border-radius: 6px; }")
        self.thumb = QLabel()
        self.thumb.setFixedSize(TILE_THUMB, TILE_THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setPixmap(example_pixmap(example, TILE_THUMB))
        self.thumb.setStyleSheet("background: #f4f5f7; border-radius: 4px;")
        self.thumb.setToolTip(str(example.source) if example.source else example.name)
        self.name_label = ElidedLabel(example_caption(example), min_chars=3)
        self.name_label.setToolTip(str(example.source) if example.source else "")
        self.name_label.setStyleSheet("color: #777; font-size: 8pt;")
        self.predicted_label = QLabel("waiting for classes...")
        self.predicted_label.setObjectName("predicted")
        self.predicted_label.setTextFormat(Qt.TextFormat.RichText)
        for label in (self.name_label, self.predicted_label):  # long names must not widen the tile
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.bars = ProbabilityBars()
        side = QVBoxLayout()
        side.setSpacing(1)
        side.addWidget(self.name_label)
        side.addWidget(self.predicted_label)
        side.addStretch(1)
        top = QHBoxLayout()
        top.setSpacing(6)
        top.addWidget(self.thumb)
        top.addLayout(side, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.bars)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(TILE_WIDTH, super().sizeHint().height())

    def set_prediction(self, names: list[str], colours: list[str], probabilities: list[float] | None) -> None:
        if not probabilities:
            self.predicted, self.probabilities = None, None
            self.predicted_label.setText("waiting for classes...")
            set_style(self.predicted_label, "color: #888;")
            self.bars.set_values([], [], [])
            self.bars.setVisible(False)
            return
        best = max(range(len(probabilities)), key=lambda i: probabilities[i])
        self.predicted, self.probabilities = names[best], list(probabilities)
        mark = ""
        if self.example.truth is not None:
            right = self.example.truth == names[best]
            mark = (f"&nbsp;<span style='color:{'#2e7d32' if right else '#b3261e'}'>"
                    f"{'&#10003;' if right else '&#10007;'}</span>")
        self.predicted_label.setText(f"{_escape(names[best])}&nbsp; {100 * probabilities[best]:.0f}%{mark}")
        set_style(self.predicted_label, f"color: {colours[best]}; font-weight: 600; font-size: 10pt;")
        self.bars.setVisible(True)
        self.bars.set_values(names, colours, list(probabilities))

    def _menu(self, position) -> None:
        menu = QMenu(self)
        menu.addAction("Remove this test image", lambda: self.remove_requested.emit(self.example.key))
        menu.exec(self.mapToGlobal(position))


class TestZone(QFrame):
    """Drop zone for test images (tiles) and test folders (a table)."""

    files_dropped = Signal(list)        # [Path]
    images_pasted = Signal(list)        # [QImage]
    remote_dropped = Signal(list)       # [url]
    clear_requested = Signal()
    remove_requested = Signal(str)      # example key
    drawing_added = Signal(list)        # strokes of the zone's draw pad (studio.widgets.draw_pad)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("test_zone")
        self.setAcceptDrops(True)
        self.tiles: list[QueryTile] = []
        self.folder_examples: list[Example] = []
        self.folder_predictions: list[tuple[str, float]] = []
        self.accuracy: float | None = None

        title = QLabel("Test")
        title.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.add_button = AddImagesButton("Add test images...", "to classify")
        self.add_button.setObjectName("add_test_images")
        self.add_button.paths_chosen.connect(self.files_dropped)
        self.clear_button = QPushButton("Clear test images")
        self.clear_button.setToolTip("Remove all test images")
        self.clear_button.clicked.connect(self.clear_requested)
        self.draw_box = DrawBox("to classify")
        self.draw_box.drawing_done.connect(self.drawing_added)
        self.draw_button = self.draw_box.toggle_button("\u270E Draw", "Draw a character to classify (mouse or pen)")
        header = QHBoxLayout()
        header.addWidget(title)
        header.addStretch(1)
        header.addWidget(self.draw_button)
        header.addWidget(self.add_button)
        header.addWidget(self.clear_button)
        self.hint = ElidedLabel("Drop or add images to classify them, or a folder whose sub-folders are named "
                                "like the classes (then the accuracy shows)")
        self.hint.setStyleSheet("color: #777; font-size: 8pt;")
        self.message_label = QLabel()
        self.message_label.setObjectName("zone_message")
        self.message_label.setWordWrap(True)
        set_message(self.message_label, "")

        self.tile_host = QWidget()
        self.tile_host.setObjectName("tile_host")
        self.flow = FlowLayout(self.tile_host)
        self.flow.setContentsMargins(2, 2, 2, 2)
        self.empty_label = DropHint("Drop test images here, or click to choose them")
        self.empty_label.clicked.connect(self.add_button.choose_files)
        self.empty_label.setStyleSheet("color: #999; font-size: 12pt; border: 2px dashed #c8ccd2; "
                                       "border-radius: 8px; padding: 18px;")
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.tile_host)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.folder_label = ElidedLabel(mode=Qt.TextElideMode.ElideRight)
        self.folder_label.setObjectName("folder_summary")
        self.folder_label.setStyleSheet("font-weight: 600;")
        self.table = QTableWidget(0, 4)
        self.table.setObjectName("folder_table")
        self.table.setHorizontalHeaderLabels(["File", "True class", "Predicted", "Confidence"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            self.table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.folder_box = QWidget()
        folder_layout = QVBoxLayout(self.folder_box)
        folder_layout.setContentsMargins(0, 0, 0, 0)
        folder_layout.addWidget(self.folder_label)
        folder_layout.addWidget(self.table)
        self.folder_box.setVisible(False)

        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.scroll)
        self.splitter.addWidget(self.folder_box)
        self.splitter.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addLayout(header)
        layout.addWidget(self.hint)
        layout.addWidget(self.message_label)
        layout.addWidget(self.draw_box)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.splitter, 1)
        self._apply_style(False)
        self._update_empty()

    # -- content ---------------------------------------------------------------------------------------
    def set_tiles(self, examples: list[Example]) -> None:
        """Show one tile per test image (tiles of examples already shown are kept)."""
        existing = {tile.example.key: tile for tile in self.tiles}
        wanted = [e.key for e in examples]
        for tile in self.tiles:
            if tile.example.key not in wanted:
                self.flow.removeWidget(tile)
                tile.deleteLater()
        tiles = []
        for example in examples:
            tile = existing.get(example.key)
            if tile is None or tile.example is not example:
                if tile is not None:
                    self.flow.removeWidget(tile)
                    tile.deleteLater()
                tile = QueryTile(example)
                tile.remove_requested.connect(self.remove_requested)
            tiles.append(tile)
        while self.flow.count():
            self.flow.takeAt(0)
        for tile in tiles:
            self.flow.addWidget(tile)
            tile.show()
        self.tiles = tiles
        self.tile_host.updateGeometry()
        self._update_empty()

    def set_folder(self, name: str | None, examples: list[Example]) -> None:
        self.folder_examples = list(examples)
        self.folder_predictions = []
        self.accuracy = None
        self.folder_label.setText(f"Folder {name}: {len(examples)} images" if name else "")
        self.table.setRowCount(len(examples))
        for row, example in enumerate(examples):
            self._set_cell(row, 0, str(example.source or example.name))
            self._set_cell(row, 1, example.truth or "")
            self._set_cell(row, 2, "")
            self._set_cell(row, 3, "")
        self.folder_box.setVisible(bool(examples))
        self._update_empty()

    def _set_cell(self, row: int, column: int, text: str, colour: str | None = None) -> None:
        item = self.table.item(row, column)
        if item is None:
            item = QTableWidgetItem()
            self.table.setItem(row, column, item)
        item.setText(text)
        if column == 0:
            item.setToolTip(text)
        if column == 3:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if colour is not None:
            item.setForeground(QColor(colour))

    def set_predictions(self, names: list[str], colours: list[str], tile_probs: list[list[float]] | None,
                        folder_probs: list[list[float]] | None) -> None:
        """Update every tile and table row (None: no classifier yet)."""
        for i, tile in enumerate(self.tiles):
            tile.set_prediction(names, colours, tile_probs[i] if tile_probs is not None else None)
        self.folder_predictions = []
        correct = labelled = 0
        for row, example in enumerate(self.folder_examples):
            if folder_probs is None:
                self._set_cell(row, 2, "")
                self._set_cell(row, 3, "")
                continue
            probs = folder_probs[row]
            best = max(range(len(probs)), key=lambda i: probs[i])
            self.folder_predictions.append((names[best], probs[best]))
            mark = ""
            if example.truth in names:
                labelled += 1
                correct += int(example.truth == names[best])
                mark = " \u2713" if example.truth == names[best] else " \u2717"
            self._set_cell(row, 2, names[best] + mark, colours[best])
            self._set_cell(row, 3, f"{100 * probs[best]:.1f}%")
        self.accuracy = correct / labelled if labelled else None
        base = self.folder_label.full_text().split(" \u2014 ")[0]
        if self.folder_examples:
            if self.accuracy is not None:
                base += f" \u2014 accuracy {100 * self.accuracy:.1f}% ({correct}/{labelled} files in folders " \
                        "named like a class)"
            elif folder_probs is not None:
                base += " \u2014 no accuracy: no sub-folder is named like a class"
        self.folder_label.setText(base)

    def show_message(self, text: str, level: str = "info") -> None:
        set_message(self.message_label, text, level)

    def message(self) -> str:
        return self.message_label.text() if self.message_label.isVisibleTo(self) else ""

    def _update_empty(self) -> None:
        empty = not self.tiles and not self.folder_examples
        self.empty_label.setVisible(empty)
        self.splitter.setVisible(not empty)
        self.scroll.setVisible(bool(self.tiles))
        self.clear_button.setEnabled(not empty)

    # -- drag and drop ----------------------------------------------------------------------------------
    def _apply_style(self, highlight: bool) -> None:
        border = "#3d7bd9" if highlight else "#d6d9de"
        background = "#eef4ff" if highlight else "#fafbfc"
        set_style(self, f"QFrame#test_zone {{ background: {background}; border: 1px solid {border}; "
                        "border-radius: 8px; } QWidget#tile_host { background: transparent; }")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if mime_has_content(event.mimeData()):
            event.acceptProposedAction()
            self._apply_style(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if mime_has_content(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._apply_style(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        self._apply_style(False)
        mime = event.mimeData()
        if not mime_has_content(mime):
            event.ignore()
            return
        event.acceptProposedAction()
        paths, remote = mime_paths(mime)
        if paths:
            self.files_dropped.emit(paths)
        elif remote:
            self.remote_dropped.emit(remote)
        else:
            image = mime_image(mime)
            if image is not None:
                self.images_pasted.emit([image])
