"""Redraw something at most a few times a second, always ending on the latest state."""

from __future__ import annotations

import math
import time
from typing import Callable

from PySide6.QtCore import QObject, QTimer


class RateLimited(QObject):
    """Calls ``show()`` at most once per ``interval_s``. A request inside the interval is held back
    and shown when the interval is over (one call, which shows whatever is latest by then), so what
    is on screen ends on the last state even when requests stop. ``clock``: seconds; tests replace it."""

    def __init__(self, show: Callable[[], None], interval_s: float, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_s = interval_s
        self.clock: Callable[[], float] = time.monotonic
        self._show = show
        self._shown_at = -math.inf
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.show_now)

    def request(self, at_once: bool = False) -> None:
        """Show now if the interval is over (or ``at_once``), else once it is."""
        wait_s = self.interval_s - (self.clock() - self._shown_at)
        if at_once or wait_s <= 0:
            self.show_now()
        elif not self._timer.isActive():
            self._timer.start(int(wait_s * 1000) + 1)

    def show_now(self) -> None:
        self._timer.stop()
        self._shown_at = self.clock()
        self._show()

    def cancel(self) -> None:
        """Drop a held-back request."""
        self._timer.stop()
