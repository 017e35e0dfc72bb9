"""The window on the screen it opens on (issue 22): its first size, and a size restored from the last
session, never larger than the screen's available area (a 1500x920 window on a 1366x768 screen left the
Runs dock one row high, below the screen's edge)."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

PREFERRED_SIZE = QSize(1500, 920)  # the first launch's size on a screen that has room for it


def fit_rect(rect: QRect, available: QRect) -> QRect:
    """``rect`` shrunk to at most ``available``'s size and moved inside it (the frame's corner stays where
    it was when it fits)."""
    width = min(rect.width(), available.width())
    height = min(rect.height(), available.height())
    left = min(max(rect.left(), available.left()), available.left() + available.width() - width)
    top = min(max(rect.top(), available.top()), available.top() + available.height() - height)
    return QRect(left, top, width, height)


def available_geometry(window: QWidget) -> QRect:
    """The available area (less task bars and panels) of the screen ``window`` is on, or the primary's."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect()


def fit_to_screen(window: QWidget, available: QRect | None = None) -> None:
    """Shrink and move ``window`` (its frame, title bar included) into ``available`` (its screen's available
    area by default); a window that already fits is left as it is."""
    available = available if available is not None else available_geometry(window)
    if available.isEmpty():
        return
    frame = window.frameGeometry()
    extra_width = frame.width() - window.width()  # the title bar and borders around the window
    extra_height = frame.height() - window.height()
    fitted = fit_rect(frame, available)
    if fitted == frame:
        return
    window.resize(max(1, fitted.width() - extra_width), max(1, fitted.height() - extra_height))
    window.move(fitted.topLeft())
