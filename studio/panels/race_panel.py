"""Race view: 2 to 6 algorithms trained side by side on the same data, the same seeded episodes and the
same device, with one curve per algorithm (against steps or each algorithm's own compute seconds) and a
final table (test accuracy with 95% CI on identical test episodes, training time, peak memory).

The shared settings (data, task, model, training steps, device) come from the Setup panel
(``window.current_config()``); each racing algorithm uses its registry-default hyperparameters. The race
runs in the training child process, like a solo run (:class:`studio.jobs.engine_run.RaceWorker`,
:mod:`engine.race`), and is saved under ``<runs>/races/``; saved races are listed here and reopen with
their curves and table. Each racer's run folder is a run like any other: the Runs table lists it under its
race, and "Open run" shows its curves and evaluation without touching the algorithm and data forms ("Load
its settings" does that, when asked). The algorithms to tick come from the registry
(:data:`engine.algorithms.registry.ALGORITHMS`), named by their declared display titles; the plot is
:mod:`studio.panels.race_plot`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QListWidget, QListWidgetItem, QPushButton, QScrollArea, QSpinBox, QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.api import (ALGORITHM_CONFIGS, ALGORITHMS, CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD, MAX_ALGORITHMS,
                        MIN_ALGORITHMS, SHARED_STREAM_NOTE, AlgorithmResult, ConfigError, EngineError, RaceConfig,
                        RaceInfo, RaceResult, SavedRace, StepMetrics, ValidationResult, default_race_name,
                        display_title, format_accuracy, format_memory, list_races, load_race, new_race_dir)
from studio.jobs.engine_run import RaceWorker
from studio.panels.panel_parts import WorkerControls
from studio.panels.race_plot import RaceCurves, RacerSeries, titled_box
from studio.widgets.elide import WrappedLabel
from studio.widgets.plot_parts import PALETTE

log = logging.getLogger("studio")

TABLE_COLUMNS = ["Algorithm", "Status", "Steps", "Test accuracy (95% CI)", "Train time", "Peak memory"]
STATUS_COLOURS = {"finished": "#2ca02c", "stopped": "#b35c00", "failed": "#d62728", "running": "#1f77b4",
                  "interrupted": "#8c564b", "damaged": "#d62728", "racing": "#1f77b4", "evaluating": "#1f77b4"}
SAVED_ROLE = Qt.ItemDataRole.UserRole + 1
TRAINING_RUNS_MESSAGE = ("a training run is in progress: one training job at a time, so stop it or wait for it "
                         "to end.")
DEFAULT_ALGORITHMS = ("protonet", "maml", "reptile", "baseline++")  # ticked at first (when registered)
PICKER_COLUMNS = 7  # the algorithm check boxes, in rows that scroll past the second (the page keeps its height)


def _scrolled_rows(widget: QWidget, rows_shown: int) -> QScrollArea:
    """``widget`` (rows of check boxes) in a frameless area as tall as its first ``rows_shown`` rows; the rest
    scroll, and a narrow page scrolls it sideways, so the registry's length does not set the page's size."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    row = widget.layout().itemAt(0).widget().sizeHint().height() + widget.layout().verticalSpacing()
    margins = widget.layout().contentsMargins()
    area.setFixedHeight(min(widget.sizeHint().height(), rows_shown * row + margins.top() + margins.bottom()))
    return area


