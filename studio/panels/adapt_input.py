"""Input of the Adapt panel without drag and drop: "Add images..." buttons, clickable empty drop zones,
class-name fields that paste text, and a card column that keeps the mouse wheel.

What a file dialog returns ends where a drop ends: the card's or the test zone's ``files_dropped``
signal, which the panel handles with one call per target (``AdaptPanel.add_files`` /
``add_test_files``), so a dialog and a drop of the same paths do the same thing.

The dialogs are the module functions :func:`ask_image_files`, :func:`ask_image_folder` and
:func:`ask_model_file` (looked up at call time, so a test replaces them with ``monkeypatch.setattr``).
A native file dialog cannot select files and folders at once, so "Add images..." opens a
multiple-selection file dialog and its menu (the arrow) offers "Add a folder...".
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QSize, QUrl, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QLineEdit, QMenu, QScrollArea, QToolButton, QWidget

from engine.api import IMAGE_EXTENSIONS
from studio.settings import settings

KEY_IMAGE_FOLDER = "adapt/last_image_folder"
IMAGE_FILTER = (f"Images ({' '.join('*' + suffix for suffix in sorted(IMAGE_EXTENSIONS))});;All files (*)")
MODEL_DIALOGS = {  # kind -> (open?, title, default name, filter)
    "open": (True, "Open a model", "", "Models (*.pt *.pth);;All files (*)"),
    "save": (False, "Save the adapted classifier", "classifier.pt", "Adapted classifier (*.pt)"),
}


# -- the dialogs ----------------------------------------------------------------------------------------
def ask_image_files(parent: QWidget, title: str) -> list[Path]:
    """Image files chosen in a file dialog (several at once); [] when cancelled."""
    chosen, _ = QFileDialog.getOpenFileNames(parent, title, _start_folder(), IMAGE_FILTER)
    paths = [Path(p) for p in chosen]
    if paths:
        _remember_folder(paths[0].parent)
    return paths


def ask_image_folder(parent: QWidget, title: str) -> list[Path]:
    """A folder chosen in a folder dialog (all its images, sub-folders included); [] when cancelled."""
    chosen = QFileDialog.getExistingDirectory(parent, title, _start_folder())
    if not chosen:
        return []
    _remember_folder(Path(chosen).parent)
    return [Path(chosen)]


def ask_model_file(parent: QWidget, kind: str) -> Path | None:
    """A model file to open, or where to save the classifier (``kind``: a key of MODEL_DIALOGS; the Export
    dialog has its own, studio.panels.export_dialog);
    None when cancelled."""
    to_open, title, default, filters = MODEL_DIALOGS[kind]
    ask = QFileDialog.getOpenFileName if to_open else QFileDialog.getSaveFileName
    path, _ = ask(parent, title, default, filters)
    return Path(path) if path else None


def _start_folder() -> str:
    folder = str(settings().value(KEY_IMAGE_FOLDER, "") or "")
    return folder if folder and Path(folder).is_dir() else str(Path.home())


def _remember_folder(folder: Path) -> None:
    settings().setValue(KEY_IMAGE_FOLDER, str(folder))


# -- the button and the empty zones ---------------------------------------------------------------------
class AddImagesButton(QToolButton):
    """"Add images...": a click opens the file dialog; the arrow's menu also offers a folder.
    ``paths_chosen`` carries what was chosen (nothing is emitted when the dialog is cancelled)."""

    paths_chosen = Signal(list)   # [Path]

    def __init__(self, text: str, purpose: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.purpose = purpose    # "for <target>", in the dialogs' titles
        self.setText(text)
        self.setToolTip(f"Choose image files {purpose} (several at once); the arrow also offers a whole folder")
        self.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        menu = QMenu(self)
        self.files_action = menu.addAction("Add image files...", self.choose_files)
        self.folder_action = menu.addAction("Add a folder...", self.choose_folder)
        self.setMenu(menu)
        self.clicked.connect(lambda _checked=False: self.choose_files())

    def choose_files(self) -> None:
        self._emit(ask_image_files(self, f"Add images {self.purpose}"))

    def choose_folder(self) -> None:
        self._emit(ask_image_folder(self, f"Add a folder of images {self.purpose}"))

    def _emit(self, paths: list[Path]) -> None:
        if paths:
            self.paths_chosen.emit(paths)


class DropHint(QLabel):
    """The empty drop zone: a dashed box that says what to drop; a click on it emits ``clicked``."""

    clicked = Signal()

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click to choose image files, or drop images or a folder here")

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            event.accept()
            self.clicked.emit()
            return
        super().mouseReleaseEvent(event)


# -- the class name -------------------------------------------------------------------------------------
def name_from_clipboard(mime: QMimeData | None) -> str:
    """What pasting into a class name inserts: the clipboard's text on one line; for files (URLs, or
    text that is a file URL) the first file's name without its extension; never a "file://" URL."""
    if mime is None:
        return ""
    if mime.hasUrls() and mime.urls():
        return _url_stem(mime.urls()[0])
    text = mime.text().strip() if mime.hasText() else ""
    first_line = text.splitlines()[0].strip() if text else ""
    if first_line.startswith("file:"):
        return _url_stem(QUrl(first_line))
    return " ".join(first_line.split())


