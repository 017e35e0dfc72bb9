"""Run history: every run folder under the runs root, as a table.

The history is the folder on disk (:class:`engine.training.run_store.RunStore`),
so it survives restarts and includes CLI runs and the runs of races. A race's runs
are grouped under a row of their own ("Race: ..."), whatever the sort column: the
group sits where its first run would, and selecting the race's row selects its runs.
Select several runs to overlay their curves; open one to see its plots and config;
evaluate one (its best checkpoint, else its last); rename inline (or with F2); delete
with confirmation (a race's runs only with their race, as a whole).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QKeySequence, QPainter, QPen, QPixmap, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QInputDialog, QMessageBox, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.api import BUILTIN_GLYPHS, EngineError, RunRecord, RunStore, StepMetrics, delete_race, list_races
from studio.panels.training_panel import format_duration
from studio.rate_limit import RateLimited
from studio.widgets.elide import ElidedLabel

# what changes while a run trains comes first: in a narrow dock Steps stays visible
COLUMNS = ["Name", "Status", "Steps", "Best val. acc.", "Duration", "Algorithm", "Data set", "Device", "Created"]
NUMBER_COLUMNS = ("Steps", "Best val. acc.", "Duration")  # right-aligned, sorted by value
STATUS_COLOURS = {"running": "#1f77b4", "paused": "#7f7f7f", "finished": "#2ca02c", "stopped": "#b35c00", "failed": "#d62728",
                  "interrupted": "#8c564b"}
RUN_ROLE = Qt.ItemDataRole.UserRole + 1
RACE_ROLE = Qt.ItemDataRole.UserRole + 2  # the folder of the race whose row this is
DEFAULT_SORT = ("Created", Qt.SortOrder.DescendingOrder)
LIVE_UPDATE_S = 1.0  # a running run's row is updated at most this often (see RunsPanel.show_progress)


def dataset_label(root: str) -> str:
    return "built-in glyphs" if root == BUILTIN_GLYPHS else (Path(root).name or root)


def _best_cell(best: float | None) -> str:
    """The text of a Best val. acc. cell; Duration and Steps below (:func:`_sort_key` sorts them)."""
    return f"{best:.2%}" if best is not None else "–"


def _duration_cell(seconds: float) -> str:
    return format_duration(seconds)


def _steps_cell(done: int, total: int) -> str:
    return f"{done:,} / {total:,}"


def _sort_key(record: RunRecord, column: str) -> Any:
    """What a run is sorted by in ``column`` (the cells' numbers, else their text)."""
    numbers = {"Steps": record.steps_done, "Best val. acc.": -1.0 if record.best_val_accuracy is None else record.best_val_accuracy,
               "Duration": record.duration_s}
    if column in numbers:
        return numbers[column]
    texts = {"Name": record.name, "Status": record.status, "Algorithm": record.algorithm,
             "Data set": dataset_label(record.dataset), "Device": record.device, "Created": record.created}
    return texts.get(column, "").lower()


def grouped_runs(records: list[RunRecord], column: str, descending: bool) -> list[tuple[Path | None, list[RunRecord]]]:
    """The rows of the table in order: (None, [a run]) or (race folder, its runs), sorted by ``column``.

    A race's runs stay together: the group takes the place of its first run in the sorted order.
    """
    ordered = sorted(records, key=lambda r: (_sort_key(r, column), r.created, r.run_dir.name), reverse=descending)
    groups: list[tuple[Path | None, list[RunRecord]]] = []
    races: dict[Path, list[RunRecord]] = {}
    for record in ordered:
        if record.race_dir is None:
            groups.append((None, [record]))
        elif record.race_dir in races:
            races[record.race_dir].append(record)
        else:
            races[record.race_dir] = [record]
            groups.append((record.race_dir, races[record.race_dir]))
    return groups


def _member_icon() -> QIcon:
    """The "└" before the name of a race's run: it reads as a row under the race's row."""
    pixmap = QPixmap(16, 16)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setPen(QPen(QColor("#909090"), 1.2))
    painter.drawLine(QPoint(6, 1), QPoint(6, 9))
    painter.drawLine(QPoint(6, 9), QPoint(14, 9))
    painter.end()
    return QIcon(pixmap)


class RunsPanel(QWidget):
    """The run history table and its actions."""

    selection_changed = Signal(list)      # list[RunRecord]
    open_requested = Signal(object)       # RunRecord
    evaluate_requested = Signal(object)   # RunRecord
    resume_requested = Signal(object)     # RunRecord
    races_deleted = Signal()              # races were deleted (with their runs)
    error = Signal(str)

    def __init__(self, store: RunStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.records: list[RunRecord] = []
        self.races: dict[Path, Any] = {}   # race folder -> its RaceEntry (name, status, created)
        self._live_status: dict[str, str] = {}  # run folder -> what a running run is now ("paused")
        self.confirm: Callable[[str, str], bool] = self._confirm_dialog
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runs_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        # a name cut in its middle keeps its end, which tells runs apart ("ProtoNet vs…: MAML"); full in tooltips
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setSortingEnabled(False)  # sorted here, so that a race's runs stay under its row
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(COLUMNS.index(DEFAULT_SORT[0]), DEFAULT_SORT[1])
        header.sortIndicatorChanged.connect(lambda *_: self._fill_table())
        self.table.setColumnWidth(0, 240)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemChanged.connect(self._item_changed)
        self.table.doubleClicked.connect(self._double_clicked)

        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show the selected run's curves and load its settings into the forms.")
        self.evaluate_button = QPushButton("Evaluate…")
        self.evaluate_button.setToolTip("Evaluate the selected run's best checkpoint (else its last) on its test "
                                        "classes (Ctrl+E).")
        self.resume_button = QPushButton("Continue")
        self.resume_button.setToolTip("Continue a stopped or interrupted run from its last checkpoint.")
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Delete…")
        self.refresh_button = QPushButton("Refresh")
        self.open_button.clicked.connect(lambda: self._emit_single(self.open_requested))
        self.evaluate_button.clicked.connect(lambda: self._emit_single(self.evaluate_requested))
        self.resume_button.clicked.connect(lambda: self._emit_single(self.resume_requested))
        self.rename_button.clicked.connect(self.rename_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.refresh_button.clicked.connect(self.refresh)
        QShortcut(QKeySequence(Qt.Key.Key_Delete), self.table, self.delete_selected,
                  context=Qt.ShortcutContext.WidgetShortcut)
        self.hint = ElidedLabel("Select several runs (or a race) to overlay their curves.",  # cut, never run off
                                mode=Qt.TextElideMode.ElideRight, min_chars=0)
        self.hint.setStyleSheet("color: #808080;")

        buttons = QHBoxLayout()
        for button in (self.open_button, self.evaluate_button, self.resume_button, self.rename_button,
                       self.delete_button):
            buttons.addWidget(button)
        buttons.addWidget(self.hint, 1)
        buttons.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        self._filling = False
        self._live: tuple[str | Path, StepMetrics | None, float | None] | None = None  # run, step, best
        self.live_updates = RateLimited(self._show_live_progress, LIVE_UPDATE_S, self)
        self.refresh()

    # -- table --------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the run folders and races (keeps the selection); what show_progress held back is dropped."""
        self._live = None
        self.live_updates.cancel()
        self.records = self.store.list_runs()
        self.races = {entry.folder: entry for entry in list_races(self.store.root)}
        self._fill_table()

    def _fill_table(self) -> None:
        """Fill the rows from ``self.records`` in the header's sort order, keeping the selection."""
        selected = {str(r.run_dir) for r in self.selected_records()}
        selected_races = self._selected_races()
        header = self.table.horizontalHeader()
        groups = grouped_runs(self.records, COLUMNS[header.sortIndicatorSection()],
                              header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder)
        self._filling = True
        self.table.clearSelection()
        self.table.setRowCount(sum(len(records) + (race is not None) for race, records in groups))
        row = 0
        for race, records in groups:
            if race is not None:
                self._fill_race_row(row, race, records)
                row += 1
            for record in records:
                self._fill_row(row, record)
                row += 1
        for col in range(1, len(COLUMNS)):  # once per refresh, not once per cell
            self.table.resizeColumnToContents(col)
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item.data(RUN_ROLE) in selected or item.data(RACE_ROLE) in selected_races:
                self._select_row(row)
        self._filling = False
        self._update_buttons()

    def _select_row(self, row: int) -> None:
        model = self.table.selectionModel()
        index = self.table.model().index(row, 0)
        model.select(index, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)

    def _fill_row(self, row: int, record: RunRecord) -> None:
        texts = {
            "Name": self._shown_name(record),
            "Status": record.status,
            "Steps": _steps_cell(record.steps_done, record.total_steps),
            "Best val. acc.": _best_cell(record.best_val_accuracy),
            "Duration": _duration_cell(record.duration_s),
            "Algorithm": record.algorithm,
            "Data set": dataset_label(record.dataset),
            "Device": record.device,
            "Created": record.created.replace("T", " ")[:19],
        }
        cells = {name: QTableWidgetItem(text) for name, text in texts.items()}
        status = cells["Status"]
        self._set_status_text(status, self._shown_status(record))
        cells["Data set"].setToolTip(record.dataset)
        if record.message:
            status.setToolTip(record.message)
        for name, cell in cells.items():
            if name != "Name":
                cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
            cell.setData(RUN_ROLE, str(record.run_dir))
            if name in NUMBER_COLUMNS:
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, COLUMNS.index(name), cell)
        cells["Name"].setToolTip(f"{record.name}\n{record.run_dir}\nDouble-click to rename.")  # the name in full
        if record.race_dir is not None:
            cells["Name"].setIcon(_member_icon())
            cells["Name"].setToolTip(f"{record.name}\n{record.run_dir}\nA run of the race "
                                     f"{self._race_name(record.race_dir)}. Double-click to rename.")

    def _fill_race_row(self, row: int, race: Path, records: list[RunRecord]) -> None:
        """The row of a race above its runs: its name, status, algorithms and when it started."""
        entry = self.races.get(race)
        best = max((r.best_val_accuracy for r in records if r.best_val_accuracy is not None), default=None)
        texts = {"Name": f"Race: {self._race_name(race)}", "Status": entry.status if entry else "",
                 "Best val. acc.": _best_cell(best), "Algorithm": f"{len(records)} algorithms",
                 "Data set": dataset_label(records[0].dataset), "Device": records[0].device,
                 "Created": (entry.created if entry and entry.created else records[0].created).replace("T", " ")[:19]}
        bold = QFont(self.table.font())
        bold.setBold(True)
        for column, name in enumerate(COLUMNS):
            cell = QTableWidgetItem(texts.get(name, ""))
            cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
            cell.setData(RACE_ROLE, str(race))
            if name in NUMBER_COLUMNS:
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, column, cell)
        name_cell = self.table.item(row, 0)
        name_cell.setFont(bold)
        name_cell.setToolTip(f"{race}\nSelect this row to select the race's {len(records)} runs; the Race view "
                             "opens the race with its curves and table.")
        self._set_status_text(self.table.item(row, COLUMNS.index("Status")), texts["Status"])

    def _shown_name(self, record: RunRecord) -> str:
        """A run's name in the Name column: a race's run without its race's name in front (its row says
        it: "ProtoNet" under "Race: ProtoNet vs MAML", not "ProtoNet vs MAML: ProtoNet" cut to fit)."""
        if record.race_dir is not None:
            prefix = f"{self._race_name(record.race_dir)}: "
            if record.name.startswith(prefix) and len(record.name) > len(prefix):
                return record.name[len(prefix):]
        return record.name

    def _race_name(self, race: Path) -> str:
        """A race as its row names it: the name it was given, else the engine's default name of its
        algorithms ("ProtoNet vs MAML", read by :func:`engine.api.list_races`)."""
        entry = self.races.get(race)
        return entry.name if entry is not None else race.name

    def _shown_status(self, record: RunRecord) -> str:
        """run.json's status, or what the window knows better of a run it trains ("paused")."""
        if record.status == "running":
            return self._live_status.get(str(record.run_dir), record.status)
        return record.status

    @staticmethod
    def _set_status_text(item: QTableWidgetItem, status: str) -> None:
        item.setText(status)
        item.setForeground(QColor(STATUS_COLOURS.get(status, "#303030")))

    def set_live_status(self, run_dir: str | Path, status: str | None) -> None:
        """Show a running run as ``status`` (e.g. "paused"; None: as its run.json says), now and after refreshes."""
        if status is None:
            self._live_status.pop(str(run_dir), None)
        else:
            self._live_status[str(run_dir)] = status
        row, record = self.row_of(run_dir), self.record_for(run_dir)
        if row < 0 or record is None:
            return
        self._filling = True
        try:
            self._set_status_text(self.table.item(row, COLUMNS.index("Status")), self._shown_status(record))
        finally:
            self._filling = False

    def show_progress(self, run_dir: str | Path, *, metrics: StepMetrics | None = None,
                      best_val_accuracy: float | None = None) -> None:
        """Show a running run's latest step (``metrics``) or a new best validation accuracy in its row.

        The table otherwise shows run.json as of the last refresh (steps 0, duration 0 s for a run
        that just started). Steps and duration at most once a second (cell updates repaint the
        table, GUI time the training run shares; the rows are re-sorted at the next refresh); a new
        best at once. Progress held back is shown when the second is over, so a paused run's row
        ends on its last step.
        """
        same_run = self._live is not None and self._live[0] == run_dir
        _, last_metrics, last_best = self._live if same_run else (run_dir, None, None)
        self._live = (run_dir, metrics or last_metrics, last_best if best_val_accuracy is None else best_val_accuracy)
        self.live_updates.request(at_once=best_val_accuracy is not None)

    def _show_live_progress(self) -> None:
        row = self.row_of(self._live[0]) if self._live is not None else -1
        if row < 0:
            return
        _, metrics, best = self._live
        cells = {}
        if best is not None:  # else the record's value stays
            cells["Best val. acc."] = _best_cell(best)
        if metrics is not None:
            cells["Duration"] = _duration_cell(metrics.elapsed_s)
            cells["Steps"] = _steps_cell(metrics.step, metrics.total_steps)
        self._filling = True
        try:
            for name, text in cells.items():
                column = COLUMNS.index(name)
                item = self.table.item(row, column)
                longer = len(text) > len(item.text())
                item.setText(text)
                if longer:  # "0 / 300" -> "210 / 300": rarely, and never cut off
                    self.table.resizeColumnToContents(column)
        finally:
            self._filling = False

    def record_for(self, run_dir: str | Path) -> RunRecord | None:
        for record in self.records:
            if str(record.run_dir) == str(run_dir):
                return record
        return None

    def row_of(self, run_dir: str | Path) -> int:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(RUN_ROLE) == str(run_dir):
                return row
        return -1

    def selected_records(self) -> list[RunRecord]:
        """The selected runs, in table order; a selected race row stands for all of its runs."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        out: dict[str, RunRecord] = {}
        for row in rows:
            item = self.table.item(row, 0)
            race = item.data(RACE_ROLE) if item is not None else None
            members = [r for r in self.records if str(r.race_dir) == race] if race is not None else \
                [r for r in [self.record_for(item.data(RUN_ROLE))] if r is not None] if item is not None else []
            out.update((str(r.run_dir), r) for r in members)
        return list(out.values())

    def _selected_races(self) -> set[str]:
        """The folders of the races whose own rows are selected."""
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        items = [self.table.item(row, 0) for row in rows]
        return {item.data(RACE_ROLE) for item in items if item is not None and item.data(RACE_ROLE) is not None}

    def select_runs(self, run_dirs: list[str | Path], *, notify: bool = True) -> None:
        """Select these runs' rows; ``notify=False``: only show them selected (no ``selection_changed``: the
        caller already shows the run, and the window would overlay it on its own curves)."""
        filling, self._filling = self._filling, self._filling or not notify
        try:
            self.table.clearSelection()
            for run_dir in run_dirs:
                row = self.row_of(run_dir)
                if row >= 0:
                    self._select_row(row)
        finally:
            self._filling = filling
        if not notify:
            self._update_buttons()

    def _selection_changed(self) -> None:
        if self._filling:
            return
        self._update_buttons()
        self.selection_changed.emit(self.selected_records())

    def _update_buttons(self) -> None:
        records = self.selected_records()
        single = len(records) == 1
        self.open_button.setEnabled(single)
        self.evaluate_button.setEnabled(single and records[0].checkpoint() is not None)  # best, else last
        self.resume_button.setEnabled(single and records[0].status in ("stopped", "interrupted")
                                      and records[0].last_checkpoint.is_file() if single else False)
        self.rename_button.setEnabled(single)
        self.delete_button.setEnabled(bool(records) and all(r.status != "running" for r in records))

    def _emit_single(self, signal: Any) -> None:
        records = self.selected_records()
        if len(records) == 1:
            signal.emit(records[0])

    def _double_clicked(self, index: Any) -> None:
        if index.column() != 0:
            record = self.record_for(self.table.item(index.row(), 0).data(RUN_ROLE))
            if record is not None:
                self.open_requested.emit(record)

    # -- rename / delete ----------------------------------------------------
    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 0:
            return
        record = self.record_for(item.data(RUN_ROLE))
        if record is None or item.text() == record.name:
            return
        self.rename(record, item.text())

    def rename(self, record: RunRecord, name: str) -> bool:
        try:
            self.store.rename(record.run_dir, name)
        except EngineError as error:
            self.error.emit(str(error))
            self.refresh()
            return False
        self.refresh()
        return True

    def rename_selected(self) -> None:
        records = self.selected_records()
        if len(records) != 1:
            return
        name, ok = QInputDialog.getText(self, "Rename run", "New name:", text=records[0].name)
        if ok:
            self.rename(records[0], name)

    def delete_selected(self) -> None:
        """Delete the selected runs after confirmation; a race's run is deleted with its race, as a whole."""
        records = [r for r in self.selected_records() if r.status != "running"]
        if not records:
            return
        solo = [r for r in records if r.race_dir is None]
        races = list(dict.fromkeys(r.race_dir for r in records if r.race_dir is not None))
        if not self.confirm("Delete runs", self._delete_question(solo, races)):
            return
        for record in solo:
            try:
                self.store.delete(record.run_dir)
            except (EngineError, OSError) as error:
                self.error.emit(str(error))
        for race in races:
            try:
                delete_race(self.store.root, race)
            except (EngineError, OSError) as error:
                self.error.emit(str(error))
        self.refresh()
        if races:
            self.races_deleted.emit()
        self.selection_changed.emit(self.selected_records())

    def _delete_question(self, solo: list[RunRecord], races: list[Path]) -> str:
        parts = []
        if solo:
            names = "\n".join(f"  • {r.name}" for r in solo[:10]) + ("\n  …" if len(solo) > 10 else "")
            parts.append(f"Delete {len(solo)} run(s) and their checkpoints from disk?\n\n{names}")
        if races:
            counts = {race: sum(r.race_dir == race for r in self.records) for race in races}
            names = "\n".join(f"  • Race: {self._race_name(race)} ({counts[race]} runs)" for race in races)
            parts.append(f"A race's runs are deleted with their race, as a whole. Delete {len(races)} race(s), "
                         f"with their runs, curves and table, from disk?\n\n{names}")
        return "\n\n".join(parts)

    def _confirm_dialog(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes
                                      | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes
