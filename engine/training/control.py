"""Stop / pause / resume flags shared between a running trainer and its owner thread."""

from __future__ import annotations

import threading
from typing import Any, Callable


class RunControl:
    """Thread-safe flags; the trainer checks them between steps.

    ``stop()`` ends the run after the current step (a checkpoint is saved);
    ``pause()`` blocks the trainer between steps until ``resume()`` or ``stop()``.
    """

    def __init__(self, make_event: Callable[[], Any] = threading.Event) -> None:
        """``make_event``: a ``threading.Event`` by default; a multiprocessing context's ``Event``
        shares the flags with a child process (:mod:`engine.training.process`)."""
        self._stop = make_event()
        self._running = make_event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, poll_s: float = 0.1) -> None:
        """Block while paused; returns at once when running or stopped."""
        while not self._running.wait(poll_s):
            if self._stop.is_set():
                return
