"""One trial of a sweep: a normal training run, whose validations Optuna hears about as they happen.

The trial's run is an ordinary run folder of the run store (config, checkpoints, metrics; resumable),
trained by :class:`engine.training.trainer.Trainer`. A :class:`PruningReporter` (a training callback)
reports each validation accuracy to the Optuna trial; when Optuna's pruner says so, it stops the run
through the trial's :class:`TrialControl` (the run ends "stopped", its checkpoint saved) and the
objective raises ``optuna.TrialPruned``. The sweep's own control (pause, stop) reaches every trial.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.config import RunConfig
from engine.errors import EngineError
from engine.training import run_store as rs
from engine.training.callbacks import Callback, RunInfo, ValidationResult
from engine.training.control import RunControl

RUN_DIR_ATTR = "run_dir"
HOST_ATTR = "host"
PID_ATTR = "pid"
MESSAGE_ATTR = "message"
INTERRUPTED_ATTR = "interrupted"
RESUME_ATTR = "resume_run_dir"
PRUNED_AT_ATTR = "pruned_at_step"


class TrialInterrupted(Exception):
    """The sweep was stopped (or its process is going away) in the middle of this trial."""


class TrialFailed(Exception):
    """The trial's run failed (bad combination of values, loss became NaN, ...): the trial is FAIL."""


class TrialControl(RunControl):
    """A trial's run control: stopped by the pruner (this trial) or by the sweep's control (all of them);
    paused while the sweep is paused."""

    def __init__(self, sweep: RunControl) -> None:
        super().__init__()
        self.sweep = sweep

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set() or self.sweep.stop_requested

    @property
    def paused(self) -> bool:
        return self.sweep.paused

    def wait_while_paused(self, poll_s: float = 0.1) -> None:
        self.sweep.wait_while_paused(poll_s)


@dataclass
class PruningReporter(Callback):
    """Reports every validation accuracy to ``trial`` and stops the run when the pruner says so."""

    trial: Any
    control: TrialControl
    pruned_at: int | None = None
    report_seconds: list[float] = field(default_factory=list)
    """Seconds each report + pruning question took (Optuna's overhead, measured by bench_sweep_overhead)."""

    def on_run_start(self, info: RunInfo) -> None:
        if info.start_step > 0 and info.run_dir is not None:  # a resumed run: its earlier validations first
            replay_validations(self.trial, info.run_dir, info.start_step)

    def on_validation(self, result: ValidationResult) -> None:
        if self.pruned_at is not None:
            return
        started = time.perf_counter()
        self.trial.report(float(result.accuracy), int(result.step))
        prune = self.trial.should_prune()
        self.report_seconds.append(time.perf_counter() - started)
        if prune:
            self.pruned_at = int(result.step)
            self.control.stop()


@dataclass
class TrialRunner:
    """Trains the run of one trial: ``trial_config`` maps the trial's values to its config."""

    runs_root: Path
    study_name: str
    sweep_control: RunControl
    callbacks: Sequence[Callback] = ()
    data_for: Callable[[RunConfig], Any] = lambda config: None
    last_reporter: PruningReporter | None = None

    def __call__(self, trial: Any, config: RunConfig) -> float:
        import optuna

        control = TrialControl(self.sweep_control)
        reporter = self.last_reporter = PruningReporter(trial, control)
        trainer, run_dir = self._trainer(trial, config, [reporter, *self.callbacks], control)
        trial.set_user_attr(RUN_DIR_ATTR, str(run_dir))
        trial.set_user_attr(HOST_ATTR, socket.gethostname())
        trial.set_user_attr(PID_ATTR, os.getpid())
        summary = trainer.run()
        if reporter.pruned_at is not None:
            trial.set_user_attr(PRUNED_AT_ATTR, reporter.pruned_at)
            raise optuna.TrialPruned(f"pruned at step {reporter.pruned_at}")
        if summary.status == "stopped":
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise TrialInterrupted(f"trial {trial.number} stopped at step {summary.steps_done}")
        if summary.status != "finished" or summary.best_val_accuracy is None:
            message = summary.message or f"the run ended {summary.status} without a validation"
            trial.set_user_attr(MESSAGE_ATTR, message[:500])
            raise TrialFailed(message)
        return float(summary.best_val_accuracy)

    def _trainer(self, trial: Any, config: RunConfig, callbacks: list[Callback],
                 control: TrialControl) -> tuple[Any, Path]:
        from engine.training.trainer import Trainer

        resume = trial.user_attrs.get(RESUME_ATTR)
        if resume and rs.checkpoint_file(resume, "last").is_file():
            run_dir = Path(resume)
            try:
                return Trainer.resume(run_dir, callbacks=callbacks, control=control,
                                      data=self.data_for(config)), run_dir
            except EngineError:
                pass  # the folder no longer reads as a run: train the values afresh
        run_dir = rs.RunStore(self.runs_root).new_run_dir(f"{self.study_name}-trial-{trial.number}")
        config.name = f"{self.study_name} trial {trial.number}"
        return Trainer(config, run_dir=run_dir, callbacks=callbacks, control=control,
                       data=self.data_for(config)), run_dir


def replay_validations(trial: Any, run_dir: Path, step: int) -> None:
    """Report to ``trial`` the validations a resumed run did up to ``step``, the step of the checkpoint it
    resumed from (so the pruner and the curves see the whole run). :class:`PruningReporter` calls it when the
    resumed run starts, with the step the trainer read from that checkpoint: run.json's ``steps_done`` is
    written after the checkpoint, so a kill in between leaves it one checkpoint behind."""
    for row in rs.read_metrics(run_dir / rs.METRICS_FILE):
        if row.get("kind") == "validation" and int(row.get("step", 0)) <= step:
            trial.report(float(row["accuracy"]), int(row["step"]))
