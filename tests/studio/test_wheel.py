"""The mouse wheel never changes a value the user did not click into, in any view of the window.

Real QWheelEvents are sent to the fields (QApplication.sendEvent, so the application's event filter
sees them as it sees the window system's): an unfocused spin box or combo box keeps its value and the
scroll area holding it scrolls; after a click into the field, the wheel changes it.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QScrollArea, QWidget

LEFT = Qt.MouseButton.LeftButton
UP, DOWN = 120, -120


def wheel(widget: QWidget, delta: int) -> None:
    """One notch of the wheel over the middle of ``widget``."""
    local = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(local, QPointF(widget.mapToGlobal(local.toPoint())), QPoint(0, 0), QPoint(0, delta),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def scroll_area_of(widget: QWidget) -> QScrollArea:
    parent = widget.parentWidget()
    while not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    return parent


def click_into(qtbot, widget: QWidget) -> None:
    """Give ``widget`` the focus the way a user does: a click."""
    target = widget.lineEdit() if hasattr(widget, "lineEdit") and widget.lineEdit() is not None else widget
    QTest.mouseClick(target, LEFT)
    popup = QApplication.activePopupWidget()  # a combo box opens its list: Esc closes it, the focus stays
    if popup is not None:
        QTest.keyClick(popup, Qt.Key.Key_Escape)
    qtbot.waitUntil(widget.hasFocus)


def focus_elsewhere(qtbot, window) -> None:
    """The keyboard focus on a widget that is no field (the runs table)."""
    window.activateWindow()
    table = window.runs_panel.table
    table.setFocus()
    qtbot.waitUntil(table.hasFocus)


def test_wheel_scrolls_the_algorithm_form_instead_of_changing_its_fields(window, qtbot):
    panel = window.algorithm_panel
    window.setup_tabs.setCurrentIndex(1)
    QTest.mouseClick(panel.advanced_toggle, LEFT)  # a long form, so that its scroll area can scroll
    window.resize(1200, 700)
    area = scroll_area_of(panel)
    qtbot.waitUntil(lambda: area.verticalScrollBar().maximum() > 0)
    spin = panel.field("task.n_shot").widget
    combo = panel.field("model.backbone").widget
    focus_elsewhere(qtbot, window)
    assert not spin.hasFocus() and not combo.hasFocus()
    bar = area.verticalScrollBar()
    bar.setValue(0)

    wheel(spin, DOWN)
    assert spin.value() == 1  # unchanged (a focused spin box would now read 0, refused, or 2 with UP)
    assert bar.value() > 0     # the form scrolled instead
    wheel(spin, UP)
    assert spin.value() == 1
    wheel(combo, DOWN)
    assert combo.currentText() == "conv4"

    click_into(qtbot, spin)
    wheel(spin, UP)
    assert spin.value() == 2  # clicked into: the wheel changes it
    click_into(qtbot, combo)
    wheel(combo, DOWN)
    assert combo.currentText() == "resnet12"
    assert window.current_config().task.n_shot == 2


def test_wheel_leaves_the_episodes_view_form_alone_until_clicked(window, qtbot):
    view = window.views["Episodes"]
    window.center_tabs.setCurrentWidget(view)
    spin = view.shape_form.spin("n_way")
    before = spin.value()
    focus_elsewhere(qtbot, window)
    assert not spin.hasFocus()
    wheel(spin, UP)
    assert spin.value() == before
    click_into(qtbot, spin)
    wheel(spin, UP)
    assert spin.value() == before + 1


def test_scroll_bars_still_take_the_wheel(window, qtbot):
    window.setup_tabs.setCurrentIndex(1)
    QTest.mouseClick(window.algorithm_panel.advanced_toggle, LEFT)
    window.resize(1200, 700)
    bar = scroll_area_of(window.algorithm_panel).verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(0)
    wheel(bar, DOWN)
    assert bar.value() > 0
