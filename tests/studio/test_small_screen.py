"""Issue 22, layouts that breathe: the window fits a 1366x768 screen whatever tab is shown. Its minimum
size leaves room for a title bar, and no tab's page asks for more height than it has there, so the views
shrink their plots (or scroll) instead of forcing the window taller than the screen or squeezing the docks;
the Setup dock scrolls its forms instead of cutting their right edge."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QApplication

from tests.studio.conftest import make_window

SCREEN = QSize(1366, 768)
MAX_MINIMUM = QSize(1300, 700)  # the window's minimum: a 1366x768 screen less a title bar and a panel


def _settle() -> None:
    for _ in range(3):  # wrapped labels settle their height after a resize
        QApplication.processEvents()


def test_every_tab_fits_a_1366x768_screen(qtbot):
    window = make_window(qtbot)
    window.resize(SCREEN)
    _settle()
    assert window.size() == SCREEN
    tabs = window.center_tabs
    docks = {dock.objectName(): dock.size() for dock in (window.setup_dock, window.runs_dock, window.log_dock)}
    for index in range(tabs.count()):
        tabs.setCurrentIndex(index)
        _settle()
        title, page = tabs.tabText(index), tabs.widget(index)
        for minimum in (window.minimumSizeHint(), window.minimumSize()):
            assert minimum.width() <= MAX_MINIMUM.width() and minimum.height() <= MAX_MINIMUM.height(), \
                (title, minimum)
        assert window.size() == SCREEN, title  # the window was not made larger than the screen
        hint = page.minimumSizeHint()
        assert hint.height() <= page.height() and hint.width() <= page.width(), (title, hint, page.size())
        # the page did not take its height from the docks: they keep the size they had
        assert {dock.objectName(): dock.size() for dock in (window.setup_dock, window.runs_dock,
                                                             window.log_dock)} == docks, title


def test_the_setup_dock_scrolls_its_forms_without_cutting_them_at_1366x768(qtbot):
    window = make_window(qtbot)  # the data set is loaded: its examples make the Data form wider
    window.resize(SCREEN)
    tabs = window.setup_tabs
    for index in range(tabs.count()):
        tabs.setCurrentIndex(index)
        window.resizeDocks([window.setup_dock], [1], Qt.Orientation.Horizontal)  # the dock at its narrowest
        _settle()
        area = tabs.widget(index)
        assert area.widget().width() <= area.viewport().width(), (tabs.tabText(index), area.widget().width(),
                                                                  area.viewport().width())
    assert window.size() == SCREEN
