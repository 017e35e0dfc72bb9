"""Class cards of the Adapt panel: an editable name, thumbnails of the support images, messages.

A card only displays its :class:`~engine.sessions.adapt_support.ClassState` and
reports what the user did (drop, paste, delete, rename) through signals; the
panel decides what happens and gives the card its new state and messages.
Also here: thumbnails of examples (cached) and the drag-and-drop helpers shared
with the test zone.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (QAction, QColor, QDragEnterEvent, QDropEvent, QGuiApplication, QIcon, QImage,
                           QImageReader, QKeySequence, QPixmap, QShortcut)
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QLabel, QListView, QListWidget,
                               QListWidgetItem, QMenu, QProgressDialog, QPushButton, QSizePolicy, QSplitter,
                               QToolButton, QVBoxLayout, QWidget)

from engine.api import ClassState, DecodeResult, Example
from studio.jobs.thread import WorkerHandle, run_in_worker
from studio.panels.adapt_input import AddImagesButton, ClassNameEdit, DropHint
from studio.widgets.draw_pad import DrawBox
from studio.widgets.elide import ElidedLabel
from studio.widgets.images import pixels_to_qimage

THUMB = 48
SOURCE_ROLE = Qt.ItemDataRole.UserRole + 1   # a thumbnail's file (what dragging it out carries)
MAX_ROWS = 3
_THUMB_CACHE: OrderedDict[tuple[str, int], QPixmap] = OrderedDict()
_THUMB_CACHE_SIZE = 4000

LEVEL_COLOURS = {"info": "#31708f", "ok": "#2e7d32", "warning": "#9a6700", "error": "#b3261e"}


# -- thumbnails ---------------------------------------------------------------------------------------
def png_bytes(image: QImage) -> bytes:
    """The image encoded as PNG (how a pasted clipboard image is saved)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def example_pixmap(example: Example, size: int = THUMB) -> QPixmap:
    """A square-fitted thumbnail: from the original file when readable (sharper), else from the pixels."""
    cache_key = (example.key, size)
    cached = _THUMB_CACHE.get(cache_key)
    if cached is not None:
        _THUMB_CACHE.move_to_end(cache_key)
        return cached
    image = QImage()
    if example.source is not None:
        reader = QImageReader(str(example.source))
        reader.setAutoTransform(True)
        original = reader.size()
        if original.isValid() and max(original.width(), original.height()) > size * 2:
            reader.setScaledSize(original.scaled(size * 2, size * 2, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
    if image.isNull():
        image = pixels_to_qimage(example.pixels)
    mode = (Qt.TransformationMode.FastTransformation if image.width() < size
            else Qt.TransformationMode.SmoothTransformation)
    pixmap = QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))
    _THUMB_CACHE[cache_key] = pixmap
    if len(_THUMB_CACHE) > _THUMB_CACHE_SIZE:
        _THUMB_CACHE.popitem(last=False)
    return pixmap


# -- drag and drop --------------------------------------------------------------------------------------
def mime_has_content(mime: QMimeData) -> bool:
    return mime.hasUrls() or mime.hasImage()


def mime_paths(mime: QMimeData) -> tuple[list[Path], list[str]]:
    """Local file paths of a drop or paste, and the URLs that are not local files."""
    paths, remote = [], []
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            paths.append(Path(url.toLocalFile()))
        else:
            remote.append(url.toString())
    return paths, remote


def mime_image(mime: QMimeData) -> QImage | None:
    if not mime.hasImage():
        return None
    data = mime.imageData()
    if isinstance(data, QImage) and not data.isNull():
        return data
    if isinstance(data, QPixmap) and not data.isNull():
        return data.toImage()
    return None


def set_message(label: QLabel, text: str, level: str = "info") -> None:
    """Show ``text`` in a message label coloured by level ('' hides it); a no-op when nothing changed."""
    if getattr(label, "message_state", None) == (text, level):
        return
    label.message_state = (text, level)  # a Python attribute: cheaper than a Qt property round trip
    label.setText(text)
    label.setToolTip(text)
    set_style(label, f"color: {LEVEL_COLOURS.get(level, LEVEL_COLOURS['info'])};")
    label.setVisible(bool(text))


