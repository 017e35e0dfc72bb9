"""What every view that runs one :func:`studio.worker.run_in_worker` job at a time shares."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

from studio.worker import WorkerHandle


class BackgroundJobMixin:
    """``cancel()``, ``wait()`` and a progress bar fed as "<unit> done / total".

    The view keeps its running job in ``self._handle`` and its bar in ``self.progress``.
    """

    _handle: WorkerHandle | None
    progress: QProgressBar
    progress_unit = "episode"

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
