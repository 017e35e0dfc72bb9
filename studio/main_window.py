"""The Meta Studio main window: set up a run, train it, watch it, evaluate it, compare runs.

Layout: a "Setup" dock (Data and Algorithm tabs) on the left; the run controls
on top; the live curves, the evaluation and adapt views and the teaching views (race,
episodes, inner loop, regression) in the centre; the run history and the log in a
bottom dock. Everything slow runs off the GUI thread (:mod:`studio.jobs`); the window only
calls engine APIs and shows what they report. The layout and menus are built in
:mod:`studio.window.layout`, the training-run lifecycle lives in :mod:`studio.window.training`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox

from engine.api import (ConfigError, EngineError, RunConfig, RunRecord, RunStore, apply_recipe, default_runs_root,
                        validate)
from studio import settings as st
from studio.jobs.engine_run import TrainingWorker
from studio.jobs.policy import install_main_thread_gc, keep_gui_thread_single_threaded
from studio.jobs.spare import SpareTrainingProcess
from studio.jobs.thread import run_in_worker, stop_all_jobs
from studio.panels.algorithm_panel import read_preset, write_preset
from studio.widgets.wheel_guard import install_wheel_guard
from studio.window.help import about_html
from studio.window.layout import VIEW_TABS, WindowLayout
from studio.window.screen_fit import PREFERRED_SIZE, fit_to_screen
from studio.window.training import TrainingRuns

__all__ = ["MainWindow", "VIEW_TABS"]

log = logging.getLogger("studio")

RACE_RUNNING_MESSAGE = ("the {view} tab is training: one training job at a time, so stop it there or wait "
                        "for it to end")
CLOSE_STOP_WAIT_MS = 20_000  # closing mid-run: how long a run may take to stop before its process is ended


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


class MainWindow(WindowLayout, TrainingRuns, QMainWindow):
    """The studio window. ``store`` defaults to ``RunStore(default_runs_root())``."""

    training_started = Signal(object)    # Path of the run folder
    training_ended = Signal(str)         # final status: finished / stopped / failed
    jobs_changed = Signal()              # a training run started or ended (views that train follow it)

    def __init__(self, store: RunStore | None = None, *, restore_settings: bool = True,
                 load_data: bool = True, warm_training_process: bool = False) -> None:
        """``warm_training_process``: keep a training process started ahead (what the app does; see
        :class:`studio.jobs.spare.SpareTrainingProcess`)."""
        super().__init__()
        install_main_thread_gc()  # Qt objects must never be garbage-collected in a worker thread
        keep_gui_thread_single_threaded()  # heavy tensor work runs in workers, at full speed
        install_wheel_guard()  # the wheel changes only a field the user clicked into, in every view
        self.setWindowTitle("Meta Studio")
        self.setObjectName("MetaStudioMainWindow")
        self.store = store or RunStore(default_runs_root())
        self.worker: TrainingWorker | None = None
        self.spare_process = SpareTrainingProcess(self.is_idle, warm_training_process, parent=self)
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
            self._first_size()
        self.revalidate()
        if load_data:
            self.dataset_panel.load()
        _warm_up_torch()
        log.info("Meta Studio ready. Runs are kept in %s", self.store.root)

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
        racing = self.racing_view()
        if racing is not None:
            message = RACE_RUNNING_MESSAGE.format(view=racing)
        elif not errors and self.dataset_panel.is_loading():
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

    def apply_recipe(self, key: str) -> None:
        """The algorithm form's recipe (``engine.algorithms.recipes``) on the current settings, Data tab included."""
        config = self._assemble_config()
        if config is None:
            self.show_error("Cannot apply the recipe", "Fix the fields marked on the Data tab first.")
            return
        self.load_config(apply_recipe(config, key))

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

    def open_run(self, record: RunRecord, load_settings: bool = True) -> None:
        """Show a past run's curves and evaluation and use it in the Adapt view; ``load_settings``: also
        load its settings into the forms (the Runs table's Open does; the race view's Open run does not,
        so the next Train still trains the algorithm the user chose)."""
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
        if load_settings:
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
        """Help > About: the algorithms listed are the registry's."""
        QMessageBox.about(self, "About Meta Studio", about_html(self.store.root))

    # ------------------------------------------------------------------ settings & closing
    def _restore_settings(self) -> None:
        settings = st.settings()
        geometry = settings.value(st.KEY_GEOMETRY)
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
            fit_to_screen(self)  # the last session's screen may have been larger
        else:
            self._first_size()
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

    def _first_size(self) -> None:
        """The first launch's size, as much of it as the screen has room for; the Runs dock keeps a
        quarter of the height (several rows) on a short screen."""
        self.resize(PREFERRED_SIZE)
        fit_to_screen(self)
        self.resizeDocks([self.runs_dock], [max(180, self.height() // 4)], Qt.Orientation.Vertical)

    def save_settings(self) -> None:
        settings = st.settings()
        settings.setValue(st.KEY_GEOMETRY, self.saveGeometry())
        settings.setValue(st.KEY_STATE, self.saveState())
        config = self.current_config()
        if config is not None:
            st.write_json(st.KEY_LAST_CONFIG, config.to_dict())
        settings.sync()

    close_clock: Any = None  # what closing mid-run measures its wait with (seconds); None: time.monotonic

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt)
        """Stop a running training cleanly (its checkpoint is kept), then close; a run still going after
        CLOSE_STOP_WAIT_MS (by ``close_clock``, which a test replaces) has its training process ended."""
        self._closing = True
        self.save_settings()
        worker = self.worker
        if worker is not None:
            self.status_label.setText("stopping the run and saving its checkpoint…")
            if worker.stop_and_wait(CLOSE_STOP_WAIT_MS, clock=self.close_clock):
                log.warning("the run did not stop within %d s of closing: its training process was ended",
                            CLOSE_STOP_WAIT_MS // 1000)
            QApplication.processEvents()  # deliver the last signals (finished, done)
        self.spare_process.close()
        self.evaluation_panel.cancel()
        stop_all_jobs()
        self.plots.timer.stop()
        self.log_panel.detach(log)
        super().closeEvent(event)

