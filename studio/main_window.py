"""The Meta Studio main window: set up a run, train it, watch it, evaluate it, compare runs.

Layout: a "Setup" dock (Data and Algorithm tabs) on the left; the run controls
on top; the live curves, the evaluation and adapt views and the teaching views (race,
episodes, inner loop, regression) in the centre; the run history and the log in a
bottom dock. Everything slow runs in worker threads (:mod:`studio.worker`); the
window only calls engine APIs and shows what they report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QScrollArea,
                               QTabWidget, QVBoxLayout, QWidget)

from engine.config import BUILTIN_GLYPHS, RunConfig, validate
from engine.errors import ConfigError, EngineError
from engine.training.callbacks import RunInfo, RunSummary, StepMetrics, ValidationResult
from engine.training.run_store import RunRecord, RunStore, default_runs_root
from studio import settings as st
from studio.panels.adapt_panel import AdaptPanel
from studio.panels.algorithm_panel import AlgorithmPanel, read_preset, write_preset
from studio.panels.dataset_panel import DatasetPanel
from studio.panels.device_panel import DevicePanel
from studio.panels.evaluation_panel import EvaluationPanel
from studio.panels.inspector_panel import InspectorPanel
from studio.panels.log_panel import LogPanel
from studio.panels.race_panel import RacePanel
from studio.panels.regression_panel import RegressionPanel
from studio.panels.runs_panel import RunsPanel, dataset_label
from studio.panels.scrubber_panel import ScrubberPanel
from studio.panels.training_panel import TrainingPanel
from studio.plots import TrainingPlots
from studio.worker import (SpareTrainingProcess, TrainingWorker, install_main_thread_gc,
                           keep_gui_thread_single_threaded, run_in_worker, stop_all_jobs)

log = logging.getLogger("studio")

CLOSE_STOP_WAIT_MS = 20_000  # closing mid-run: how long a run may take to stop before its process is ended

# The teaching views next to the curves; each is built as ``View(window)``.
VIEW_TABS: tuple[tuple[str, type], ...] = (
    ("Race", RacePanel),
    ("Episodes", InspectorPanel),
    ("Inner loop", ScrubberPanel),
    ("Regression", RegressionPanel),
)


def _scrolled(widget: QWidget, horizontal: bool = False) -> QScrollArea:
    """``widget`` in a frameless scroll area (vertical only unless ``horizontal``)."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    if not horizontal:
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


_warmed_up = False


def _warm_up_torch() -> None:
    """Pay torch's one-off lazy imports (the first optimiser imports torch._dynamo: seconds) in the
    background at start-up instead of after the first press of Train."""
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True

    def job(progress: Any, should_stop: Any) -> None:
        import torch

        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])

    run_in_worker(job, on_result=lambda _: None, on_error=lambda m: log.warning("warm-up failed: %s", m))


