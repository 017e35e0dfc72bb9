"""Text that fits its space: a one-line label elided in the middle, the full text in its tooltip."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


def elide_middle(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters by replacing its middle with "…" (the start and the
    end, which usually tell names apart, are kept)."""
    if len(text) <= max_chars or max_chars < 3:
        return text
    tail = (max_chars - 1) // 2
    head = max_chars - 1 - tail
    return f"{text[:head]}…{text[len(text) - tail:]}"


class ElidedLabel(QLabel):
    """A one-line plain-text label that never asks for more width than it gets: its text is elided in
    the middle to fit, and then shown in full in the tooltip. ``text()`` is the full text,
    ``shown_text()`` what is drawn."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self._tooltip = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._full = text
        self.updateGeometry()
        self._elide()

    def text(self) -> str:
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def is_elided(self) -> bool:
        return self.shown_text() != self._full

    def setToolTip(self, tip: str) -> None:  # noqa: N802 (Qt's name)
        self._tooltip = tip
        self._elide()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(0, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        margins = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance(self._full) + margins.left() + margins.right() + 2
        return QSize(width, super().sizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width()
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, width) if width > 0 \
            else self._full
        super().setText(shown)
        tip = self._full if shown != self._full else ""
        super().setToolTip("\n\n".join(t for t in (tip, self._tooltip) if t))
