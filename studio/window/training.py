"""The main window's training-run lifecycle: start, continue, pause, stop, force stop, and what the
run's worker reports (curves, progress, the end of the run), plus the torchrun hand-off.

:class:`TrainingRuns` is mixed into :class:`studio.main_window.MainWindow`; the run itself is a
:class:`studio.jobs.engine_run.TrainingWorker` (in the training child process).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.api import EngineError, RunInfo, RunRecord, RunSummary, StepMetrics, ValidationResult
from studio.jobs.engine_run import TrainingWorker
from studio.panels.runs_panel import dataset_label

log = logging.getLogger("studio")


class TrainingRuns:
    """Run lifecycle of the main window (a mixin of ``MainWindow``; ``self.worker`` is the run)."""

    worker: TrainingWorker | None
    training_started: Any
    training_ended: Any

    def handoff_dialog(self) -> Any:
        """The torchrun hand-off dialog for the current config (None, with the error shown, if it is invalid)."""
        from studio.panels.torchrun_dialog import TorchrunDialog

        config = self.current_config()
        if config is None:
            self.show_error("Cannot hand off the run", self.config_errors()[0])
            return None
        return TorchrunDialog(config, self.store.root, self)

    def handoff_to_torchrun(self) -> None:
        dialog = self.handoff_dialog()
        if dialog is not None:
            dialog.exec()
            if dialog.saved_path is not None:
                log.info("config for torchrun saved to %s; command: %s", dialog.saved_path, dialog.command_line())

    def is_training(self) -> bool:
        return self.worker is not None

    def is_idle(self) -> bool:
        """No run trains and no view runs a race (which also trains in a child process): a training
        process may be started ahead."""
        return self.worker is None and not self.is_racing()

    def is_racing(self) -> bool:
        """Whether a view runs a race or a sweep (a training job of its own: no run may start beside it)."""
        return self.racing_view() is not None

    def racing_view(self) -> str | None:
        """The title of the view whose training job runs (Race, Sweep), or None."""
        views = getattr(self, "views", {}).items()
        return next((title for title, view in views if getattr(view, "is_racing", lambda: False)()), None)

    def start_training(self) -> TrainingWorker | None:
        """Start a run with the current settings (Ctrl+Enter)."""
        if self.worker is not None or self.is_racing():
            self.revalidate()
            return None
        errors = self.config_errors()
        if errors or self.dataset_panel.is_loading():
            self.revalidate()
            return None
        config = self._assemble_config()
        name = config.name or f"{config.algorithm.name} {config.task.n_way}-way {config.task.n_shot}-shot " \
                              f"{dataset_label(config.data.root)}"
        config.name = name
        try:
            run_dir = self.store.new_run_dir(name)
        except OSError as error:
            self.show_error("Cannot start training", f"{self.store.root}: {error.strerror or error}")
            return None
        worker = TrainingWorker(config, run_dir, data=self.dataset_panel.loaded_data(config.data),
                                process=self.spare_process.take())
        self.plots.clear()
        self.plots.status_label.setText(f"Run: {name}")
        self._begin(worker, run_dir)
        log.info("starting run %s in %s", name, run_dir)
        return worker

    def resume_run(self, record: RunRecord) -> TrainingWorker | None:
        """Continue a stopped or interrupted run from its last checkpoint."""
        if self.worker is not None:
            return None
        if self.is_racing():
            self.show_error("Cannot continue the run", "A race is running (Race tab): one training job at a time, "
                                                       "so stop the race or wait for it to end.")
            return None
        try:
            config = self.store.read_config(record.run_dir)
        except EngineError as error:
            self.show_error("Cannot continue the run", str(error))
            return None
        worker = TrainingWorker(config, None, resume_from=record.run_dir, process=self.spare_process.take())
        self.plots.load_metrics(self.store.read_metrics(record.run_dir))
        self.plots.status_label.setText(f"Run: {record.name} (continued)")
        self._begin(worker, record.run_dir)
        log.info("continuing run %s", record.name)
        return worker

    def _begin(self, worker: TrainingWorker, run_dir: Path) -> None:
        self.worker = worker
        self.current_run_dir = run_dir
        self.steps_received = 0
        self.last_step = 0
        self.plots.set_overlays([])
        worker.run_started.connect(self._on_run_started)
        worker.steps.connect(self._on_steps)
        worker.validation.connect(self._on_validation)
        worker.checkpoint.connect(self._on_checkpoint)
        worker.log.connect(self.log_panel.append)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self.training_panel.set_state("starting")
        self.center_tabs.setCurrentWidget(self.plots)
        self.revalidate()
        worker.start()
        self.training_started.emit(run_dir)
        self.jobs_changed.emit()

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.worker.paused:
            self.worker.resume()
            self.training_panel.set_state("running")
            self._show_live_status(None)
            log.info("resumed")
        elif self.training_panel.state == "running":
            self.worker.pause()
            self.training_panel.set_state("paused")
            self._show_live_status("paused")
            log.info("paused (after the current step)")

    def _show_live_status(self, status: str | None) -> None:
        """What the runs table says of the current run beyond its run.json ("paused"; None: run.json)."""
        if self.current_run_dir is not None:
            self.runs_panel.set_live_status(self.current_run_dir, status)

    def stop_training(self) -> None:
        """Stop after the current step; the checkpoint is kept (Ctrl+., the Run menu's Stop)."""
        if self.worker is None or self.training_panel.state == "stopping":
            return
        self.worker.stop()
        self.training_panel.can_force_stop = self.worker.can_force_stop
        self.training_panel.set_state("stopping")
        log.info("stopping after the current step…")

    def force_stop_training(self) -> None:
        """End a run that does not stop when asked (its training process); its last checkpoint stays."""
        if self.worker is not None and self.worker.force_stop():
            log.warning("ending the training process (force stop)…")

    # -- worker signals (GUI thread) --------------------------------------------
    def _on_run_started(self, info: RunInfo) -> None:
        if self.training_panel.state == "starting":
            self.training_panel.set_state("paused" if self.worker and self.worker.paused else "running")
        if self.worker is not None and self.worker.paused:
            self._show_live_status("paused")
        self.training_panel.show_start(info.start_step, info.total_steps)
        self.plots.set_step_range(info.total_steps)
        self.status_label.setText(f"Training on {info.device}: {info.n_train_classes} training, "
                                  f"{info.n_val_classes} validation, {info.n_test_classes} test classes")
        self.runs_panel.refresh()

    def _on_steps(self, batch: list[StepMetrics]) -> None:
        self.steps_received += len(batch)
        self.last_step = batch[-1].step
        self.plots.add_steps(batch)
        self.training_panel.show_step(batch[-1])
        if self.current_run_dir is not None:
            self.runs_panel.show_progress(self.current_run_dir, metrics=batch[-1])

    def _on_validation(self, result: ValidationResult) -> None:
        self.plots.add_validation(result.step, result.accuracy, result.ci95)
        if result.is_best and self.current_run_dir is not None:
            self.runs_panel.show_progress(self.current_run_dir, best_val_accuracy=result.accuracy)
        best = " (best so far)" if result.is_best else ""
        log.info("validation at step %d: %.2f%% ± %.2f%% over %d episodes%s", result.step, 100 * result.accuracy,
                 100 * result.ci95, result.n_episodes, best)

    def _on_checkpoint(self, info: Any) -> None:
        self.status_label.setText(f"checkpoint saved at step {info.step}: {info.path}")

    def _on_finished(self, summary: RunSummary) -> None:
        best = f"; best validation accuracy {summary.best_val_accuracy:.2%}" \
            if summary.best_val_accuracy is not None else ""
        short_best, full_best = ("", "") if summary.best_val_accuracy is None else (
            f"best val. acc. {summary.best_val_accuracy:.1%}",
            f"The best validation accuracy of this run: {summary.best_val_accuracy:.2%}")
        self.training_panel.show_end(summary.status, summary.steps_done, short_best, full_best)
        log.info("run %s after %d steps%s", summary.status, summary.steps_done, best)
        self.training_ended.emit(summary.status)
        if summary.status == "finished" and self.evaluation_panel.auto_evaluate.isChecked() and not self._closing:
            self._auto_evaluate(summary.run_dir)

    def _on_failed(self, message: str, summary: RunSummary | None) -> None:
        if self.worker is not None and self.worker.force_stopped:
            self._on_force_stopped(message)
            return
        steps = summary.steps_done if summary is not None else None
        self._remove_if_empty(self.current_run_dir)
        self.training_panel.show_end("failed", steps, "")
        log.error("training failed: %s", message)
        self.training_ended.emit("failed")
        if not self._closing:
            self.show_error("Training failed", message)

    def _on_force_stopped(self, message: str) -> None:
        """Asked for, so no error dialog: the run reads as interrupted and can be continued."""
        self._remove_if_empty(self.current_run_dir)
        self.training_panel.show_end("stopped", self.last_step, "force-stopped; see the log")
        log.warning("force stop: %s", message)
        self.training_ended.emit("stopped")

    @staticmethod
    def _remove_if_empty(run_dir: Path | None) -> None:
        """A run that failed before the trainer wrote anything leaves no empty folder behind."""
        if run_dir is None:
            return
        try:
            run_dir.rmdir()  # only succeeds when empty
        except OSError:
            pass

    def _on_done(self) -> None:
        self.worker = None
        self.spare_process.prepare_later()
        self.plots.refresh(everything=True)  # draw the last points now rather than at the next timer tick
        self.training_panel.set_state("idle")
        self._show_live_status(None)
        self.runs_panel.refresh()
        self.revalidate()
        self.jobs_changed.emit()

    def _auto_evaluate(self, run_dir: Path | None) -> None:
        if run_dir is None:
            return
        try:
            record = self.store.record(run_dir)
        except EngineError:
            return
        self.evaluate_run(record, switch_tab=False)