def _url_stem(url: QUrl) -> str:
    name = Path(url.toLocalFile()).name if url.isLocalFile() else url.fileName()
    return Path(name).stem if name else ""


class ClassNameEdit(QLineEdit):
    """The class name field: Ctrl+V (and the context menu's Paste) insert text (:func:`name_from_clipboard`),
    so copied files never paste their URLs here; pasting images is the card's job when the field has no
    focus."""

    MAX_ROOM = 160  # px a long name may ask for; past it the field scrolls (its start shows)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.textChanged.connect(lambda _text: self.updateGeometry())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        """Room for the whole name (up to :attr:`MAX_ROOM`), so that a narrow card cuts its other texts
        first: "Chiic 01" and "Chiic 02" must not both read "Chiic 0"."""
        self.ensurePolished()  # the style sheet's bold 11 pt font, measured
        hint = super().minimumSizeHint()
        text = self.text() or self.placeholderText()
        wanted = min(self.fontMetrics().horizontalAdvance(text) + 2 * self.textMargins().left() + 10, self.MAX_ROOM)
        return QSize(max(hint.width(), wanted), hint.height())

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.matches(QKeySequence.StandardKey.Paste):
            self.paste_text()
            event.accept()
            return
        super().keyPressEvent(event)

    def paste_text(self) -> None:
        text = name_from_clipboard(QGuiApplication.clipboard().mimeData())
        if text and not self.isReadOnly():
            self.insert(text)

    def contextMenuEvent(self, event) -> None:  # noqa: N802 - Qt API
        menu = self.createStandardContextMenu()
        for action in menu.actions():
            if action.objectName() == "edit-paste":
                action.triggered.disconnect()
                action.triggered.connect(lambda _checked=False: self.paste_text())
        menu.exec(event.globalPos())
        menu.deleteLater()


# -- the card column ------------------------------------------------------------------------------------
class CardScroll(QScrollArea):
    """The scrolling column of class cards: the mouse wheel over it scrolls the cards and stops here, also
    at either end of the column, so it never scrolls the page the panel sits in."""

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().wheelEvent(event)
        event.accept()

    def scroll_to(self, card: QWidget) -> None:
        """Scroll so that ``card`` is in view, also right after it was added (the column is laid out now,
        not in the next turn of the event loop)."""
        column = self.widget()
        if column is not None and column.layout() is not None:
            column.layout().activate()
        QApplication.sendEvent(self, QEvent(QEvent.Type.LayoutRequest))   # resize the column to its cards
        self.ensureWidgetVisible(card, 0, 8)
