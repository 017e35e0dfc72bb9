"""Log pane: the engine's messages (``Callback.on_log``) and the studio's own log records."""

from __future__ import annotations

import datetime as _dt
import html
import logging

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTextEdit, QVBoxLayout, QWidget

LEVEL_COLOURS = {"debug": "#808080", "info": "#303030", "warning": "#b35c00", "error": "#d62728"}
MAX_LINES = 5000


class _Relay(QObject):
    record = Signal(str, str)


class QtLogHandler(logging.Handler):
    """A logging handler that forwards records to the GUI thread through a queued signal."""

    def __init__(self) -> None:
        super().__init__()
        self.relay = _Relay()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.relay.record.emit(self.format(record), record.levelname.lower())
        except RuntimeError:  # the pane is gone (window closed)
            pass


class LogPanel(QWidget):
    """A read-only, coloured, bounded message list."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = QTextEdit()
        self.view.setObjectName("log_view")
        self.view.setReadOnly(True)
        self.view.document().setMaximumBlockCount(MAX_LINES)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSize(max(font.pointSize() - 1, 8))
        self.view.setFont(font)
        self.view.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.view.clear)
        bar = QHBoxLayout()
        bar.addStretch(1)
        bar.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view)
        layout.addLayout(bar)
        self.lines: list[tuple[str, str]] = []
        self.handler = QtLogHandler()
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.handler.relay.record.connect(self.append, Qt.ConnectionType.QueuedConnection)

    def append(self, message: str, level: str = "info") -> None:
        level = level if level in LEVEL_COLOURS else "info"
        self.lines.append((level, message))
        if len(self.lines) > MAX_LINES:
            del self.lines[: len(self.lines) - MAX_LINES]
        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        text = html.escape(message.rstrip()).replace("\n", "<br>")
        self.view.append(f"<span style='color:#909090'>{stamp}</span> "
                         f"<span style='color:{LEVEL_COLOURS[level]}'>{text}</span>")

    def text(self) -> str:
        return "\n".join(message for _, message in self.lines)

    def attach(self, logger: logging.Logger) -> None:
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def detach(self, logger: logging.Logger) -> None:
        logger.removeHandler(self.handler)
