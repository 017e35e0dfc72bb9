"""Draw your own examples: a square pad to draw a character with the mouse or a pen tablet.

:class:`DrawPad` records strokes as points ``(x, y, pressure)`` in its own pixels (pressure: the
tablet's 0..1 where Qt reports it, None for a mouse) and paints them with the pen width the
rendered image will have at the drawing's scale (``engine.api.pen_width_for_span``). It does not
render the image the model sees: that rule has one owner, ``engine/data/strokes.py``, which the
adapt session applies to the strokes :attr:`DrawPad.drawing_done` hands over.

Keys on the pad: Enter adds the drawing, Esc clears it, Ctrl+Z takes back the last stroke (on an
empty pad Ctrl+Z goes on to the view's own undo, which takes back the drawing added last).
:class:`DrawBox` is the pad with its "Add" and "Clear" buttons and a hint, as the Adapt view shows it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from engine.api import drawing_span, pen_width_for_span

StrokeList = list[list[tuple[float, float, "float | None"]]]
PAD_SIDE = 132
BUTTONS_WIDTH = 150
MIN_SHOWN_SPAN = 0.4
"""While a drawing is smaller than this fraction of the pad, its pen is painted as for this size
(the first dab of a stroke is not a hairline); the image is rendered from the strokes alone."""


class DrawPad(QWidget):
    """The canvas (see the module docstring). ``drawing_done`` carries the strokes when the drawing is
    added (Enter or :meth:`submit`); the pad is empty again afterwards."""

    drawing_done = Signal(list)     # StrokeList
    strokes_changed = Signal(int)   # how many strokes the pad now holds

    def __init__(self, side: int = PAD_SIDE, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("draw_pad")
        self.setFixedSize(side, side)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setToolTip("Draw a character with the mouse or a pen: Enter adds it, Esc clears, "
                        "Ctrl+Z takes back the last stroke")
        self.strokes: StrokeList = []
        self._drawing = False

    # -- the strokes ---------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self.strokes

    def submit(self) -> bool:
        """Hand the drawing over (``drawing_done``) and clear the pad; False when there is nothing drawn."""
        if not self.strokes:
            return False
        strokes = [list(stroke) for stroke in self.strokes]
        self.clear()
        self.drawing_done.emit(strokes)
        return True

    def clear(self) -> None:
        self._drawing = False
        if self.strokes:
            self.strokes = []
            self._changed()

    def undo_stroke(self) -> bool:
        """Take back the last stroke; False when the pad is empty."""
        if not self.strokes:
            return False
        self._drawing = False
        self.strokes.pop()
        self._changed()
        return True

    def _begin(self, position: QPointF, pressure: float | None) -> None:
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        self._drawing = True
        self.strokes.append([(position.x(), position.y(), pressure)])
        self._changed()

    def _extend(self, position: QPointF, pressure: float | None) -> None:
        if not self._drawing or not self.strokes:
            return
        stroke = self.strokes[-1]
        if stroke[-1][:2] != (position.x(), position.y()):
            stroke.append((position.x(), position.y(), pressure))
            self.update()

    def _end(self, position: QPointF, pressure: float | None) -> None:
        if self._drawing:
            self._extend(position, pressure)
            self._drawing = False

    def _changed(self) -> None:
        self.update()
        self.strokes_changed.emit(len(self.strokes))

    # -- input ---------------------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self._begin(event.position(), None)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._extend(event.position(), None)
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self._end(event.position(), None)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def tabletEvent(self, event) -> None:  # noqa: N802 - Qt API
        """A pen tablet: the same strokes with the pen's pressure (accepted, so no mouse event follows)."""
        kind, position, pressure = event.type(), event.position(), float(event.pressure())
        if kind == QEvent.Type.TabletPress:
            self._begin(position, pressure)
        elif kind == QEvent.Type.TabletMove:
            self._extend(position, pressure)
        elif kind == QEvent.Type.TabletRelease:
            self._end(position, pressure)
        event.accept()

    def event(self, event: QEvent) -> bool:
        """Enter, Esc and (while there are strokes) Ctrl+Z belong to the pad, before any shortcut."""
        if event.type() == QEvent.Type.ShortcutOverride and self._owns_key(event):
            event.accept()
            return True
        return super().event(event)

    def _owns_key(self, event) -> bool:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape):
            return True
        return event.matches(QKeySequence.StandardKey.Undo) and bool(self.strokes)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit()
        elif event.key() == Qt.Key.Key_Escape:
            self.clear()
        elif event.matches(QKeySequence.StandardKey.Undo) and self.strokes:
            self.undo_stroke()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # -- painting ------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("white"))
        painter.setPen(QPen(QColor("#3d7bd9" if self.hasFocus() else "#c8ccd2"), 1))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        if not self.strokes:
            painter.setPen(QColor("#aaa"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "draw here")
            return
        span = max(drawing_span(self.strokes), MIN_SHOWN_SPAN * self.width())
        for stroke in self.strokes:
            self._paint_stroke(painter, stroke, span)

    @staticmethod
    def _paint_stroke(painter: QPainter, stroke: list, span: float) -> None:
        pen = QPen(QColor("black"))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        if len(stroke) == 1:
            x, y, pressure = stroke[0]
            pen.setWidthF(pen_width_for_span(span, pressure))
            painter.setPen(pen)
            painter.drawPoint(QPointF(x, y))
            return
        for (x0, y0, p0), (x1, y1, p1) in zip(stroke, stroke[1:]):
            pressures = [p for p in (p0, p1) if p is not None]
            pen.setWidthF(pen_width_for_span(span, sum(pressures) / len(pressures) if pressures else None))
            painter.setPen(pen)
            painter.drawLine(QPointF(x0, y0), QPointF(x1, y1))

    def focusInEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().focusOutEvent(event)
        self.update()


class DrawBox(QWidget):
    """A :class:`DrawPad` with "Add" (Enter) and "Clear" (Esc) buttons and a one-line hint;
    ``drawing_done`` is the pad's."""

    drawing_done = Signal(list)     # StrokeList

    def __init__(self, purpose: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("draw_box")
        self.pad = DrawPad()
        self.pad.drawing_done.connect(self.drawing_done)
        self.add_button = QPushButton("Add")
        self.add_button.setObjectName("draw_add")
        self.add_button.setToolTip(f"Add the drawing {purpose} (Enter)")
        self.add_button.clicked.connect(lambda _checked=False: self.pad.submit())
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("draw_clear")
        self.clear_button.setToolTip("Clear the pad (Esc)")
        self.clear_button.clicked.connect(lambda _checked=False: self.pad.clear())
        hint = QLabel("Enter adds \u00b7 Esc clears \u00b7 Ctrl+Z takes back a stroke")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #888; font-size: 8pt;")
        hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        buttons = QWidget()
        buttons.setFixedWidth(BUTTONS_WIDTH)
        column = QVBoxLayout(buttons)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addWidget(self.add_button)
        column.addWidget(self.clear_button)
        column.addWidget(hint)
        column.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.addWidget(self.pad)
        layout.addWidget(buttons)
        layout.addStretch(1)
        self.pad.strokes_changed.connect(self._update_buttons)
        self._update_buttons(0)

    def _update_buttons(self, n_strokes: int) -> None:
        self.add_button.setEnabled(n_strokes > 0)
        self.clear_button.setEnabled(n_strokes > 0)

    def start(self) -> None:
        """Show the box with the pad focused, ready for a drawing and its keys."""
        self.show()
        self.pad.setFocus(Qt.FocusReason.OtherFocusReason)

    def toggle_button(self, text: str, tooltip: str) -> QToolButton:
        """A checkable button that shows this box (pad focused) or hides it; the box starts hidden."""
        toggle = QToolButton()
        toggle.setObjectName("draw_toggle")
        toggle.setText(text)
        toggle.setToolTip(tooltip)
        toggle.setCheckable(True)
        toggle.setAutoRaise(True)
        toggle.toggled.connect(lambda shown: self.start() if shown else self.hide())
        self.hide()
        return toggle
