"""Evaluation view: test accuracy with its 95% CI, per-class accuracy, a confusion matrix and the
misclassified query images, from :func:`engine.evaluation.evaluate` run in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QListView, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.api import RunRecord
from studio.datasets import load_data_cached
from studio.widgets.eval_charts import BarChart, ConfusionMatrixView
from studio.jobs.background import BackgroundJobMixin
from studio.widgets.episode_form import EpisodeShapeForm
from studio.widgets.run_picker import RunPicker, has_checkpoint
from studio.jobs.thread import WorkerHandle

GALLERY_SIZE = 60
GALLERY_THUMB = 72
GALLERY_TITLE = "Misclassified query images, most confident mistakes first"


@dataclass
class EvaluationOutput:
    """The engine's EvaluationResult plus what the view needs to show it."""

    result: Any
    run_dir: Path
    checkpoint_step: int
    thumbnails: list[QImage | None] = field(default_factory=list)
    checkpoint: Path | None = None   # the checkpoint file evaluated


def _thumbnail(path: Path | None) -> QImage | None:
    if path is None:
        return None
    image = QImage(str(path))
    if image.isNull():
        return None
    return image.scaled(GALLERY_THUMB, GALLERY_THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def evaluation_job(checkpoint: Path, device: str, episodes: int, n_way: int, n_shot: int, n_query: int,
                   seed: int = 0, *, run_dir: Path) -> Callable[[Any, Any], EvaluationOutput]:
    """The function :func:`run_in_worker` runs: load the checkpoint and its data, then evaluate."""

    def job(progress: Any, should_stop: Any) -> EvaluationOutput:
        from engine.api import evaluate
        from engine.api import load_algorithm

        algorithm, ckpt = load_algorithm(checkpoint, device=device)
        data = load_data_cached(ckpt.config.data, split=ckpt.split)
        result = evaluate(algorithm, data, part="test", episodes=episodes, n_way=n_way, n_shot=n_shot,
                          n_query=n_query, seed=seed, progress=progress, should_stop=should_stop)
        thumbs = [_thumbnail(m.path) for m in result.misclassified[:GALLERY_SIZE]]
        return EvaluationOutput(result, run_dir, ckpt.step, thumbs, checkpoint)

    return job


class EvaluationPanel(QWidget, BackgroundJobMixin):
    """Evaluate a run's checkpoint on its test classes and show the results."""

    error = Signal(str)
    evaluated = Signal(object)   # EvaluationOutput

    def __init__(self, device_getter: Callable[[], str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device_getter = device_getter or (lambda: "cpu")
        self.output: EvaluationOutput | None = None
        # every evaluation of this session, by (run folder, checkpoint file): what the view shows for a run
        self._results: dict[tuple[str, str], EvaluationOutput] = {}
        self._handle: WorkerHandle | None = None
        self._running = False

        self.run_picker = RunPicker(None, listed=False, object_name="evaluation_run", describe=_run_text,
                                    empty_text="No run selected. Train a model, or pick a run in the Runs table "
                                               "and press Evaluate.")
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.addItem("best (top validation accuracy)", "best")
        self.checkpoint_combo.addItem("last", "last")
        self.checkpoint_combo.currentIndexChanged.connect(lambda *_: self._show_stored())
        self.shape_form = EpisodeShapeForm(("episodes", "n_way", "n_shot", "n_query"))
        self.episodes_spin = self.shape_form.spin("episodes")
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setObjectName("evaluate_button")
        self.evaluate_button.setEnabled(False)
        self.evaluate_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.auto_evaluate = QCheckBox("Evaluate every finished run")
        self.auto_evaluate.setChecked(True)
        self.auto_evaluate.setToolTip("Evaluate every finished run on its test classes automatically.")
        self.progress = QProgressBar()
        self.progress.setObjectName("evaluation_progress")
        self.progress.setFormat("episode %v / %m")
        self.progress.hide()

        controls = QVBoxLayout()
        settings_row = QHBoxLayout()
        settings_row.addWidget(QLabel("Checkpoint"))
        settings_row.addWidget(self.checkpoint_combo)
        settings_row.addWidget(self.shape_form)
        settings_row.addStretch(1)
        action_row = QHBoxLayout()
        action_row.addWidget(self.evaluate_button)
        action_row.addWidget(self.cancel_button)
        action_row.addWidget(self.auto_evaluate)
        action_row.addWidget(self.progress, 1)
        controls.addLayout(settings_row)
        controls.addLayout(action_row)

        self.accuracy_label = QLabel("")
        self.accuracy_label.setObjectName("evaluation_accuracy")
        self.accuracy_label.setStyleSheet("font-size: 14pt; font-weight: bold;")
        self.accuracy_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_label = QLabel("")
        self.details_label.setStyleSheet("color: #606060;")

        self.confusion = ConfusionMatrixView()
        self.confusion.setMinimumSize(220, 200)
        self.bars = BarChart()
        self.class_table = QTableWidget(0, 3)
        self.class_table.setObjectName("per_class_table")
        self.class_table.setHorizontalHeaderLabels(["#", "Class", "Accuracy"])
        self.class_table.verticalHeader().hide()
        self.class_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSortingEnabled(True)
        self.gallery = QListWidget()
        self.gallery.setObjectName("misclassified_gallery")
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(GALLERY_THUMB, GALLERY_THUMB))
        self.gallery.setGridSize(QSize(GALLERY_THUMB + 70, GALLERY_THUMB + 48))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setWordWrap(True)
        self.gallery.setSpacing(4)
        self.gallery_label = QLabel(GALLERY_TITLE)
        self.gallery_label.setStyleSheet("font-weight: bold;")

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.bars)
        right.addWidget(self.class_table)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.confusion)
        top.addWidget(right)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        gallery_box = QWidget()
        gallery_layout = QVBoxLayout(gallery_box)
        gallery_layout.setContentsMargins(0, 0, 0, 0)
        gallery_layout.addWidget(self.gallery_label)
        gallery_layout.addWidget(self.gallery)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(gallery_box)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        self.gallery.setMinimumHeight(GALLERY_THUMB + 56)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.run_picker)
        layout.addLayout(controls)
        layout.addWidget(self.accuracy_label)
        layout.addWidget(self.details_label)
        layout.addWidget(body, 1)

    # -- choosing what to evaluate --------------------------------------------
    def set_run(self, record: RunRecord, task: Any = None) -> None:
        """Evaluate this run next; ``task`` (a TaskConfig) sets the episode shape."""
        self.run_picker.set_record(record)
        if task is not None:
            self.shape_form.load({"n_way": task.n_way, "n_shot": task.n_shot})
        self.evaluate_button.setEnabled(has_checkpoint(record) and not self.is_running())
        self._show_stored()

    def checkpoint_path(self) -> Path | None:
        """The chosen checkpoint ("best" or "last") of the run, else its other one, else None."""
        return self.run_picker.checkpoint(self.checkpoint_combo.currentData())

    # -- running ------------------------------------------------------------
    def start(self) -> WorkerHandle | None:
        path = self.checkpoint_path()
        if path is None or self.is_running():
            return None
        shape = self.shape_form.shape()
        job = evaluation_job(path, self.device_getter(), shape.episodes, shape.n_way, shape.n_shot, shape.n_query,
                             run_dir=self.run_picker.run_dir())
        return self._launch(job)

    def _update_buttons(self) -> None:
        self.evaluate_button.setEnabled(self.checkpoint_path() is not None and not self._running)
        self.cancel_button.setEnabled(self._running)

    def _failed(self, message: str) -> None:
        self._finished()
        self._clear_results("Evaluation failed", message)
        self.error.emit(message)

    # -- results ------------------------------------------------------------
    def _key(self, run_dir: Path | None, checkpoint: Path | None) -> tuple[str, str] | None:
        return None if run_dir is None or checkpoint is None else (str(run_dir), str(checkpoint))

    def _show_stored(self) -> None:
        """Show the chosen run's own evaluation of the chosen checkpoint, or say it has none yet (never
        the result of another run or checkpoint)."""
        if self.is_running():
            return  # the running evaluation's run stays chosen (set_run is not called meanwhile)
        key = self._key(self.run_picker.run_dir(), self.checkpoint_path())
        output = self._results.get(key) if key is not None else None
        if output is not None:
            self._display(output)
        elif key is None:
            self._clear_results("", "")
        else:
            self._clear_results("Not evaluated yet", "Press Evaluate to test this run's checkpoint on its test "
                                                     "classes.")

    def _clear_results(self, headline: str, details: str) -> None:
        self.output = None
        self.accuracy_label.setText(headline)
        self.details_label.setText(details)
        _clear_matrix(self.confusion)
        self.bars.set_values([])
        self._fill_class_table([], [])
        self._fill_gallery([], [])
        self.gallery_label.setText(GALLERY_TITLE)

    def _show(self, output: EvaluationOutput) -> None:
        self._finished()
        key = self._key(output.run_dir, Path(output.checkpoint)) if output.checkpoint else None
        if key is not None:
            self._results[key] = output
        if output.run_dir == self.run_picker.run_dir():
            self._display(output)
        self.evaluated.emit(output)

    def _display(self, output: EvaluationOutput) -> None:
        self.output = output
        result = output.result
        self.accuracy_label.setText(f"Test accuracy {result.accuracy:.2%} ± {result.ci95:.2%}")
        self.details_label.setText(
            f"95% confidence interval over {result.n_episodes} episodes, {result.n_way}-way {result.n_shot}-shot, "
            f"{len(result.class_names)} test classes; checkpoint at step {output.checkpoint_step:,}.")
        confusion = result.confusion.numpy() if hasattr(result.confusion, "numpy") else np.asarray(result.confusion)
        self.confusion.set_matrix(confusion, result.class_names)
        self.bars.set_values(result.per_class_accuracy)
        self._fill_class_table(result.class_names, result.per_class_accuracy)
        self._fill_gallery(result.misclassified[:GALLERY_SIZE], output.thumbnails)

    def _fill_class_table(self, names: list[str], accuracies: list[float]) -> None:
        self.class_table.setSortingEnabled(False)
        self.class_table.setRowCount(len(names))
        for row, (name, accuracy) in enumerate(zip(names, accuracies)):
            index = QTableWidgetItem()
            index.setData(Qt.ItemDataRole.DisplayRole, row)
            value = QTableWidgetItem()
            value.setData(Qt.ItemDataRole.DisplayRole, round(float(accuracy) * 100, 1))
            value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.class_table.setItem(row, 0, index)
            self.class_table.setItem(row, 1, QTableWidgetItem(name))
            self.class_table.setItem(row, 2, value)
        self.class_table.setSortingEnabled(True)
        self.class_table.sortItems(2, Qt.SortOrder.AscendingOrder)  # hardest classes first
        self.class_table.setHorizontalHeaderLabels(["#", "Class", "Accuracy (%)"])

    def _fill_gallery(self, mistakes: list[Any], thumbnails: list[QImage | None]) -> None:
        self.gallery.clear()
        for mistake, image in zip(mistakes, thumbnails):
            pixmap = QPixmap.fromImage(image) if image is not None else QPixmap(GALLERY_THUMB, GALLERY_THUMB)
            if image is None:
                pixmap.fill(QColor("#e0e0e0"))
            item = QListWidgetItem(QIcon(pixmap), f"{_short(mistake.true_class)} → "
                                                  f"{_short(mistake.predicted_class)}\n{mistake.confidence:.0%}")
            item.setToolTip(f"{mistake.path}\ntrue: {mistake.true_class}\npredicted: {mistake.predicted_class}\n"
                            f"confidence: {mistake.confidence:.1%} (episode {mistake.episode})")
            self.gallery.addItem(item)
        self.gallery_label.setText(f"{GALLERY_TITLE} ({len(mistakes)} shown)")


def _clear_matrix(view: ConfusionMatrixView) -> None:
    """Empty the confusion matrix view (its set_matrix needs at least one class)."""
    view.image.clear()
    view.matrix = np.zeros((0, 0))
    view.counts = np.zeros((0, 0))
    view.class_names = []
    view.hover_label.hide()
    for axis in ("bottom", "left"):
        view.plot.getAxis(axis).setTicks(None)


def _run_text(record: RunRecord) -> str:
    """The run to evaluate, as the view names it (and whether it has a checkpoint yet)."""
    return (f"Run <b>{record.name}</b> ({record.algorithm}, {record.status}, {record.steps_done:,} steps)"
            + ("" if has_checkpoint(record) else " — no checkpoint to evaluate yet"))


def _short(name: str, limit: int = 14) -> str:
    tail = name.split("/")[-1]
    return tail if len(tail) <= limit else tail[: limit - 1] + "…"
