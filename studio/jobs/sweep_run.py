"""The Sweep view's job: a sweep (:class:`engine.sweep.SweepJob`) in the training child process, with the
pause / stop / force stop of a run (it is a :class:`~studio.jobs.engine_run.TrainingWorker` whose job is a
sweep). Its signals are a run's: the current trial's start, steps, validations and logs; ``failed`` when the
sweep itself fails (a storage that went away); ``done`` last. ``outcome`` is the sweep's
:class:`~engine.sweep.SweepOutcome` once it ended."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject

from engine.api import SweepJob, SweepOutcome, SweepSettings, TrainingProcess
from studio.jobs.engine_run import TrainingWorker


class SweepWorker(TrainingWorker):
    what = "sweep"

    def __init__(self, settings: SweepSettings, *, data: Any = None, in_child_process: bool | None = None,
                 process: TrainingProcess | None = None, parent: QObject | None = None) -> None:
        super().__init__(settings.config, None, data=data, max_rate_hz=2.0, in_child_process=in_child_process,
                         process=process, parent=parent)
        self.settings = settings

    def _make_job(self) -> SweepJob:  # worker thread
        return SweepJob(self.settings, self._shared_data(self.settings.config))

    @property
    def outcome(self) -> SweepOutcome | None:
        return self.value