class MainWindow(QMainWindow):
    """The studio window. ``store`` defaults to ``RunStore(default_runs_root())``."""

    training_started = Signal(object)    # Path of the run folder
    training_ended = Signal(str)         # final status: finished / stopped / failed

    def __init__(self, store: RunStore | None = None, *, restore_settings: bool = True,
                 load_data: bool = True, warm_training_process: bool = False) -> None:
        """``warm_training_process``: keep a training process started ahead (what the app does; see
        :class:`studio.worker.SpareTrainingProcess`)."""
        super().__init__()
        install_main_thread_gc()  # Qt objects must never be garbage-collected in a worker thread
        keep_gui_thread_single_threaded()  # heavy tensor work runs in workers, at full speed
        self.setWindowTitle("Meta Studio")
        self.setObjectName("MetaStudioMainWindow")
        self.store = store or RunStore(default_runs_root())
        self.worker: TrainingWorker | None = None
        self.spare_process = SpareTrainingProcess(lambda: self.worker is None, warm_training_process, parent=self)
        self.spare_process.prepare_later()
        self.current_run_dir: Path | None = None
        self.steps_received = 0
        self.last_step = 0
        self.errors_shown: list[tuple[str, str]] = []
        self._closing = False

        self._build_widgets()
        self._build_docks()
        self._build_actions()
        self._connect()
        if restore_settings:
            self._restore_settings()
        else:
            self.resize(1500, 920)
        self.revalidate()
        if load_data:
            self.dataset_panel.load()
        _warm_up_torch()
        log.info("Meta Studio ready. Runs are kept in %s", self.store.root)

    # ------------------------------------------------------------------ layout
    def _build_widgets(self) -> None:
        self.log_panel = LogPanel()
        self.log_panel.attach(log)
        self.device_panel = DevicePanel()
        self.training_panel = TrainingPanel(self.device_panel)
        self.dataset_panel = DatasetPanel()
        self.algorithm_panel = AlgorithmPanel()
        self.plots = TrainingPlots()
        self.evaluation_panel = EvaluationPanel(device_getter=self.device_panel.device)
        self.runs_panel = RunsPanel(self.store)

        self.center_tabs = QTabWidget()
        self.center_tabs.setDocumentMode(True)
        self.center_tabs.addTab(self.plots, "Training curves")
        self.center_tabs.addTab(self.evaluation_panel, "Evaluation")
        self.adapt_panel = AdaptPanel(self)
        # scrolled, so that its width never sets the window's minimum width
        self.center_tabs.addTab(_scrolled(self.adapt_panel, horizontal=True), "Adapt")
        self.views: dict[str, QWidget] = {}
        for title, view_class in VIEW_TABS:
            self.views[title] = view_class(self)
            self.center_tabs.addTab(self.views[title], title)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.training_panel)
        layout.addWidget(self.center_tabs, 1)
        self.setCentralWidget(central)
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)

    def _build_docks(self) -> None:
        self.setup_tabs = QTabWidget()
        self.setup_tabs.addTab(_scrolled(self.dataset_panel), "Data")
        self.setup_tabs.addTab(_scrolled(self.algorithm_panel), "Algorithm")
        self.setup_dock = QDockWidget("Setup", self)
        self.setup_dock.setObjectName("setup_dock")
        self.setup_dock.setWidget(self.setup_tabs)
        self.setup_dock.setMinimumWidth(360)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.setup_dock)

        self.runs_dock = QDockWidget("Runs", self)
        self.runs_dock.setObjectName("runs_dock")
        self.runs_dock.setWidget(self.runs_panel)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("log_dock")
        self.log_dock.setWidget(self.log_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.runs_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.splitDockWidget(self.runs_dock, self.log_dock, Qt.Orientation.Horizontal)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.resizeDocks([self.setup_dock], [430], Qt.Orientation.Horizontal)
        self.resizeDocks([self.runs_dock], [230], Qt.Orientation.Vertical)
        self.resizeDocks([self.runs_dock, self.log_dock], [820, 300], Qt.Orientation.Horizontal)

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_action = self._action("Open data set folder…", self.dataset_panel.choose_folder,
                                        [QKeySequence.StandardKey.Open])
        self.builtin_action = self._action("Use the built-in glyphs",
                                           lambda: self.dataset_panel.set_root(BUILTIN_GLYPHS))
        self.load_preset_action = self._action("Load preset…", self.load_preset_dialog)
        self.save_preset_action = self._action("Save preset…", self.save_preset_dialog)
        self.quit_action = self._action("Quit", self.close, [QKeySequence.StandardKey.Quit])
        for action in (self.open_action, self.builtin_action, None, self.load_preset_action,
                       self.save_preset_action, None, self.quit_action):
            file_menu.addSeparator() if action is None else file_menu.addAction(action)

        run_menu = menu.addMenu("&Run")
        self.train_action = self._action("Train", self.start_training,
                                         [QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.pause_action = self._action("Pause / Resume", self.toggle_pause, [QKeySequence("Ctrl+P")])
        self.stop_action = self._action("Stop", self.stop_training, [QKeySequence(Qt.Key.Key_Escape)])
        self.evaluate_action = self._action("Evaluate selected run", self._evaluate_selected, [QKeySequence("Ctrl+E")])
        self.handoff_action = self._action("Hand off as torchrun command…", self.handoff_to_torchrun)
        for action in (self.train_action, self.pause_action, self.stop_action, None, self.evaluate_action, None,
                       self.handoff_action):
            run_menu.addSeparator() if action is None else run_menu.addAction(action)

        view_menu = menu.addMenu("&View")
        for dock in (self.setup_dock, self.runs_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("About Meta Studio", self._about))

    def _action(self, text: str, slot: Any, shortcuts: list[Any] | None = None) -> QAction:
        action = QAction(text, self)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) if not isinstance(s, QKeySequence) else s for s in shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda *_: slot())
        self.addAction(action)
        return action

    def _connect(self) -> None:
        self.dataset_panel.config_changed.connect(self.revalidate)
        self.dataset_panel.loading_changed.connect(lambda _: self.revalidate())
        self.dataset_panel.loaded.connect(self._data_loaded)
        self.algorithm_panel.config_changed.connect(self.revalidate)
        self.algorithm_panel.save_button.clicked.connect(self.save_preset_dialog)
        self.algorithm_panel.load_button.clicked.connect(self.load_preset_dialog)
        self.training_panel.train_clicked.connect(self.start_training)
        self.training_panel.pause_clicked.connect(self.toggle_pause)
        self.training_panel.stop_clicked.connect(self.stop_training)
        self.training_panel.force_stop_clicked.connect(self.force_stop_training)
        self.runs_panel.selection_changed.connect(self._runs_selected)
        self.runs_panel.open_requested.connect(self.open_run)
        self.runs_panel.evaluate_requested.connect(self.evaluate_run)
        self.runs_panel.resume_requested.connect(self.resume_run)
        self.runs_panel.error.connect(lambda m: self.show_error("Run history", m))
        self.evaluation_panel.error.connect(lambda m: self.show_error("Evaluation failed", m))
        self.evaluation_panel.evaluated.connect(self._evaluated)
        self.plots.smoothing_changed.connect(lambda a: st.settings().setValue(st.KEY_SMOOTHING, a))

    # ------------------------------------------------------------------ config
    def config_errors(self) -> list[str]:
        """What must be fixed before Train works (each message names the field or folder)."""
        errors = self.algorithm_panel.errors() + self.dataset_panel.errors()
        if errors:
            return errors
        config = self._assemble_config()
        if config is None:
            return ["the data settings are incomplete"]
        try:
            validate(config)
        except ConfigError as error:
            return [str(error)]
        return []

    def _assemble_config(self) -> RunConfig | None:
        data = self.dataset_panel.data_config(strict=False)
        if data is None:
            return None
        config = RunConfig(data=data)
        config.train.device = self.device_panel.device()
        return self.algorithm_panel.apply_to(config)

    def current_config(self) -> RunConfig | None:
        """The run config from the forms, or None while a field is invalid."""
        return None if self.config_errors() else self._assemble_config()

    def revalidate(self) -> None:
        errors = self.config_errors()
        if not errors and self.dataset_panel.is_loading():
            message = "the data set is still loading…"
        else:
            message = errors[0] if errors else ""
        self.training_panel.set_blocked(message)
        self.train_action.setEnabled(not message and self.worker is None)

    def load_config(self, config: RunConfig) -> None:
        """Show a config in the forms (from a preset or a past run)."""
        self.algorithm_panel.load_config(config)
        self.dataset_panel.load_config(config.data)
        self.device_panel.set_device(config.train.device)
        self.revalidate()

    # ------------------------------------------------------------------ presets
    def save_preset_dialog(self) -> None:
        config = self.current_config()
        if config is None:
            self.show_error("Cannot save the preset", self.config_errors()[0])
            return
        path = self.algorithm_panel.ask_save_path()
        if path:
            self.save_preset(path)

    def save_preset(self, path: str | Path) -> Path | None:
        config = self.current_config()
        if config is None:
            self.show_error("Cannot save the preset", self.config_errors()[0])
            return None
        try:
            written = write_preset(path, config)
        except OSError as error:
            self.show_error("Cannot save the preset", f"{path}: {error.strerror or error}")
            return None
        self.algorithm_panel.remember_folder(path)
        log.info("preset saved to %s", written)
        return written

    def load_preset_dialog(self) -> None:
        path = self.algorithm_panel.ask_load_path()
        if path:
            self.load_preset(path)

    def load_preset(self, path: str | Path) -> bool:
        try:
            config = read_preset(path)
        except EngineError as error:
            self.show_error("Cannot load the preset", str(error))
            return False
        self.algorithm_panel.remember_folder(path)
        self.load_config(config)
        log.info("preset loaded from %s", path)
        return True

    # ------------------------------------------------------------------ training
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

    def start_training(self) -> TrainingWorker | None:
        """Start a run with the current settings (Ctrl+Enter)."""
        if self.worker is not None:
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

    def toggle_pause(self) -> None:
        if self.worker is None:
            return
        if self.worker.paused:
            self.worker.resume()
            self.training_panel.set_state("running")
            log.info("resumed")
        elif self.training_panel.state == "running":
            self.worker.pause()
            self.training_panel.set_state("paused")
            log.info("paused (after the current step)")

    def stop_training(self) -> None:
        """Stop after the current step; the checkpoint is kept (Esc)."""
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
        short_best = f"best validation accuracy {summary.best_val_accuracy:.1%}" \
            if summary.best_val_accuracy is not None else ""
        self.training_panel.show_end(summary.status, summary.steps_done, short_best)
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
        self.runs_panel.refresh()
        self.revalidate()

    def _auto_evaluate(self, run_dir: Path | None) -> None:
        if run_dir is None:
            return
        try:
            record = self.store.record(run_dir)
        except EngineError:
            return
        self.evaluate_run(record, switch_tab=False)

    # ------------------------------------------------------------------ runs
    def _runs_selected(self, records: list[RunRecord]) -> None:
        overlays = []
        for record in records:
            if self.worker is not None and record.run_dir == self.current_run_dir:
                continue
            overlays.append((record.name, self.store.read_metrics(record.run_dir)))
        self.plots.set_overlays(overlays)
        if len(records) == 1:
            self._set_evaluation_run(records[0])

    def open_run(self, record: RunRecord) -> None:
        """Show a past run's curves and load its settings into the forms."""
        try:
            config = self.store.read_config(record.run_dir)
        except EngineError as error:
            self.show_error("Cannot open the run", str(error))
            return
        if self.worker is None:
            self.plots.set_overlays([])
            self.plots.load_metrics(self.store.read_metrics(record.run_dir))
            self.plots.status_label.setText(f"Run: {record.name} ({record.status})")
            self.current_run_dir = record.run_dir
        self.load_config(config)
        self._set_evaluation_run(record)
        self.center_tabs.setCurrentWidget(self.plots)
        self.adapt_panel.set_run(record)

    def _set_evaluation_run(self, record: RunRecord) -> None:
        task = None
        try:
            task = self.store.read_config(record.run_dir).task
        except EngineError:
            pass
        if not self.evaluation_panel.is_running():
            self.evaluation_panel.set_run(record, task)

    def evaluate_run(self, record: RunRecord, switch_tab: bool = True) -> Any:
        """Evaluate a run's checkpoint in the evaluation view (in the background)."""
        if self.evaluation_panel.is_running():
            return None
        self._set_evaluation_run(record)
        if switch_tab:
            self.center_tabs.setCurrentWidget(self.evaluation_panel)
        return self.evaluation_panel.start()

    def _evaluate_selected(self) -> None:
        records = self.runs_panel.selected_records()
        if len(records) == 1:
            self.evaluate_run(records[0])

    def _evaluated(self, output: Any) -> None:
        result = output.result
        log.info("test accuracy %.2f%% ± %.2f%% (%d episodes)", 100 * result.accuracy, 100 * result.ci95,
                 result.n_episodes)

    def _data_loaded(self, result: Any) -> None:
        index = result.index
        log.info("data set %s: %d classes, %d images", index.root, len(index.classes), index.n_images)
        for item in result.skipped[:20]:
            log.warning("skipped %s: %s", item.path, item.reason)
        if result.data_error:
            log.error("%s", result.data_error)

    # ------------------------------------------------------------------ errors & misc
    def show_error(self, title: str, message: str) -> None:
        """Show an error dialog (the window stays usable); tests replace this method."""
        self.errors_shown.append((title, message))
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.exec()

    def _about(self) -> None:
        QMessageBox.about(self, "About Meta Studio",
                          "<b>Meta Studio</b><br>Train, compare and evaluate few-shot learners "
                          "(ProtoNet, MAML, Reptile, Matching Networks, Baseline, SimpleShot) on your own "
                          f"image folders.<br><br>Runs are stored in {self.store.root}")

    # ------------------------------------------------------------------ settings & closing
    def _restore_settings(self) -> None:
        settings = st.settings()
        geometry = settings.value(st.KEY_GEOMETRY)
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 920)
        state = settings.value(st.KEY_STATE)
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        self.plots.set_smoothing(st.read_float(st.KEY_SMOOTHING, 0.85))
        raw = st.read_json(st.KEY_LAST_CONFIG)
        if raw:
            try:
                config = RunConfig.from_dict(raw)
            except EngineError:
                return
            self.algorithm_panel.load_config(config)
            self.dataset_panel.load_config(config.data, load=False)
            self.device_panel.set_device(config.train.device)

    def save_settings(self) -> None:
        settings = st.settings()
        settings.setValue(st.KEY_GEOMETRY, self.saveGeometry())
        settings.setValue(st.KEY_STATE, self.saveState())
        config = self.current_config()
        if config is not None:
            st.write_json(st.KEY_LAST_CONFIG, config.to_dict())
        settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt)
        """Stop a running training cleanly (its checkpoint is kept), then close."""
        self._closing = True
        self.save_settings()
        worker = self.worker
        if worker is not None:
            worker.stop()
            self.status_label.setText("stopping the run and saving its checkpoint…")
            if not worker.wait(CLOSE_STOP_WAIT_MS) and worker.force_stop():
                log.warning("the run did not stop within %d s of closing: its training process was ended",
                            CLOSE_STOP_WAIT_MS // 1000)
            worker.wait()
            QApplication.processEvents()  # deliver the last signals (finished, done)
        self.spare_process.close()
        self.evaluation_panel.cancel()
        stop_all_jobs()
        self.plots.timer.stop()
        self.log_panel.detach(log)
        super().closeEvent(event)
