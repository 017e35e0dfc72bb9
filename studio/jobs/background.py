"""What every view that runs one :func:`studio.jobs.thread.run_in_worker` job at a time shares."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtWidgets import QProgressBar

from studio.jobs.thread import WorkerHandle, run_in_worker


class BackgroundJobMixin:
    """Launching the job, ``is_running()``, ``cancel()``, ``wait()`` and a progress bar fed as
    "<unit> done / total".

    The view keeps its running job in ``self._handle``, ``self._running`` (False at first) and its
    bar in ``self.progress``, and defines ``_show(result)`` (which calls ``_finished()`` first),
    ``_failed(message)`` and ``_update_buttons()``.
    """

    _handle: WorkerHandle | None
    _running: bool
    progress: QProgressBar
    progress_unit = "episode"
    _show: Callable[[Any], None]
    _failed: Callable[[str], None]
    _update_buttons: Callable[[], None]

    def is_running(self) -> bool:
        """True from the job's start until its result (or error) has been shown."""
        return self._running

    def _launch(self, job: Callable[..., Any]) -> WorkerHandle:
        """Run ``job`` in a worker thread, the bar busy until its first progress report."""
        self._running = True
        self.progress.setRange(0, 0)
        self.progress.setFormat("loading checkpoint and data…")
        self.progress.show()
        self._update_buttons()
        self._handle = run_in_worker(job, on_result=self._show, on_error=self._failed, on_progress=self._progress)
        return self._handle

    def _finished(self) -> None:
        self._running = False
        self.progress.hide()
        self._update_buttons()

    def cancel(self) -> None:
        """Ask the running job to stop (it ends after its current unit; what is done is shown)."""
        if self._handle is not None:
            self._handle.stop()

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until the job's thread ended; True if it did (or none runs)."""
        return self._handle.wait(timeout_ms) if self._handle is not None else True

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(f"{self.progress_unit} %v / %m")