def message_level(label: QLabel) -> str:
    """The level of the message shown by ``label`` ('' when none)."""
    text, level = getattr(label, "message_state", ("", ""))
    return level if text else ""


def set_style(widget: QWidget, sheet: str) -> None:
    """setStyleSheet only when the sheet changes (re-polishing is the slow part of an update)."""
    if widget.styleSheet() != sheet:
        widget.setStyleSheet(sheet)


# -- the card ---------------------------------------------------------------------------------------------
class ThumbnailList(QListWidget):
    """One scrolling row of thumbnails; Delete removes the selected ones; dragged out, they are their files
    (a drawing's PNG too), to drop on another card, the test zone or another program."""

    delete_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 8, THUMB + 8))
        self.setSpacing(0)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setFixedHeight(self.rows_height(1))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setStyleSheet("QListWidget { background: transparent; }")
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    @staticmethod
    def rows_height(rows: int) -> int:
        return rows * (THUMB + 8) + 4

    def fit_height(self) -> None:
        """As many rows as the thumbnails need, at most MAX_ROWS (then it scrolls)."""
        per_row = max(1, (self.viewport().width() - 2) // (THUMB + 8))
        rows = min(MAX_ROWS, max(1, -(-self.count() // per_row)))
        height = self.rows_height(rows)
        if self.height() != height:
            self.setFixedHeight(height)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self.fit_height()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selectedItems():
            self.delete_pressed.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def keys(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt API
        return ["text/uri-list"]

    def mimeData(self, items) -> QMimeData:  # noqa: N802 - Qt API
        """What a drag of ``items`` carries: the files of the examples that came from one."""
        mime = QMimeData()
        sources = [item.data(SOURCE_ROLE) for item in items if item.data(SOURCE_ROLE)]
        mime.setUrls([QUrl.fromLocalFile(source) for source in sources])
        return mime

    def selected_keys(self) -> list[str]:
        return [item.data(Qt.ItemDataRole.UserRole) for item in self.selectedItems()]


class ClassCard(QFrame):
    """One new class: colour, editable name, image count, thumbnails, a note and a message line.

    Signals carry the card itself so the panel knows which class they concern.
    """

    files_dropped = Signal(object, list)      # card, [Path]
    images_pasted = Signal(object, list)      # card, [QImage]
    remove_requested = Signal(object, list)   # card, [example key]
    rename_requested = Signal(object, str)    # card, new name
    delete_requested = Signal(object)         # card
    remote_dropped = Signal(object, list)     # card, [url] that are not local files
    drawing_added = Signal(object, list)      # card, strokes of its draw pad (studio.widgets.draw_pad)

    def __init__(self, state: ClassState, colour: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.uid = state.uid
        self.state = state
        self.colour = colour
        self.setObjectName("class_card")
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

        self.dot = QLabel()
        self.dot.setFixedSize(14, 14)
        self.name_edit = ClassNameEdit(state.name)
        self.name_edit.setObjectName("class_name")
        self.name_edit.setPlaceholderText("class name")
        self.name_edit.setMaxLength(100)
        self.name_edit.setFrame(False)
        self.name_edit.setStyleSheet("QLineEdit { font-weight: 600; font-size: 11pt; background: transparent; }"
                                     "QLineEdit:focus { background: white; border: 1px solid #9ab; }")
        self.name_edit.editingFinished.connect(self._name_edited)
        self.name_edit.setCursorPosition(0)  # the name's start shows when the card is narrower than the name
        self.count_label = ElidedLabel(mode=Qt.TextElideMode.ElideRight, min_chars=1)  # gives way to the name
        self.count_label.setStyleSheet("color: #666;")
        self.delete_button = QToolButton()
        self.delete_button.setText("\u2715")
        self.delete_button.setToolTip("Remove this class")
        self.delete_button.setAutoRaise(True)
        self.delete_button.clicked.connect(lambda: self.delete_requested.emit(self))
        self.add_button = AddImagesButton("Add images...", "to this class")
        self.add_button.setObjectName("add_class_images")
        self.add_button.setAutoRaise(True)
        self.add_button.paths_chosen.connect(lambda paths: self.files_dropped.emit(self, paths))
        self.draw_box = DrawBox("to this class")
        self.draw_box.drawing_done.connect(lambda strokes: self.drawing_added.emit(self, strokes))
        self.draw_button = self.draw_box.toggle_button("\u270E", "Draw an example of this class (mouse or pen)")

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(6)
        header.addWidget(self.dot)
        header.addWidget(self.name_edit, 1)
        header.addWidget(self.count_label)
        header.addWidget(self.add_button)
        header.addWidget(self.draw_button)
        header.addWidget(self.delete_button)

        self.thumbs = ThumbnailList(self)
        self.thumbs.delete_pressed.connect(self._delete_selected)
        self.thumbs.customContextMenuRequested.connect(self._context_menu)
        self.placeholder = DropHint("Drop images or a folder here, paste with Ctrl+V, or click to choose files")
        self.placeholder.clicked.connect(self.add_button.choose_files)
        self.placeholder.setFixedHeight(ThumbnailList.rows_height(1))
        self.placeholder.setStyleSheet("color: #888; border: 1px dashed #bbb; border-radius: 4px;")
        self.note_label = QLabel()
        self.note_label.setObjectName("card_note")
        self.note_label.setWordWrap(True)
        self.message_label = QLabel()
        self.message_label.setObjectName("card_message")
        self.message_label.setWordWrap(True)
        set_message(self.note_label, "")
        set_message(self.message_label, "")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 8, 6)
        layout.setSpacing(3)
        layout.addLayout(header)
        layout.addWidget(self.thumbs)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.draw_box)
        layout.addWidget(self.note_label)
        layout.addWidget(self.message_label)

        paste = QShortcut(QKeySequence(QKeySequence.StandardKey.Paste), self)
        paste.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        paste.activated.connect(self.paste_from_clipboard)
        self._apply_style(highlight=False)
        self.set_state(state, colour)

    # -- display -------------------------------------------------------------------------------------
    def set_state(self, state: ClassState, colour: str, *, included: bool = True) -> None:
        """Show ``state``: name, count and thumbnails (items are rebuilt only when the examples changed)."""
        self.state = state
        self.colour = colour
        self.add_button.purpose = f"to the class {state.name}"
        set_style(self.dot, f"background: {colour}; border-radius: 7px;")
        if self.name_edit.text() != state.name and not self.name_edit.hasFocus():
            self.name_edit.setText(state.name)
            self.name_edit.setCursorPosition(0)
        n = len(state.examples)
        self.count_label.setText(f"{n} image{'s' if n != 1 else ''}")
        if self.thumbs.keys() != [e.key for e in state.examples]:
            self._fill_thumbnails(state.examples)
        self.thumbs.setVisible(n > 0)
        self.placeholder.setVisible(n == 0)
        if n == 0:
            set_message(self.note_label, "No images yet: this class is left out of the classifier until it has "
                                         "at least one.", "warning")
        elif not included:
            set_message(self.note_label, "Left out: add images to a second class to start classifying.", "info")
        else:
            set_message(self.note_label, "")
        self._apply_style(highlight=False)

    def _fill_thumbnails(self, examples: tuple[Example, ...]) -> None:
        self.thumbs.setUpdatesEnabled(False)
        self.thumbs.clear()
        for example in examples:
            item = QListWidgetItem(QIcon(example_pixmap(example)), "")
            item.setData(Qt.ItemDataRole.UserRole, example.key)
            item.setData(SOURCE_ROLE, str(example.source) if example.source is not None else "")
            item.setToolTip(str(example.source) if example.source is not None else example.name)
            item.setSizeHint(QSize(THUMB + 8, THUMB + 8))
            self.thumbs.addItem(item)
        self.thumbs.setUpdatesEnabled(True)
        self.thumbs.fit_height()
        if examples:
            self.thumbs.scrollToItem(self.thumbs.item(len(examples) - 1))

    def show_message(self, text: str, level: str = "info") -> None:
        set_message(self.message_label, text, level)

    def message(self) -> str:
        return self.message_label.text() if self.message_label.isVisibleTo(self) else ""

    def note(self) -> str:
        return self.note_label.text() if self.note_label.isVisibleTo(self) else ""

    def reset_name(self) -> None:
        self.name_edit.setText(self.state.name)
        self.name_edit.setCursorPosition(0)

    def _apply_style(self, highlight: bool) -> None:
        border = "#3d7bd9" if highlight else "#d6d9de"
        background = "#eef4ff" if highlight else "#ffffff"
        set_style(self, f"QFrame#class_card {{ background: {background}; border: 1px solid {border}; "
                        f"border-left: 5px solid {self.colour}; border-radius: 6px; }}")

    # -- user actions --------------------------------------------------------------------------------
    def _name_edited(self) -> None:
        text = self.name_edit.text()
        if not self.name_edit.hasFocus():
            self.name_edit.setCursorPosition(0)  # left: its start shows again, not its scrolled end
        if text != self.state.name:
            self.rename_requested.emit(self, text)

    def _delete_selected(self) -> None:
        keys = self.thumbs.selected_keys()
        if keys:
            self.remove_requested.emit(self, keys)

    def _context_menu(self, position) -> None:
        item = self.thumbs.itemAt(position)
        if item is not None and not item.isSelected():
            self.thumbs.clearSelection()
            item.setSelected(True)
        menu = QMenu(self)
        remove = QAction(f"Remove {len(self.thumbs.selectedItems())} image(s)", menu)
        remove.setEnabled(bool(self.thumbs.selectedItems()))
        remove.triggered.connect(self._delete_selected)
        paste = QAction("Paste images", menu)
        paste.triggered.connect(self.paste_from_clipboard)
        menu.addAction(remove)
        menu.addAction(paste)
        menu.exec(self.thumbs.viewport().mapToGlobal(position))

    def paste_from_clipboard(self) -> None:
        """Ctrl+V: file URLs or an image on the clipboard become support examples."""
        self.handle_mime(QGuiApplication.clipboard().mimeData(), pasted=True)

    def handle_mime(self, mime: QMimeData | None, pasted: bool = False) -> None:
        if mime is None or not mime_has_content(mime):
            if pasted:
                self.show_message("The clipboard holds no image and no image file.", "warning")
            return
        paths, remote = mime_paths(mime)
        if paths:
            self.files_dropped.emit(self, paths)
        elif remote:
            self.remote_dropped.emit(self, remote)
        else:
            image = mime_image(mime)
            if image is not None:
                self.images_pasted.emit(self, [image])

    # -- drag and drop -------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if mime_has_content(event.mimeData()):
            event.acceptProposedAction()
            self._apply_style(highlight=True)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if mime_has_content(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._apply_style(highlight=False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        self._apply_style(highlight=False)
        mime = event.mimeData()
        if not mime_has_content(mime):
            event.ignore()
            return
        event.acceptProposedAction()
        self.handle_mime(mime)


def colour_for(index: int) -> str:
    from studio.widgets.plot_parts import PALETTE

    return PALETTE[index % len(PALETTE)]


def qcolour(name: str, alpha: int = 255) -> QColor:
    colour = QColor(name)
    colour.setAlpha(alpha)
    return colour


class CardList(QWidget):
    """The column of class cards (one per class of a support set, in its order, each with a stable colour);
    files dropped between cards make new classes."""

    files_dropped = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self.cards: dict[int, ClassCard] = {}
        self.colours: dict[int, str] = {}
        self._order: list[ClassCard] = []   # the cards in layout order
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(2, 2, 6, 2)
        self.layout_.setSpacing(8)
        self.layout_.addStretch(1)

    def sync(self, support: tuple[ClassState, ...], new_card: Callable[[ClassState, str], ClassCard]) -> None:
        """Make the cards match ``support`` (order, names, thumbnails, notes); ``new_card(state, colour)``
        builds the card of a new class."""
        wanted = {c.uid for c in support}
        for uid in [uid for uid in self.cards if uid not in wanted]:
            card = self.cards.pop(uid)
            card.setParent(None)
            card.deleteLater()
        included = sum(1 for c in support if c.examples) >= 2
        order = list(self._order)
        if [c.uid for c in order] != [s.uid for s in support]:
            for card in order:
                if card.uid in self.cards:
                    self.layout_.removeWidget(card)
            order = []
        for index, state in enumerate(support):
            colour = self.colours.setdefault(state.uid, self._free_colour(support))
            card = self.cards.get(state.uid)
            if card is None:
                card = self.cards[state.uid] = new_card(state, colour)
            if not order:
                self.layout_.insertWidget(index, card)
                card.show()
            card.set_state(state, colour, included=included)
        self._order = [self.cards[s.uid] for s in support]

    def card_named(self, name: str) -> ClassCard | None:
        return next((card for card in self._order if card.state.name == name), None)

    def _free_colour(self, support: tuple[ClassState, ...]) -> str:
        """The first palette colour that no class of ``support`` uses."""
        used = {self.colours[c.uid] for c in support if c.uid in self.colours}
        for index in range(64):
            if colour_for(index) not in used:
                return colour_for(index)
        return colour_for(len(used))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        paths, _ = mime_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)


# -- layout helpers -------------------------------------------------------------------------------------
def button(text: str, tooltip: str, slot: Callable[[], Any]) -> QPushButton:
    """A push button calling ``slot()`` (without Qt's ``checked`` argument) when clicked."""
    widget = QPushButton(text)
    widget.setToolTip(tooltip)
    widget.clicked.connect(lambda: slot())
    return widget


def hbox(items: Sequence[Any], spacing: int | None = None) -> QHBoxLayout:
    """A row of widgets: an int adds spacing (a stretch in rows without ``spacing``), (widget, n) stretches."""
    row = QHBoxLayout()
    if spacing is not None:
        row.setSpacing(spacing)
    for item in items:
        if isinstance(item, int) and spacing is not None:
            row.addSpacing(item)
        elif isinstance(item, int):
            row.addStretch(item)
        elif isinstance(item, tuple):
            row.addWidget(*item)
        else:
            row.addWidget(item)
    return row


def splitter(orientation: Qt.Orientation, widgets: Sequence[QWidget], stretches: Sequence[int],
             sizes: Sequence[int]) -> QSplitter:
    """A splitter of ``widgets`` whose panes keep a minimum size."""
    split = QSplitter(orientation)
    for index, (widget, stretch) in enumerate(zip(widgets, stretches)):
        split.addWidget(widget)
        split.setStretchFactor(index, stretch)
    split.setSizes(list(sizes))
    split.setChildrenCollapsible(False)
    return split


def decode_in_worker(parent: QWidget, label: str, total: int, job: Callable[..., DecodeResult],
                     done: Callable[[DecodeResult], None],
                     on_error: Callable[[str], None]) -> tuple[QProgressDialog, WorkerHandle]:
    """Run the decoding ``job(progress, should_stop)`` of ``total`` files in the worker behind a cancellable
    progress dialog; ``done(result)`` gets a cancelled result (nothing kept) when the user cancelled."""
    dialog = QProgressDialog(label, "Cancel", 0, total, parent)
    dialog.setWindowTitle("Importing images")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(300)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)

    def finish(result: DecodeResult) -> None:
        if dialog.wasCanceled():  # cancelled at the last moment: keep nothing, as promised
            result = DecodeResult([], result.skipped, cancelled=True)
        dialog.close()
        done(result)

    def progress(done_files: int, total_files: int) -> None:
        if dialog.wasCanceled():
            handle.stop()
        else:
            dialog.setValue(done_files)

    def fail(message: str) -> None:
        dialog.close()
        on_error(message)

    handle = run_in_worker(job, on_result=finish, on_error=fail, on_progress=progress)
    dialog.canceled.connect(handle.stop)
    return dialog, handle
