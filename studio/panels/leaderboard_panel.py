"""Leaderboard view: a leaderboard's table (sortable by any column) and a bar chart of its accuracies with 95% CI
error bars, loaded from a leaderboard JSON file (the newest under the runs folder at start, or one picked), and
a Run button that runs a new leaderboard of the chosen algorithms in the background (each with its recipe, on
the Setup panel's data and settings) through :func:`studio.jobs.thread.run_in_worker`, with progress.

The engine does the work (:mod:`engine.leaderboard`, through :mod:`engine.api`); this view renders its rows.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QProgressBar, QPushButton, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from engine.api import (LEADERBOARDS_FOLDER, ConfigError, EngineError, Leaderboard, LeaderboardCallback,
                        LeaderboardRow, LeaderboardSpec, format_peak_memory, format_shot_accuracy, format_train_time,
                        latest_leaderboard, load_leaderboard, parse_algorithms, run_leaderboard)
from studio.jobs.background import BackgroundJobMixin
from studio.jobs.thread import WorkerHandle
from studio.widgets.elide import ElidedLabel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
SHOT_COLOURS = ("#4878b0", "#e08a3c", "#5a9e5a", "#b04848")
FIXED_COLUMNS = ("Algorithm", "Kind")
TRAILING_COLUMNS = ("Train time", "Peak memory", "Status")


class _SortItem(QTableWidgetItem):
    """A cell that sorts by the number (or text) in SORT_ROLE, not by its displayed text; empty cells last."""

    def __lt__(self, other: QTableWidgetItem) -> bool:  # noqa: D105 - Qt's sort
        mine, theirs = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if mine is None or theirs is None:
            return mine is not None
        return mine < theirs


def _cell(text: str, key: Any, tooltip: str = "") -> _SortItem:
    item = _SortItem(text)
    item.setData(SORT_ROLE, key)
    item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
    if tooltip:
        item.setToolTip(tooltip)
    return item


class LeaderboardChart(pg.PlotWidget):
    """Accuracy (%) per algorithm, one bar series per shot (in the table's order) with 95% CI error bars."""

    def __init__(self) -> None:
        super().__init__()
        self.setBackground("w")
        self.plot = self.getPlotItem()
        self.plot.setLabel("left", "test accuracy (%)")
        self.plot.showGrid(y=True, alpha=0.3)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.legend = self.plot.addLegend(offset=(60, 2))  # a bar named "N-shot" lists itself
        self.legend.setColumnCount(4)
        self.bars: dict[int, pg.BarGraphItem] = {}
        self.error_bars: dict[int, pg.ErrorBarItem] = {}

    def show_rows(self, rows: list[LeaderboardRow], shots: list[int]) -> None:
        """Bars for ``rows`` in this order: for each shot one bar per algorithm (0 when it has no accuracy)."""
        self.plot.clear()
        self.legend.clear()
        self.bars, self.error_bars = {}, {}
        width = 0.8 / max(len(shots), 1)
        positions = np.arange(len(rows), dtype=float)
        for index, shot in enumerate(shots):
            x = positions - 0.4 + width * (index + 0.5)
            results = [row.result(shot) for row in rows]
            height = np.array([100 * r.accuracy if r is not None and r.accuracy is not None else 0.0 for r in results])
            ci = np.array([100 * (r.ci95 or 0.0) if r is not None and r.accuracy is not None else 0.0 for r in results])
            colour = SHOT_COLOURS[index % len(SHOT_COLOURS)]
            bars = pg.BarGraphItem(x=x, height=height, width=width * 0.9, brush=colour, pen=None,
                                   name=f"{shot}-shot")
            errors = pg.ErrorBarItem(x=x, y=height, height=2 * ci, beam=width * 0.4, pen=pg.mkPen("#303030"))
            self.plot.addItem(bars)
            self.plot.addItem(errors)
            self.bars[shot], self.error_bars[shot] = bars, errors
        ticks = [(float(i), row.title) for i, row in enumerate(rows)]
        self.plot.getAxis("bottom").setTicks([ticks])
        self.plot.setXRange(-0.6, max(len(rows) - 0.4, 0.6), padding=0)
        self.plot.setYRange(0, 112, padding=0)  # room for the legend above 100%

    def bar_count(self, shot: int) -> int:
        bars = self.bars.get(shot)
        return 0 if bars is None else len(bars.opts["height"])


class _Forward(LeaderboardCallback):
    """The running leaderboard's progress, sent to the worker thread's progress function."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress

    def on_progress(self, done: int, total: int) -> None:
        self._progress(done, total)


class LeaderboardPanel(BackgroundJobMixin, QWidget):
    """Open a leaderboard JSON (or the newest under the runs folder), sort its table, compare its bars; run one."""

    board_shown = Signal(str)  # the file shown

    def __init__(self, window: Any) -> None:
        super().__init__()
        self.window = window
        self.board: Leaderboard | None = None
        self.path: Path | None = None
        self._handle: WorkerHandle | None = None
        self._running = False
        self._build()
        self._update_buttons()
        self.show_latest()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.open_button = QPushButton("Open leaderboard…")
        self.open_button.setToolTip("Open a leaderboard JSON file (written by Run below or `meta-engine leaderboard`).")
        self.open_button.clicked.connect(self.choose_file)
        self.latest_button = QPushButton("Latest")
        self.latest_button.setToolTip(f"Show the newest leaderboard under the runs folder ({LEADERBOARDS_FOLDER}/).")
        self.latest_button.clicked.connect(self.show_latest)
        self.file_label = ElidedLabel("No leaderboard yet: run one below, or open a JSON file.")
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.latest_button)
        top.addWidget(self.file_label, 1)

        self.algorithms = QLineEdit("all")
        self.algorithms.setObjectName("leaderboard_algorithms")
        self.algorithms.setToolTip("'all' (every algorithm) or names separated by commas, e.g. protonet,maml")
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(500)
        self.steps.setToolTip("Training steps of each algorithm (its recipe sets the rest; the Setup panel sets the "
                              "data, the network and the device).")
        self.episodes = QSpinBox()
        self.episodes.setRange(1, 100_000)
        self.episodes.setValue(600)
        self.episodes.setToolTip("Seeded test episodes per shot, the same for every algorithm.")
        self.run_button = QPushButton("Run leaderboard")
        self.run_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step or episode; the rows done so far are kept.")
        self.stop_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.hide()
        run_box = QGroupBox("Run a leaderboard (each algorithm with its recipe; 5-way 1-shot and 5-shot tests)")
        run_row = QHBoxLayout(run_box)
        for label, widget in (("Algorithms", self.algorithms), ("Steps", self.steps), ("Test episodes", self.episodes)):
            run_row.addWidget(QLabel(label))
            run_row.addWidget(widget, 2 if widget is self.algorithms else 0)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)

        self.table = QTableWidget(0, 0)
        self.table.setObjectName("leaderboard_table")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setSortingEnabled(True)
        self.table.model().layoutChanged.connect(lambda *_: self._redraw_chart())  # after every sort
        self.chart = LeaderboardChart()
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #505050;")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.chart)
        splitter.setSizes([300, 300])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(run_box)
        layout.addWidget(self.progress)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.notes)

    def _update_buttons(self) -> None:
        self.run_button.setEnabled(not self._running)
        self.stop_button.setEnabled(self._running)
        self.algorithms.setEnabled(not self._running)

    # ------------------------------------------------------------------ showing
    def leaderboards_folder(self) -> Path:
        return Path(self.window.store.root) / LEADERBOARDS_FOLDER

    def show_latest(self) -> bool:
        """Show the newest leaderboard under the runs folder; False when there is none."""
        path = latest_leaderboard(self.window.store.root)
        return path is not None and self.open_file(path)

    def choose_file(self) -> None:
        folder = self.leaderboards_folder()
        path, _ = QFileDialog.getOpenFileName(self, "Open leaderboard", str(folder if folder.is_dir() else Path.home()),
                                              "Leaderboard (*.json)")
        if path:
            self.open_file(Path(path))

    def open_file(self, path: Path) -> bool:
        """Load and show a leaderboard JSON file; a damaged one is reported (naming the file) and not shown."""
        try:
            board = load_leaderboard(path)
        except EngineError as error:
            self.window.show_error("Cannot open the leaderboard", str(error))
            return False
        self.show_board(board, Path(path))
        return True

    def show_board(self, board: Leaderboard, path: Path | None = None) -> None:
        self.board, self.path = board, path
        self.file_label.setText(f"{board.name} — {path}" if path is not None else board.name)
        self._fill_table(board)
        self._redraw_chart()
        self.notes.setText(self._notes(board))
        self.board_shown.emit(str(path or ""))

    def _fill_table(self, board: Leaderboard) -> None:
        n_way = board.settings.get("n_way", 5)
        headers = list(FIXED_COLUMNS) + [f"{n_way}-way {shot}-shot" for shot in board.shots] + list(TRAILING_COLUMNS)
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(board.rows))
        for r, row in enumerate(board.rows):
            cells = [_cell(row.title, row.title.lower(), f"{row.algorithm}: {row.paper}"),
                     _cell(row.kind + (" (transductive)" if row.transductive and row.kind != "transductive" else ""),
                           row.kind)]
            cells[0].setData(Qt.ItemDataRole.UserRole, row.algorithm)
            for shot in board.shots:
                result = row.result(shot)
                cells.append(_cell(format_shot_accuracy(result), row.accuracy(shot)))
            cells += [_cell(format_train_time(row.train_seconds), row.train_seconds, row.run_dir or ""),
                      _cell(format_peak_memory(row), row.peak_memory_bytes, row.memory_method),
                      _cell(row.status, row.status, row.message)]
            for c, cell in enumerate(cells):
                self.table.setItem(r, c, cell)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setSortingEnabled(True)
        if board.shots:
            self.table.sortByColumn(len(FIXED_COLUMNS), Qt.SortOrder.DescendingOrder)

    def rows_in_table_order(self) -> list[LeaderboardRow]:
        """The board's rows in the order the table shows them (after the user's sorting)."""
        if self.board is None:
            return []
        by_name = {row.algorithm: row for row in self.board.rows}
        names = [self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(self.table.rowCount())
                 if self.table.item(r, 0) is not None]
        return [by_name[name] for name in names if name in by_name]

    def _redraw_chart(self) -> None:
        if self.board is not None:
            self.chart.show_rows(self.rows_in_table_order(), self.board.shots)

    @staticmethod
    def _notes(board: Leaderboard) -> str:
        settings = board.settings
        steps = settings.get("common", {}).get("train", {}).get("steps", "?")
        failed = [f"{row.title}: {row.message}" for row in board.rows if row.status != "finished" and row.message]
        return (f"{steps} training steps per algorithm with its recipe, on {board.device}; every algorithm tested on "
                f"the same {settings.get('episodes')} seeded episodes (seed {settings.get('seed')}) per shot, "
                f"on {board.test_classes}. Accuracy ± 95% CI." + ("\n" + "\n".join(failed) if failed else ""))

    # ------------------------------------------------------------------ running
    def start(self) -> WorkerHandle | None:
        """Run a leaderboard of the chosen algorithms on the Setup panel's settings, in a worker thread."""
        if self._running:
            return None
        if self.window.is_training():
            self.window.show_error("Cannot run the leaderboard", "A training run is in progress: stop it or wait for "
                                   "it to end, so the leaderboard has the machine to itself.")
            return None
        base = self.window.current_config()
        if base is None:
            errors = self.window.config_errors()
            self.window.show_error("Cannot run the leaderboard", errors[0] if errors else "the settings are incomplete")
            return None
        base.train.steps = self.steps.value()
        try:
            spec = LeaderboardSpec(base=base, algorithms=parse_algorithms(self.algorithms.text()),
                                   episodes=self.episodes.value()).validate()
        except ConfigError as error:
            self.window.show_error("Cannot run the leaderboard", str(error))
            return None
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.leaderboards_folder() / f"{stamp}-leaderboard-{spec.base.train.steps}-steps.json"
        runs_root = Path(self.window.store.root)
        self._pending_path = path

        def job(progress: Any, should_stop: Any) -> Leaderboard:
            return run_leaderboard(spec, path, runs_root=runs_root, callback=_Forward(progress),
                                   should_stop=should_stop)

        handle = self._launch(job)
        self.progress.setFormat("loading data…")
        return handle

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat("training and testing: %p%")

    def _show(self, board: Leaderboard) -> None:
        self._finished()
        self.show_board(board, self._pending_path)
        runs_panel = getattr(self.window, "runs_panel", None)
        if runs_panel is not None:
            runs_panel.refresh()

    def _failed(self, message: str) -> None:
        self._finished()
        self.window.show_error("Leaderboard failed", message)
