"""Text that does not fit: cut it where it hurts least and keep the whole of it in the tooltip.

``elide_middle`` keeps both ends of a text (the start says what it is, the end usually what
distinguishes it: "Prototypical Networks · ... · best.pt", "charac...er07"); ``ElidedLabel`` is a
one-line label that elides its text to its width whenever it is resized and then shows the full
text in its tooltip, so a layout can give it less room than its text needs (down to a few
characters) without the text running off or being cut silently.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

ELLIPSIS = "\u2026"


def elide_middle(text: str, metrics: QFontMetrics, width: int) -> str:
    """``text`` as it fits in ``width`` pixels of ``metrics``' font: whole, or with its middle replaced by an
    ellipsis (both ends kept)."""
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, max(0, int(width)))


class ElidedLabel(QLabel):
    """A one-line plain-text label that elides its text to its width (``mode``: where to cut, the middle by
    default); while the text is cut, the tooltip shows the full text (then the tooltip given with
    ``setToolTip``, if any, on the next line).

    ``full_text()`` is the text as set, ``text()`` what is shown. The label asks its layout for its full
    text's width but can be squeezed to ``min_chars`` characters.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle, min_chars: int = 6) -> None:
        super().__init__(parent)
        self._full_text = ""
        self._extra_tip = ""
        self._mode = mode
        self._min_chars = min_chars
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(False)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setText(text)

    # -- the text ----------------------------------------------------------------------------------------
    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        """Show ``text`` (elided to the current width)."""
        text = " ".join(str(text).split("\n"))
        if text == self._full_text:
            return
        self._full_text = text
        self._elide()
        self.updateGeometry()

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt API
        """A tooltip of its own (shown alone while the text fits, under the full text while it is cut)."""
        self._extra_tip = tip
        self._elide()

    def full_text(self) -> str:
        return self._full_text

    def is_elided(self) -> bool:
        return self.text() != self._full_text

    # -- sizes -------------------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        return QSize(self._text_width(self._full_text) + self._padding(), hint.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().minimumSizeHint()
        shortest = self._full_text[:self._min_chars] + ELLIPSIS if self._full_text else ""
        return QSize(min(self._text_width(shortest), self._text_width(self._full_text)) + self._padding(),
                     hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    # -- helpers -----------------------------------------------------------------------------------------
    def _text_width(self, text: str) -> int:
        return self.fontMetrics().horizontalAdvance(text)

    def _padding(self) -> int:
        margins = self.contentsMargins()
        return margins.left() + margins.right() + 2 * self.margin() + 1

    def _elide(self) -> None:
        width = self.contentsRect().width() - 2 * self.margin()
        shown = self.fontMetrics().elidedText(self._full_text, self._mode, max(0, width))
        if shown != self.text():
            super().setText(shown)
        elided = shown != self._full_text
        tip = "\n".join(part for part in (self._full_text if elided else "", self._extra_tip) if part)
        if tip != super().toolTip():
            super().setToolTip(tip)


class WrappedLabel(QLabel):
    """A word-wrapped label whose height follows its width, without making the layouts around it
    height-for-width. (A height-for-width layout in a resizable scroll area is given its preferred height
    for the width, so one wrapped message would make a whole page scroll.) Plain or rich text."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self._height = super().sizeHint().height()

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return False

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        super().setText(text)
        self._fit_height()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(super().sizeHint().width(), self._height)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(super().minimumSizeHint().width(), self._height)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit_height()

    def _fit_height(self) -> None:
        height = self.heightForWidth(max(1, self.width()))
        if height > 0 and height != self._height:
            self._height = height
            self.updateGeometry()