class RacePanel(RaceCurves, WorkerControls, QWidget):
    """Pick 2-4 algorithms, race them, watch one curve each, compare the final table, reopen old races."""

    race_ended = Signal(str)   # finished / stopped / failed
    racing_changed = Signal(bool)  # a race started (True) or its worker is done (False)
    job_name = "race"
    running_text = "Racing…"
    stopping_text = "Stopping after the current step…"

    def __init__(self, window: Any) -> None:
        super().__init__()
        self.window = window
        self.worker: RaceWorker | None = None
        self.race_dir: Path | None = None
        self.order: list[str] = []
        self.series: dict[str, RacerSeries] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.rows: dict[str, AlgorithmResult] = {}
        self.last_step: dict[str, int] = {}
        self.trained: dict[str, str] = {}                  # racer -> how its training ended, before its row
        self.evaluating: dict[str, tuple[int, int]] = {}   # racer -> (episodes done, total) of its final test
        self.total_steps = 0
        self._runs_listed = False  # the racers' run folders are in the Runs table
        self.saved: SavedRace | None = None
        self._dirty = False
        self._build()
        self._update_buttons()
        self.refresh_saved()
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        window.installEventFilter(self)   # stop a running race cleanly when the window closes
        if hasattr(window, "training_started"):
            window.training_started.connect(self._training_started)
        if hasattr(window, "jobs_changed"):  # one training job at a time: Start race follows the window's run
            window.jobs_changed.connect(self._update_buttons)
        if hasattr(window, "runs_panel"):  # races deleted in the Runs table leave the saved list
            window.runs_panel.races_deleted.connect(self.refresh_saved)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.checks: dict[str, QCheckBox] = {}
        picker = QGroupBox(f"Algorithms ({MIN_ALGORITHMS} to {MAX_ALGORITHMS})")
        boxes = QWidget()
        grid = QGridLayout(boxes)
        grid.setContentsMargins(6, 2, 6, 2)
        for i, (name, algorithm) in enumerate(ALGORITHMS.items()):
            cls = ALGORITHM_CONFIGS[name]
            box = QCheckBox(display_title(name))
            box.setObjectName(f"race_check_{name}")
            box.setToolTip(f"{cls.title}: {cls.summary}\nRaces with its default hyperparameters"
                           + (" and trains on its own seeded class-batch stream." if algorithm.batch_kind == "classes"
                              else " on the shared stream of seeded episodes."))
            box.setChecked(name in DEFAULT_ALGORITHMS)
            box.toggled.connect(lambda *_: self._update_buttons())
            self.checks[name] = box
            grid.addWidget(box, i // PICKER_COLUMNS, i % PICKER_COLUMNS)
        picker_layout = QVBoxLayout(picker)
        picker_layout.setContentsMargins(2, 0, 2, 0)
        picker_layout.addWidget(_scrolled_rows(boxes, rows_shown=2))

        self.test_episodes = QSpinBox()
        self.test_episodes.setRange(1, 100_000)
        self.test_episodes.setValue(600)
        self.test_episodes.setToolTip("Seeded test episodes each algorithm is evaluated on at the end: the very "
                                      "same episodes for every algorithm.")
        self.start_button = QPushButton("Start race")
        self.start_button.setObjectName("race_start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop every algorithm after its current step (checkpoints are kept; "
                                    "no test evaluation).")
        self.stop_button.clicked.connect(self.stop)
        self.status_label = QLabel("Shared settings (data, task, model, steps, device) come from the Setup "
                                   "panel.")
        self.status_label.setObjectName("race_status")
        self.status_label.setWordWrap(True)
        self.blocked_label = QLabel("")
        self.blocked_label.setObjectName("race_blocked")
        self.blocked_label.setWordWrap(True)
        self.blocked_label.setStyleSheet("color: #d62728;")
        self.blocked_label.hide()
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Test episodes"))
        actions.addWidget(self.test_episodes)
        actions.addWidget(self.start_button)
        actions.addWidget(self.pause_button)
        actions.addWidget(self.stop_button)
        actions.addWidget(self.status_label, 1)
        note = WrappedLabel(SHARED_STREAM_NOTE + " Time is each algorithm's own compute time in its training steps.")
        note.setStyleSheet("color: #606060;")

        self.plot_widget = self._build_plot()
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setObjectName("race_table")
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        # room for the smallest race's rows; with more racers (or a short window) the table scrolls
        rows_height = self.table.verticalHeader().defaultSectionSize() * MIN_ALGORITHMS
        self.table.setMinimumHeight(rows_height + self.table.horizontalHeader().sizeHint().height() + 6)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(lambda *_: self.open_selected_run())
        self.table_note = WrappedLabel("")  # as tall as its wrapped text at its width, never squeezed
        self.table_note.setObjectName("race_table_note")
        self.table_note.setStyleSheet("color: #606060;")
        self.open_run_button = QPushButton("Open run")
        self.open_run_button.setObjectName("race_open_run")
        self.open_run_button.setToolTip("Show the selected algorithm's run (curves, evaluation, Adapt view) like any "
                                        "run. The algorithm and data forms are left as they are.")
        self.open_run_button.clicked.connect(self.open_selected_run)
        self.load_settings_button = QPushButton("Load its settings")
        self.load_settings_button.setToolTip("Load the selected algorithm's run settings (algorithm, its "
                                             "hyperparameters, data, task) into the forms, so Train trains it.")
        self.load_settings_button.clicked.connect(self.load_selected_settings)
        table_box = titled_box("Results", [self.open_run_button, self.load_settings_button], self.table,
                                self.table_note)

        self.saved_list = QListWidget()
        self.saved_list.setObjectName("race_saved_list")
        self.saved_list.setWordWrap(True)
        self.saved_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.saved_list.setMinimumWidth(260)
        self.saved_list.itemDoubleClicked.connect(lambda *_: self.open_selected_race())
        self.saved_list.itemSelectionChanged.connect(self._update_buttons)
        self.open_race_button = QPushButton("Open race")
        self.open_race_button.clicked.connect(self.open_selected_race)
        saved_box = titled_box("Saved races", [self.open_race_button], self.saved_list)

        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(table_box)
        bottom.addWidget(saved_box)
        bottom.setStretchFactor(0, 5)
        bottom.setStretchFactor(1, 2)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.plot_box)
        body.addWidget(bottom)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        body.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(picker)
        layout.addLayout(actions)
        layout.addWidget(self.blocked_label)
        layout.addWidget(note)
        layout.addWidget(body, 1)

    def selected_algorithms(self) -> list[str]:
        return [name for name, box in self.checks.items() if box.isChecked()]

    def set_algorithms(self, names: list[str]) -> None:
        for name, box in self.checks.items():
            box.setChecked(name in names)

    def is_racing(self) -> bool:
        return self.worker is not None

    def _update_buttons(self) -> None:
        n = len(self.selected_algorithms())
        racing = self.worker is not None
        training = getattr(self.window, "is_training", lambda: False)()
        counted = MIN_ALGORITHMS <= n <= MAX_ALGORITHMS
        self.start_button.setEnabled(not racing and not training and counted)
        self.start_button.setToolTip(TRAINING_RUNS_MESSAGE if training and not racing else "" if counted else
                                     f"Tick {MIN_ALGORITHMS} to {MAX_ALGORITHMS} algorithms (now {n}).")
        self.blocked_label.setText(f"Cannot race now: {TRAINING_RUNS_MESSAGE}" if training and not racing else "")
        self.blocked_label.setVisible(training and not racing)
        self.pause_button.setEnabled(racing)
        self.stop_button.setEnabled(racing)
        for box in self.checks.values():
            box.setEnabled(not racing)
        self.test_episodes.setEnabled(not racing)
        self.open_race_button.setEnabled(not racing and bool(self.saved_list.selectedItems()))
        has_run = self._selected_run_dir() is not None
        self.open_run_button.setEnabled(has_run)
        self.load_settings_button.setEnabled(has_run)

    # ------------------------------------------------------------------ racing
    def start(self) -> RaceWorker | None:
        """Start a race of the ticked algorithms with the Setup panel's shared settings."""
        if self.worker is not None:
            return None
        if self.window.is_training():
            self.window.show_error("Cannot start the race", "A training run is in progress: stop it or wait for it "
                                   "to end, so the race has the machine to itself.")
            return None
        if self.window.dataset_panel.is_loading():
            self.window.show_error("Cannot start the race", "The data set is still loading.")
            return None
        config = self._race_config()
        if config is None:
            return None
        try:
            race_dir = new_race_dir(self.window.store.root, config.display_name)
        except OSError as error:
            self.window.show_error("Cannot start the race", f"{self.window.store.root}: {error.strerror or error}")
            return None
        spare = getattr(self.window, "spare_process", None)  # a training process started ahead, if any
        worker = RaceWorker(config, race_dir, data=self.window.dataset_panel.loaded_data(config.data),
                            process=spare.take() if spare is not None else None)
        self._begin(worker, config, race_dir)
        return worker

    def _race_config(self) -> RaceConfig | None:
        base = self.window.current_config()
        if base is None:
            errors = self.window.config_errors()
            self.window.show_error("Cannot start the race", errors[0] if errors else "the settings are incomplete")
            return None
        try:
            return RaceConfig.from_run_config(base, self.selected_algorithms(),
                                              test_episodes=self.test_episodes.value()).validate()
        except ConfigError as error:
            self.window.show_error("Cannot start the race", str(error))
            return None

    def _begin(self, worker: RaceWorker, config: RaceConfig, race_dir: Path) -> None:
        self.worker = worker
        self.race_dir = race_dir
        self.saved = None
        self._runs_listed = False
        self._reset(config.algorithm_names, config.train.steps)
        worker.race_started.connect(self._race_started)
        worker.steps.connect(self._on_steps)
        worker.validation.connect(self._on_validation)
        worker.log.connect(self._on_log)
        worker.algorithm_trained.connect(self._algorithm_trained)
        worker.evaluation_progress.connect(self._evaluation_progress)
        worker.algorithm_finished.connect(self._algorithm_finished)
        worker.race_finished.connect(self._race_finished)
        worker.failed.connect(self._race_failed)
        worker.done.connect(self._done)
        self.status_label.setText(f"Starting {config.display_name}…")
        self.pause_button.setText("Pause")
        self._update_buttons()
        worker.start()
        self.racing_changed.emit(True)
        log.info("race %s started in %s", config.display_name, race_dir)

    # -- worker signals (GUI thread) --------------------------------------------
    def _race_started(self, info: RaceInfo) -> None:
        self.status_label.setText(f"Racing on {info.device}: {info.total_steps:,} steps each, one step of each "
                                  "algorithm in turn")
        self._fill_table()
        for name, stream in info.streams.items():
            log.info("race: %s trains on %s", name, stream)

    def _on_steps(self, batch: list[tuple[str, StepMetrics, float]]) -> None:
        grouped: dict[str, tuple[list, list, list, list]] = {}
        for name, metrics, seconds in batch:
            columns = grouped.setdefault(name, ([], [], [], []))
            for column, value in zip(columns, (metrics.step, metrics.loss, metrics.accuracy, seconds)):
                column.append(value)
            self.last_step[name] = metrics.step
        for name, (steps, losses, accuracies, seconds) in grouped.items():
            if name in self.series:
                self.series[name].add_steps(steps, losses, accuracies, seconds)
        self._dirty = True
        if not self._runs_listed and len(self.last_step) == len(self.order):  # every racer's run folder exists
            self._runs_listed = True
            self._refresh_runs()
        progress = ", ".join(f"{display_title(n)} {self.last_step.get(n, 0)}" for n in self.order)
        if self.worker is not None and not self.worker.paused:
            self.status_label.setText(f"Racing: step {progress} of {self.total_steps:,}")

    def _on_validation(self, name: str, result: ValidationResult, seconds: float) -> None:
        if name in self.series:
            self.series[name].add_validation(result.step, result.accuracy, seconds)
            self._dirty = True
        log.info("race: %s validation at step %d: %.2f%% ± %.2f%%", name, result.step, 100 * result.accuracy,
                 100 * result.ci95)

    def _on_log(self, message: str, level: str) -> None:
        getattr(log, level if level in ("warning", "error") else "info")("race: %s", message)
        if message.startswith("evaluating"):
            self.status_label.setText(message[0].upper() + message[1:] + "…")

    def _algorithm_trained(self, name: str, status: str) -> None:
        """A racer's training ended while others may still race: its row says so at once."""
        self.trained[name] = status
        self._fill_table()

    def _evaluation_progress(self, name: str, done: int, total: int) -> None:
        self.evaluating[name] = (done, total)
        self.status_label.setText(f"Evaluating {display_title(name)}: episode {done:,} / {total:,}")
        self._fill_table()

    def _algorithm_finished(self, name: str, row: AlgorithmResult) -> None:
        self.rows[name] = row
        self.evaluating.pop(name, None)
        self._fill_table()

    def _race_finished(self, result: RaceResult) -> None:
        self.rows = {row.algorithm: row for row in result.rows}
        self._fill_table(result)
        self.status_label.setText(f"Race {result.status} in {result.duration_s:.1f} s"
                                  + (f" ({result.message})" if result.message else ""))
        log.info("race %s in %.1f s", result.status, result.duration_s)
        self.redraw(force=True)
        self.race_ended.emit(result.status)

    def _race_failed(self, message: str) -> None:
        if self.worker is not None and self.worker.force_stopped:  # asked for: no error dialog
            self.status_label.setText("Race force-stopped; see the log")
            log.warning("race force stop: %s", message)
            self.race_ended.emit("stopped")
            return
        self.status_label.setText(f"Race failed: {message}")
        log.error("race failed: %s", message)
        self.race_ended.emit("failed")
        self.window.show_error("Race failed", message)

    def _done(self) -> None:
        self.worker = None
        spare = getattr(self.window, "spare_process", None)
        if spare is not None:
            spare.prepare_later()  # the next run or race starts at once too
        if self.race_dir is not None and self.race_dir.is_dir() and not any(self.race_dir.iterdir()):
            self.race_dir.rmdir()
        self.redraw(force=True)
        self.refresh_saved()
        self._refresh_runs()
        self._fill_table()  # no racer reads "racing" any more
        self._update_buttons()
        self.racing_changed.emit(False)

    def _refresh_runs(self) -> None:
        """Re-read the Runs table, which lists the racers' runs under their race."""
        runs_panel = getattr(self.window, "runs_panel", None)
        if runs_panel is not None:
            runs_panel.refresh()

    def _training_started(self, *_: Any) -> None:
        if self.worker is not None:
            log.warning("race: a training run started while the race runs; they now share the machine, so the "
                        "race's wall-clock times include that contention")

    # ------------------------------------------------------------------ table
    def _fill_table(self, result: RaceResult | None = None) -> None:
        self.table.setRowCount(len(self.order))
        for i, name in enumerate(self.order):
            row = self.rows.get(name)
            status, status_tip = (row.status, row.message) if row else self._status_before_row(name)
            steps = row.steps_done if row else self.last_step.get(name)
            cells = [display_title(name), status,
                     f"{steps:,} / {row.total_steps if row else self.total_steps:,}" if steps is not None else "",
                     format_accuracy(row).replace("+-", "±") if row else "",
                     f"{row.train_seconds:.1f} s" if row else "", format_memory(row) if row else ""]
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if column == 0:
                    item.setForeground(pg.mkColor(PALETTE[i % len(PALETTE)]))
                    item.setData(Qt.ItemDataRole.UserRole, name)
                if column == 1:
                    item.setForeground(pg.mkColor(STATUS_COLOURS.get(status.split(" ")[0], "#303030")))
                    item.setToolTip(status_tip)
                if column == 5 and row is not None:
                    item.setToolTip(row.memory_method)
                self.table.setItem(i, column, item)
        self.table_note.setText(self._table_note(result))
        self.table_note.setToolTip(self._table_note(result, full=True))
        self._update_buttons()

    def _status_before_row(self, name: str) -> tuple[str, str]:
        """(status, tooltip) of a racer without its final row: racing, its training's end, or its evaluation."""
        if name in self.evaluating:
            done, total = self.evaluating[name]
            return f"evaluating {done:,} / {total:,}", "Test evaluation of the final weights"
        if name in self.trained:
            return self.trained[name], ("Its training ended; the test evaluation starts when every algorithm's "
                                        "training has ended.")
        if self.worker is not None:
            return "racing", ""
        return (self.saved.status if self.saved else ""), ""

    def _table_note(self, result: RaceResult | None, full: bool = False) -> str:
        """What the table's numbers mean (``full``: with the complete memory method, for the tooltip)."""
        rows = list(self.rows.values())
        if not rows:
            return ""
        parts = []
        tested = [r for r in rows if r.test_accuracy is not None]
        if tested:
            seed = f" (seed {result.test_seed})" if result is not None else ""
            parts.append(f"Test: final weights, the same {tested[0].test_episodes} seeded "
                         f"{self._episode_shape()} test episodes{seed} for every algorithm.")
        methods = sorted({r.memory_method for r in rows if r.memory_method})
        parts += [f"Peak memory: {m if full else _short_method(m)}." for m in methods]
        parts += [f"{display_title(r.algorithm)}: {r.message}" for r in rows if r.message]
        return " ".join(parts)

    def _episode_shape(self) -> str:
        config = self.saved.config if self.saved is not None else (self.worker.config if self.worker else None)
        if config is None:
            try:
                config = load_race(self.race_dir).config if self.race_dir else None
            except EngineError:
                config = None
        if config is None:
            return ""
        return f"{config.task.eval_n_way}-way {config.task.eval_n_shot}-shot"

    def _selected_run_dir(self) -> Path | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or self.race_dir is None:
            return None
        item = self.table.item(rows[0].row(), 0)
        row = self.rows.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None
        if row is None or not row.run_dir:
            return None
        path = self.race_dir / row.run_dir
        return path if path.is_dir() else None

    def open_selected_run(self) -> None:
        """Show the selected algorithm's run in the main window like any run (curves, evaluation, Adapt);
        the algorithm and data forms are left as they are."""
        run_dir = self._selected_run_dir()
        if not self._open_run(run_dir):
            return
        runs_panel = getattr(self.window, "runs_panel", None)
        if runs_panel is not None:
            runs_panel.select_runs([run_dir], notify=False)  # open_run showed it: no overlay of itself

    def load_selected_settings(self) -> None:
        """Load the selected algorithm's run settings into the forms (asked for explicitly)."""
        run_dir = self._selected_run_dir()
        if run_dir is None:
            return
        try:
            config = self.window.store.read_config(run_dir)
        except EngineError as error:
            self.window.show_error("Cannot load the run's settings", str(error))
            return
        self.window.load_config(config)
        log.info("settings of %s loaded into the forms", run_dir)

    # ------------------------------------------------------------------ saved races
    def refresh_saved(self) -> None:
        self.saved_list.clear()
        for entry in list_races(self.window.store.root):
            when = entry.created.replace("T", " ")[:16]
            algorithms = ", ".join(display_title(a) for a in entry.algorithms)
            item = QListWidgetItem(f"{algorithms or entry.name}\n{when} · {entry.status}"
                                   + (f" · {entry.name}" if entry.name != default_race_name(entry.algorithms) else ""))
            item.setData(SAVED_ROLE, str(entry.folder))
            item.setToolTip(f"{entry.name}\n{entry.folder}")
            item.setForeground(pg.mkColor(STATUS_COLOURS.get(entry.status, "#303030")) if entry.status == "damaged"
                               else pg.mkColor("#202020"))
            self.saved_list.addItem(item)
        self._update_buttons()

    def open_selected_race(self) -> SavedRace | None:
        items = self.saved_list.selectedItems()
        return self.open_race(Path(items[0].data(SAVED_ROLE))) if items else None

    def open_race(self, folder: Path) -> SavedRace | None:
        """Redraw a saved race's curves and table."""
        if self.worker is not None:
            return None
        try:
            saved = load_race(folder)
        except EngineError as error:
            self.window.show_error("Cannot open the race", str(error))
            return None
        self.race_dir = folder
        self._reset(saved.config.algorithm_names, saved.config.train.steps)
        self.saved = saved
        for name, curve in saved.curves.items():
            series = self.series[name]
            series.add_steps(curve.step, curve.loss, curve.accuracy, curve.seconds)
            for step, accuracy, seconds in zip(curve.val_step, curve.val_accuracy, curve.val_seconds):
                series.add_validation(step, accuracy, seconds)
        if saved.result is not None:
            self.rows = {row.algorithm: row for row in saved.result.rows}
        self._fill_table(saved.result)
        self.redraw(force=True)
        self.status_label.setText(f"{saved.name} ({saved.status})" + ("" if saved.result is not None else
                                                                      ": no result table (the race did not end)"))
        return saved


def _short_method(method: str) -> str:
    """A one-line form of a memory method (the full text is in the tooltips)."""
    if method == CPU_MEMORY_METHOD:
        return "CPU, its state + batch + peak of one step profiled with torch.profiler"
    if method == CUDA_MEMORY_METHOD:
        return "torch.cuda.max_memory_allocated in its steps, minus the others' tensors"
    return method
