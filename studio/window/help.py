"""The Help menu's windows: keyboard shortcuts (listed from the window's own actions), the README's tour
(the local file, no network), and About (the algorithms from the registry)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from engine.api import ALGORITHMS, display_title

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_HEADING = "A tour of the window"


def shortcut_rows(window: QWidget) -> list[tuple[str, str]]:
    """(action, its shortcuts) for every action of ``window`` that has a keyboard shortcut, in menu order."""
    rows = []
    for action in window.actions():
        sequences = [s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts() if not s.isEmpty()]
        if sequences:
            rows.append((_plain(action), ", ".join(sequences)))
    return rows


def _plain(action: QAction) -> str:
    return action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…").rstrip(".").strip()


class ShortcutsDialog(QDialog):
    """A table of the window's keyboard shortcuts."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.setObjectName("shortcuts_dialog")
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(window)
        self.table = QTableWidget(len(rows), 2)
        self.table.setObjectName("shortcuts_table")
        self.table.setHorizontalHeaderLabels(["Action", "Shortcut"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        for row, (text, keys) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(text))
            self.table.setItem(row, 1, QTableWidgetItem(keys))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(420, 360)

    def rows(self) -> list[tuple[str, str]]:
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]


def heading_anchor(heading: str) -> str:
    """The anchor GitHub and most Markdown viewers give a heading: 'A tour of the window' -> 'a-tour-of-the-window'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def tour_url(readme: Path = README) -> QUrl:
    """The README's tour section as a local file URL (opened by the desktop's viewer; nothing is downloaded)."""
    url = QUrl.fromLocalFile(str(readme))
    url.setFragment(heading_anchor(TOUR_HEADING))
    return url


def open_tour(readme: Path = README) -> str:
    """Open the README's tour; '' when it opened, else why not (naming the file)."""
    if not readme.is_file():
        return f"{readme}: the README is not there (it comes with the source of Meta Studio)"
    if not QDesktopServices.openUrl(tour_url(readme)):
        return f"{readme}: no application on this computer opens it; open the file and read '{TOUR_HEADING}'"
    return ""


def about_html(runs_root: Any) -> str:
    """The About text: what Meta Studio does, the algorithms it offers (the registry's), where runs go."""
    titles = [display_title(name) for name in ALGORITHMS]
    return ("<b>Meta Studio</b><br>Train, compare and evaluate few-shot learners on your own image folders, "
            f"then adapt them to new classes live.<br><br>Algorithms: {', '.join(titles)}.<br><br>"
            f"Runs are stored in {runs_root}<br>Help &gt; Getting started walks through a first run.")
