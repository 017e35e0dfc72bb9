"""The Sweep view: a hyperparameter search on Optuna (``engine.sweep``), started here or from the CLI.

Left: the fields to search (:class:`~studio.panels.sweep_space.SearchSpaceForm`, generated from the
schema), the number of trials, the steps of each trial, the pruner, the study's name and storage, and
Start / Pause / Stop. Every trial's config is the window's current config (the Setup panels) with the
searched values set. The sweep runs in the training child process like a run
(:class:`studio.jobs.sweep_run.SweepWorker`); one training job at a time.

Right: the trials (sortable; pruned trials grey with their stop step, failed ones red), the optimisation
history, the validation curves and the importances (:class:`~studio.panels.sweep_plots.SweepPlots`). All
of it is read from the study's storage, polled off the GUI thread (:class:`studio.jobs.latest.LatestJob`)
every second while the view is shown: a sweep a ``meta-engine sweep`` process runs on the same storage
and study shows up live too. Double-clicking a trial opens its run; "Train best" loads the best trial's
settings into the forms (with the forms' step count: a full run) and starts that run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QPushButton, QScrollArea, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from engine.api import PRUNERS, ConfigError, EngineError, SweepSettings, default_storage_url, load_sweep
from studio.jobs.latest import LatestJob
from studio.jobs.sweep_run import SweepWorker
from studio.panels.panel_parts import WorkerControls
from studio.panels.sweep_plots import SweepPlots
from studio.panels.sweep_space import SearchSpaceForm

log = logging.getLogger("studio")

POLL_MS = 1000
STATE_COLOURS = {"pruned": "#8a8a8a", "failed": "#d62728", "running": "#1f77b4", "waiting": "#1f77b4"}
FIXED_COLUMNS = ("Trial", "State", "Best val. acc.", "Step")


class _SortItem(QTableWidgetItem):
    """A cell that sorts by its key (numbers as numbers, blanks last)."""

    def __init__(self, text: str, key: Any) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:
        mine, theirs = self.key, getattr(other, "key", None)
        if mine is None or theirs is None:
            return theirs is None and mine is not None
        try:
            return mine < theirs
        except TypeError:
            return str(mine) < str(theirs)


class SweepPanel(WorkerControls, QWidget):
    job_name = "sweep"
    running_text = "Sweeping…"
    stopping_text = "Stopping after the current step (the trial is continued by the next sweep of this study)…"
    racing_changed = Signal(bool)  # the window's name for "a view trains" (layout.py revalidates on it)

    def __init__(self, window: Any) -> None:
        super().__init__()
        self.window = window
        self.worker: SweepWorker | None = None
        self.snapshot: Any = None
        self._finished = 0  # finished trials in the last snapshot
        self._poll = LatestJob()
        self._build()
        self._refresh_space()
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        if hasattr(window, "jobs_changed"):
            window.jobs_changed.connect(self._update_buttons)
        if hasattr(window, "algorithm_panel"):
            window.algorithm_panel.config_changed.connect(self._refresh_space)
        if isinstance(window, QObject):
            window.installEventFilter(self)  # stop a running sweep cleanly when the window closes
        self._update_buttons()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.space_form = SearchSpaceForm()
        space_box = QGroupBox("Fields to search")
        scroll = QScrollArea()
        scroll.setWidget(self.space_form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        QVBoxLayout(space_box).addWidget(scroll)

        self.trials = QSpinBox(minimum=1, maximum=10_000, value=20)
        self.steps = QSpinBox(minimum=1, maximum=10_000_000, value=200)
        self.steps.setToolTip("Training steps of each trial (train.steps of its run)")
        self.pruner = QComboBox()
        self.pruner.addItems(PRUNERS)
        self.pruner.setToolTip("median: stop a trial whose validation accuracy is below the median of the earlier "
                               "trials at the same step; halving: successive halving; none: run every trial out")
        self.startup = QSpinBox(minimum=0, maximum=1000, value=3)
        self.startup.setToolTip("Trials that run out before the pruner stops any (and before TPE leaves random "
                                "sampling)")
        self.study = QLineEdit("sweep")
        self.storage = QLineEdit()
        self.storage.setPlaceholderText(default_storage_url(self._runs_root()))
        self.storage.setToolTip("Optuna storage URL: sqlite:///FILE, postgresql://..., mysql://..., journal:FILE. "
                                "Processes with the same storage and study share the study.")
        for editor in (self.study, self.storage):
            editor.editingFinished.connect(self.poll)
        settings = QGroupBox("Sweep")
        form = QFormLayout(settings)
        form.addRow("Trials", self.trials)
        form.addRow("Steps per trial", self.steps)
        form.addRow("Pruner", self.pruner)
        form.addRow("Trials before pruning", self.startup)
        form.addRow("Study", self.study)
        form.addRow("Storage", self.storage)
        self.start_button = QPushButton("Start sweep")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(space_box, 1)
        left_layout.addWidget(settings)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.status_label)

        self.table = QTableWidget(0, len(FIXED_COLUMNS))
        self.table.setHorizontalHeaderLabels(FIXED_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(self._open_row)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.summary_label = QLabel("")
        self.open_button = QPushButton("Open run")
        self.open_button.clicked.connect(self.open_selected_run)
        self.best_button = QPushButton("Train best")
        self.best_button.setToolTip("Load the best trial's settings into the forms (with the forms' step count) and "
                                    "start a full run")
        self.best_button.clicked.connect(self.train_best)
        row = QHBoxLayout()
        row.addWidget(self.summary_label, 1)
        row.addWidget(self.open_button)
        row.addWidget(self.best_button)
        self.plots = SweepPlots()
        right = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.table, 1)
        top_layout.addLayout(row)
        right.addWidget(top)
        right.addWidget(self.plots)
        right.setSizes([300, 260])

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 900])
        QVBoxLayout(self).addWidget(splitter)

    def _runs_root(self) -> Path:
        store = getattr(self.window, "store", None)
        if store is not None:
            return Path(store.root)
        from engine.api import default_runs_root

        return default_runs_root()

    def storage_url(self) -> str:
        return self.storage.text().strip() or default_storage_url(self._runs_root())

    def study_name(self) -> str:
        return self.study.text().strip()

    def _refresh_space(self) -> None:
        config = self._current_config()
        if config is not None and config.algorithm.name != self.space_form.algorithm:
            self.space_form.set_config(config)
            self.steps.setValue(max(1, min(config.train.steps, 10_000_000)))

    def _current_config(self) -> Any:
        getter = getattr(self.window, "current_config", None)
        return getter() if getter is not None else None

    # ------------------------------------------------------------------ running
    def is_racing(self) -> bool:
        """A sweep trains in this view (the window starts no run beside it; see TrainingRuns.is_racing)."""
        return self.worker is not None

    def _update_buttons(self) -> None:
        sweeping = self.worker is not None
        training = getattr(self.window, "is_training", lambda: False)()
        self.start_button.setEnabled(not sweeping and not training)
        self.start_button.setToolTip("A training run is in progress: one training job at a time" if training else "")
        self.pause_button.setEnabled(sweeping)
        self.stop_button.setEnabled(sweeping)
        has_best = bool(self.snapshot is not None and self.snapshot.best_params)
        self.best_button.setEnabled(has_best and not sweeping and not training)
        self.open_button.setEnabled(self._selected_run_dir() is not None)

    def settings(self) -> SweepSettings:
        """The sweep the form describes (ConfigError naming the field, option or URL)."""
        config = self._current_config()
        if config is None:
            errors = getattr(self.window, "config_errors", lambda: [])()
            raise ConfigError(errors[0] if errors else "the settings are incomplete")
        self._refresh_space()
        config.train.steps = self.steps.value()
        return SweepSettings(config, self.space_form.space(), self.trials.value(), self.study_name(),
                             self.storage.text().strip(), self._runs_root(), self.pruner.currentText(),
                             self.startup.value())

    def start(self) -> SweepWorker | None:
        if self.worker is not None or getattr(self.window, "is_training", lambda: False)():
            return None
        if self.window.dataset_panel.is_loading():
            self.window.show_error("Cannot start the sweep", "The data set is still loading.")
            return None
        try:
            settings = self.settings()
        except ConfigError as error:
            self.window.show_error("Cannot start the sweep", str(error))
            return None
        spare = getattr(self.window, "spare_process", None)
        worker = SweepWorker(settings, data=self.window.dataset_panel.loaded_data(settings.config.data),
                             process=spare.take() if spare is not None else None)
        self.worker = worker
        worker.log.connect(self._on_log)
        worker.validation.connect(lambda *_: self.poll())
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        worker.start()
        self.status_label.setText(f"Sweeping {settings.space.describe()} ({settings.trials} trials)…")
        self.pause_button.setText("Pause")
        self._update_buttons()
        self.racing_changed.emit(True)
        log.info("sweep %s started: %s", settings.study_name, settings.space.describe())
        return worker

    def _on_log(self, message: str, level: str) -> None:
        if level in ("warning", "error"):
            log.warning("sweep: %s", message)

    def _on_failed(self, message: str, *_: Any) -> None:
        self.window.show_error("Sweep failed", message)

    def _on_done(self) -> None:
        outcome = self.worker.outcome if self.worker is not None else None
        self.worker = None
        if outcome is not None:
            self.status_label.setText(f"Sweep {outcome.status}: {outcome.trials_run} trials run here.")
        spare = getattr(self.window, "spare_process", None)
        if spare is not None:
            spare.prepare_later()
        runs_panel = getattr(self.window, "runs_panel", None)
        if runs_panel is not None:
            runs_panel.refresh()
        self.poll()
        self._update_buttons()
        self.racing_changed.emit(False)

    # ------------------------------------------------------------------ reading the study
    def poll(self) -> None:
        """Read the study in a worker thread (skipped while the last read runs or the view is hidden)."""
        if self._poll.is_running() or not self.study_name() or (not self.isVisible() and self.worker is None):
            return
        url, name = self.storage_url(), self.study_name()
        self._poll.start(lambda progress, should_stop: load_sweep(url, name), on_result=self.show_snapshot,
                         on_error=self._poll_failed)

    def _poll_failed(self, message: str) -> None:
        if self.snapshot is not None or self.worker is not None:
            self.summary_label.setText(message)
        else:
            self.summary_label.setText("No trials yet in this study.")

    def show_snapshot(self, snapshot: Any) -> None:
        finished = sum(row.state in ("complete", "pruned", "failed") for row in snapshot.rows)
        if finished != self._finished:  # a trial's run just ended: the Runs table lists it
            self._finished = finished
            runs_panel = getattr(self.window, "runs_panel", None)
            if runs_panel is not None:
                runs_panel.refresh()
        self.snapshot = snapshot
        self._fill_table(snapshot)
        self.plots.show_snapshot(snapshot)
        counts: dict[str, int] = {}
        for row in snapshot.rows:
            counts[row.state] = counts.get(row.state, 0) + 1
        text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        best = next((r for r in snapshot.rows if r.state == "complete"), None)
        if best is not None:
            text += f"; best: trial {best.number}, {100 * best.value:.1f}%"
        self.summary_label.setText(text)
        self._update_buttons()

    def _fill_table(self, snapshot: Any) -> None:
        keys = sorted({key for row in snapshot.rows for key in row.params})
        selected = self._selected_number()
        self.table.setSortingEnabled(False)
        self.table.setColumnCount(len(FIXED_COLUMNS) + len(keys))
        self.table.setHorizontalHeaderLabels([*FIXED_COLUMNS, *keys])
        self.table.setRowCount(len(snapshot.rows))
        for i, row in enumerate(snapshot.rows):
            value = row.value if row.value is not None else row.best_seen
            state = f"pruned at step {row.last_step}" if row.state == "pruned" else row.state
            cells = [_SortItem(str(row.number), row.number), _SortItem(state, row.state),
                     _SortItem(f"{100 * value:.1f}%" if value is not None else "", value),
                     _SortItem(str(row.last_step or ""), row.last_step)]
            cells += [_SortItem(_format(row.params.get(key)), row.params.get(key)) for key in keys]
            colour = STATE_COLOURS.get(row.state)
            for column, cell in enumerate(cells):
                cell.setData(Qt.ItemDataRole.UserRole, row.number)
                cell.setToolTip(row.message or (row.run_dir or ""))
                if colour:
                    cell.setForeground(QColor(colour))
                self.table.setItem(i, column, cell)
        self.table.setSortingEnabled(True)
        if selected is not None:
            self._select_number(selected)

    def _selected_number(self) -> int | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _select_number(self, number: int) -> None:
        for i in range(self.table.rowCount()):
            item = self.table.item(i, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == number:
                self.table.selectRow(i)
                return

    def row_of(self, number: int) -> Any:
        return next((r for r in (self.snapshot.rows if self.snapshot else []) if r.number == number), None)

    def _selected_run_dir(self) -> Path | None:
        number = self._selected_number()
        row = self.row_of(number) if number is not None else None
        return Path(row.run_dir) if row is not None and row.run_dir else None

    # ------------------------------------------------------------------ actions on trials
    def _open_row(self, table_row: int, _column: int) -> None:
        self.table.selectRow(table_row)
        self.open_selected_run()

    def open_selected_run(self) -> None:
        """Show the selected trial's run in the main window like any run."""
        self._open_run(self._selected_run_dir())

    def train_best(self) -> Any:
        """Load the best trial's settings into the forms (keeping the forms' step count) and start that run."""
        best = next((r for r in (self.snapshot.rows if self.snapshot else []) if r.state == "complete"), None)
        if best is None or not best.run_dir or self.worker is not None:
            return None
        try:
            config = self.window.store.read_config(best.run_dir)
        except EngineError as error:
            self.window.show_error("Cannot train the best trial's settings", str(error))
            return None
        current = self._current_config()
        if current is not None:
            config.train.steps = current.train.steps
        config.name = f"{self.study_name()} best (trial {best.number})"
        self.window.load_config(config)
        worker = self.window.start_training()
        if worker is not None:
            log.info("training the best settings of sweep %s (trial %d)", self.study_name(), best.number)
        return worker


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
