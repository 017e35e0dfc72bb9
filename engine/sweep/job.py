"""A sweep as a job of the training child process (:class:`engine.training.process.ChildJob`).

The studio runs a sweep the way it runs a run: in a child process, with pause / stop / force stop
through the process's control. The job forwards what the current trial's run reports (its start,
steps, validations, logs) on the trainer's callback protocol; a trial's own end is not the sweep's
end, so ``on_finished`` and ``on_failed`` of trials become log lines, and the job returns the
:class:`~engine.sweep.study.SweepOutcome` when the sweep ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.sweep.study import SweepOutcome, SweepSettings, run_sweep
from engine.training.callbacks import Callback, RunSummary
from engine.training.control import RunControl


class _TrialReports(Callback):
    """The current trial's reports, forwarded to ``target``; its end as a log line."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def on_run_start(self, info: Any) -> None:
        self.target.on_run_start(info)

    def on_step(self, metrics: Any) -> None:
        self.target.on_step(metrics)

    def on_validation(self, result: Any) -> None:
        self.target.on_validation(result)

    def on_log(self, message: str, level: str = "info") -> None:
        self.target.on_log(message, level)

    def on_finished(self, summary: RunSummary) -> None:
        self.target.on_log(f"trial run {summary.status}: {summary.run_dir}", "info")

    def on_failed(self, message: str, summary: RunSummary) -> None:
        self.target.on_log(f"trial run failed: {message}", "warning")


@dataclass
class SweepJob:
    """Run ``settings``' sweep in the child; ``data``: the decoded data set of the base config (or None)."""

    settings: SweepSettings
    data: Any = None

    @property
    def protocol(self) -> type:
        return Callback

    def run(self, callback: Any, control: RunControl) -> SweepOutcome:
        data = self.data
        loader = (lambda _config: data) if data is not None else None
        return run_sweep(self.settings, callbacks=[_TrialReports(callback)], control=control, data_loader=loader)

    def force_stopped_message(self, last_step: int, checkpoint_step: int | None) -> str:
        return (f"the sweep's process was ended on request after step {last_step} of its trial; the next sweep "
                "on this study marks that trial failed and continues its run")
