"""The mouse wheel never changes a value the user did not click into.

Spin boxes, combo boxes and sliders take wheel events only while they have the keyboard focus;
otherwise the wheel scrolls what holds them (the setup forms' scroll areas, a table), as if the field
were not under the pointer. The guard hands the event to the nearest scroll area itself: Qt passes a
refused wheel event on to the parents only when it came from the window system, not when a program
sent it. One application-wide event filter does it for every view and dialog, present or
later (:func:`install_wheel_guard`, called by the main window). It also keeps such widgets from taking
the focus by the wheel (``Qt.WheelFocus`` becomes ``Qt.StrongFocus`` when they are polished): a click or
Tab gives them the focus, scrolling past them does not.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox,
                               QScrollBar, QWidget)

GUARDED = (QAbstractSpinBox, QComboBox, QAbstractSlider)
"""Widgets whose value the wheel changes (a scroll bar is a slider too, but scrolling is what it is for)."""


def is_guarded(widget: QObject) -> bool:
    """Whether ``widget`` takes the wheel only with the focus."""
    return isinstance(widget, GUARDED) and not isinstance(widget, QScrollBar)


def scroll_instead(widget: QWidget, event: QWheelEvent) -> bool:
    """Give ``event`` to the scroll areas holding ``widget``, nearest first, until one scrolls; whether
    one did."""
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea):
            viewport = parent.viewport()
            forwarded = QWheelEvent(viewport.mapFromGlobal(event.globalPosition()), event.globalPosition(),
                                    event.pixelDelta(), event.angleDelta(), event.buttons(), event.modifiers(),
                                    event.phase(), event.inverted(), event.source())
            QApplication.sendEvent(viewport, forwarded)
            if forwarded.isAccepted():
                return True
        parent = parent.parentWidget()
    return False


class WheelGuard(QObject):
    """The application's event filter: a wheel event for an unfocused guarded widget never reaches it;
    the scroll area that holds the widget gets it instead."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt)
        kind = event.type()
        if kind == QEvent.Type.Wheel:
            if is_guarded(watched) and not watched.hasFocus():
                scroll_instead(watched, event)
                event.accept()  # handled here: Qt offers it to no other widget
                return True
        elif kind == QEvent.Type.Polish:
            _fix_focus_policy(watched)
        return False


_guard: WheelGuard | None = None


def install_wheel_guard(app: QApplication | None = None) -> WheelGuard:
    """Install the guard on the application once (later calls return the same one); widgets polished
    before it was installed get their focus policy fixed now."""
    global _guard
    app = app or QApplication.instance()
    if _guard is None:
        _guard = WheelGuard()
        _guard.moveToThread(app.thread())
        app.installEventFilter(_guard)
        for widget in app.allWidgets():
            _fix_focus_policy(widget)
    return _guard


def _fix_focus_policy(widget: QWidget) -> None:
    if is_guarded(widget) and widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
