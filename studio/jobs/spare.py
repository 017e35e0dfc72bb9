"""A training child process started ahead of its run or race (:class:`SpareTrainingProcess`)."""

from __future__ import annotations

import logging
from typing import Callable

from PySide6.QtCore import QObject, QTimer

from engine.api import TrainingProcess
from studio.jobs.engine_run import train_in_child_process

log = logging.getLogger("studio")

SPARE_DELAY_MS = 2000  # after the window opens or a job ends, before a training process is started ahead


class SpareTrainingProcess(QObject):
    """One training child process started ahead of its job: it imports PyTorch (2-3 s on a small
    machine) while the user is busy elsewhere, so Train (or Start race) starts training at once.

    Started ``SPARE_DELAY_MS`` after :meth:`prepare_later`, and only while ``is_idle()`` (a spare
    starting during a run would take CPU from it); handed out by :meth:`take`; ended by :meth:`close`.
    Costs an idle process holding PyTorch (~300 MB) while the window is open."""

    def __init__(self, is_idle: Callable[[], bool], enabled: bool = True, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process: TrainingProcess | None = None
        self._is_idle = is_idle
        self._enabled = enabled
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SPARE_DELAY_MS)
        self._timer.timeout.connect(self._prepare)

    def prepare_later(self) -> None:
        if self._enabled and train_in_child_process():
            self._timer.start()

    def _prepare(self) -> None:
        if not self._enabled or not self._is_idle() or (self.process is not None and self.process.is_alive()):
            return
        try:
            self.process = TrainingProcess().start()
        except OSError as error:  # the job then starts its own process, as without a spare
            log.warning("could not start a training process ahead: %s", error)

    def take(self) -> TrainingProcess | None:
        """The spare for a job now (None if there is none or it died); the owner calls
        :meth:`prepare_later` for the next one when the job has ended."""
        process, self.process = self.process, None
        if process is not None and not process.is_alive():
            process.close()
            return None
        return process

    def close(self) -> None:
        """End the spare and prepare no more (the window closes)."""
        self._enabled = False
        self._timer.stop()
        if self.process is not None:
            self.process.close()
            self.process = None
