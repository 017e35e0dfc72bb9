"""Evaluation view: test accuracy with its 95% CI, per-class accuracy, a confusion matrix and the
misclassified query images, from :func:`engine.evaluation.evaluate` run in a worker thread.

Each evaluation is stored in the run folder by the engine (:mod:`engine.training.evaluation_store`,
one file per checkpoint), so the view shows a run's evaluation after a restart too. It shows the
chosen run's stored evaluation only while it is current: of the checkpoint file as it is now, with
the episode shape in the form (choosing a run or a checkpoint sets the form to the stored shape);
otherwise it says "Not evaluated yet" and why. Never another run's or another checkpoint's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetrics, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QListView, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.api import (EngineError, EpisodeShape, RunRecord, StoredEvaluation, checkpoint_stamp, evaluation_file,
                        load_evaluation, save_evaluation)
from studio.datasets import load_data_cached
from studio.widgets.elide import WrappedLabel
from studio.widgets.eval_charts import BarChart, ClassNameDelegate, ConfusionMatrixView, elide_class_name
from studio.jobs.background import BackgroundJobMixin
from studio.widgets.episode_form import EpisodeShapeForm
from studio.widgets.run_picker import RunPicker, has_checkpoint
from studio.jobs.thread import WorkerHandle

GALLERY_SIZE = 60
GALLERY_THUMB = 72
GALLERY_CELL_WIDTH = GALLERY_THUMB + 78  # an item of the gallery: its thumbnail over a caption of three lines
CAPTION_MARGIN = 8                      # pixels of the cell's width the list view keeps around a caption
GALLERY_TITLE = "Misclassified query images, most confident mistakes first"
EVALUATION_SEED = 0  # the seed of the view's test episodes (a stored evaluation with another one is not shown)
NOT_EVALUATED = "Not evaluated yet"


@dataclass
class EvaluationOutput:
    """The engine's EvaluationResult plus what the view needs to show it."""

    result: Any
    run_dir: Path
    checkpoint_step: int
    thumbnails: list[QImage | None] = field(default_factory=list)
    checkpoint: Path | None = None   # the checkpoint file evaluated
    stored: Path | None = None       # where the engine stored it in the run folder (None: not stored)
    store_error: str = ""            # why it could not be stored
    created: str = ""                # when it was evaluated (a stored evaluation's time)
    evaluation: StoredEvaluation | None = None  # the stored evaluation it was read from


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

        stamp = checkpoint_stamp(checkpoint)  # the version evaluated, even if the file is rewritten meanwhile
        algorithm, ckpt = load_algorithm(checkpoint, device=device)
        data = load_data_cached(ckpt.config.data, split=ckpt.split)
        result = evaluate(algorithm, data, part="test", episodes=episodes, n_way=n_way, n_shot=n_shot,
                          n_query=n_query, seed=seed, progress=progress, should_stop=should_stop)
        thumbs = [_thumbnail(m.path) for m in result.misclassified[:GALLERY_SIZE]]
        output = EvaluationOutput(result, run_dir, ckpt.step, thumbs, checkpoint)
        if should_stop():
            return output  # a cancelled evaluation is shown, never stored as the checkpoint's
        try:
            output.stored = save_evaluation(run_dir, checkpoint, ckpt.step, result, episodes=episodes,
                                            n_query=n_query, seed=seed, device=device, stamp=stamp)
        except (EngineError, OSError) as error:
            output.store_error = str(error)
        return output

    return job


class EvaluationPanel(QWidget, BackgroundJobMixin):
    """Evaluate a run's checkpoint on its test classes and show the results."""

    error = Signal(str)
    evaluated = Signal(object)   # EvaluationOutput

    def __init__(self, device_getter: Callable[[], str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device_getter = device_getter or (lambda: "cpu")
        self.output: EvaluationOutput | None = None
        # stored evaluations already read (with their thumbnails), by (file, its modification time)
        self._read: dict[tuple[str, int], EvaluationOutput] = {}
        self._following_shape = False
        self._handle: WorkerHandle | None = None
        self._running = False

        self.run_picker = RunPicker(None, listed=False, object_name="evaluation_run", describe=_run_text,
                                    empty_text="No run selected. Train a model, or pick a run in the Runs table "
                                               "and press Evaluate.")
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.addItem("best (top validation accuracy)", "best")
        self.checkpoint_combo.addItem("last", "last")
        self.checkpoint_combo.currentIndexChanged.connect(lambda *_: self._show_stored(follow_shape=True))
        self.shape_form = EpisodeShapeForm(("episodes", "n_way", "n_shot", "n_query"))
        self.shape_form.changed.connect(self._shape_changed)
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

        controls = QVBoxLayout()  # two short rows, so the page fits beside the Setup dock at 1366x768
        settings_row = QHBoxLayout()
        settings_row.addWidget(self.shape_form)
        settings_row.addStretch(1)
        action_row = QHBoxLayout()
        action_row.addWidget(QLabel("Checkpoint"))
        action_row.addWidget(self.checkpoint_combo)
        action_row.addWidget(self.evaluate_button)
        action_row.addWidget(self.cancel_button)
        action_row.addWidget(self.auto_evaluate)
        action_row.addWidget(self.progress, 1)
        action_row.addStretch(0)  # the buttons keep their size while the progress bar is hidden
        controls.addLayout(settings_row)
        controls.addLayout(action_row)

        self.accuracy_label = QLabel("")
        self.accuracy_label.setObjectName("evaluation_accuracy")
        self.accuracy_label.setStyleSheet("font-size: 14pt; font-weight: bold;")
        self.accuracy_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_label = WrappedLabel("")  # wraps (never widens the page): errors can be long
        self.details_label.setStyleSheet("color: #606060;")

        self.confusion = ConfusionMatrixView()
        self.confusion.setMinimumSize(200, 140)  # the plots shrink on a short screen; the page never cuts
        self.bars = BarChart()
        self.class_table = QTableWidget(0, 3)
        self.class_table.setObjectName("per_class_table")
        self.class_table.setHorizontalHeaderLabels(["#", "Class", "Accuracy"])
        self.class_table.setItemDelegateForColumn(1, ClassNameDelegate(self.class_table))
        self.class_table.verticalHeader().hide()
        self.class_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSortingEnabled(True)
        self.gallery = QListWidget()
        self.gallery.setObjectName("misclassified_gallery")
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(GALLERY_THUMB, GALLERY_THUMB))
        self.gallery.setGridSize(QSize(GALLERY_CELL_WIDTH, GALLERY_THUMB + 3 * self.fontMetrics().lineSpacing() + 16))
        self.gallery.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setWordWrap(False)  # the captions are cut to the cell by caption(), never wrapped
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
        # one whole row of thumbnails with their captions, then it scrolls (the plots shrink for it)
        self.gallery.setMinimumHeight(self.gallery.gridSize().height() + 2 * self.gallery.frameWidth())

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
            self._follow_shape({"n_way": task.n_way, "n_shot": task.n_shot})  # shown once, below
        self.evaluate_button.setEnabled(has_checkpoint(record) and not self.is_running())
        self._show_stored(follow_shape=True)

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
                             EVALUATION_SEED, run_dir=self.run_picker.run_dir())
        return self._launch(job)

    def _update_buttons(self) -> None:
        self.evaluate_button.setEnabled(self.checkpoint_path() is not None and not self._running)
        self.cancel_button.setEnabled(self._running)

    def _failed(self, message: str) -> None:
        self._finished()
        self._clear_results("Evaluation failed", message)
        self.error.emit(message)

    # -- results ------------------------------------------------------------
    def _shape_changed(self) -> None:
        if not self._following_shape:
            self._show_stored()

    def _show_stored(self, follow_shape: bool = False) -> None:
        """Show the chosen run's stored evaluation of the chosen checkpoint while it is current (the
        checkpoint file as evaluated, the form's episode shape), else say why it has none; never the result
        of another run or checkpoint. ``follow_shape``: a run or checkpoint was just chosen, so the form
        first takes the shape of its stored evaluation."""
        if self.is_running():
            return  # the running evaluation's run stays chosen (set_run is not called meanwhile)
        run_dir, checkpoint = self.run_picker.run_dir(), self.checkpoint_path()
        if run_dir is None or checkpoint is None:
            self._clear_results("", "")
            return
        try:
            stored = self._read_stored(run_dir, checkpoint)
        except EngineError as error:
            self._clear_results(NOT_EVALUATED, f"Its stored evaluation cannot be read: {error}")
            return
        if stored is None:
            self._clear_results(NOT_EVALUATED, "Press Evaluate to test this run's checkpoint on its test classes.")
            return
        output, evaluation = stored
        if not evaluation.is_of(checkpoint) or evaluation.seed != EVALUATION_SEED:
            self._clear_results(NOT_EVALUATED, f"The stored evaluation ({evaluation.describe()}) is of another "
                                               f"version of {checkpoint.name}; press Evaluate to test it as it is now.")
            return
        if follow_shape:
            self._follow_shape(evaluation.shape)
        if evaluation.shape != self.shape_form.shape():
            self._clear_results(f"{NOT_EVALUATED} with this episode shape",
                                f"Stored: {evaluation.describe()}. Press Evaluate to test this shape.")
            return
        self._display(output)

    def _read_stored(self, run_dir: Path, checkpoint: Path) -> tuple[EvaluationOutput, StoredEvaluation] | None:
        """The stored evaluation of ``checkpoint`` as the view shows it (read once per version of the file)."""
        path = evaluation_file(run_dir, checkpoint)
        try:
            key = (str(path), path.stat().st_mtime_ns)
        except OSError:
            return None
        output = self._read.get(key)
        if output is None or output.evaluation is None:
            evaluation = load_evaluation(run_dir, checkpoint)
            if evaluation is None:
                return None
            thumbnails = output.thumbnails if output is not None else \
                [_thumbnail(m.path) for m in evaluation.result.misclassified[:GALLERY_SIZE]]
            output = EvaluationOutput(evaluation.result, run_dir, evaluation.checkpoint_step, thumbnails, checkpoint,
                                      path, created=evaluation.created)
            output.evaluation = evaluation
            self._read[key] = output
        return output, output.evaluation

    def _follow_shape(self, shape: EpisodeShape | dict[str, Any]) -> None:
        self._following_shape = True
        try:
            self.shape_form.load(shape)
        finally:
            self._following_shape = False

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
        if output.stored is not None:  # shown as the stored evaluation (its thumbnails are reused)
            try:
                self._read[(str(output.stored), output.stored.stat().st_mtime_ns)] = output
            except OSError:
                pass
            self._show_stored()
        elif output.run_dir == self.run_picker.run_dir():
            self._display(output)
            self.details_label.setText(self.details_label.text() + (
                f" Not stored: {output.store_error}" if output.store_error else " Cancelled: not stored."))
        self.evaluated.emit(output)

    def _display(self, output: EvaluationOutput) -> None:
        self.output = output
        result = output.result
        self.accuracy_label.setText(f"Test accuracy {result.accuracy:.2%} ± {result.ci95:.2%}")
        evaluated = f"; evaluated {output.created.replace('T', ' ')[:16]}" if output.created else ""
        self.details_label.setText(
            f"95% confidence interval over {result.n_episodes} episodes, {result.n_way}-way {result.n_shot}-shot, "
            f"{len(result.class_names)} test classes; checkpoint at step {output.checkpoint_step:,}{evaluated}.")
        confusion = result.confusion.numpy() if hasattr(result.confusion, "numpy") else np.asarray(result.confusion)
        self.confusion.set_matrix(confusion, result.class_names)
        self.bars.set_values(result.per_class_accuracy, result.class_names)
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
            name_item = QTableWidgetItem(name)  # drawn elided to the column (ClassNameDelegate), in full here:
            name_item.setToolTip(name)
            self.class_table.setItem(row, 1, name_item)
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
            item = QListWidgetItem(QIcon(pixmap), self.caption(mistake))
            item.setToolTip(f"{mistake.path}\ntrue: {mistake.true_class}\npredicted: {mistake.predicted_class}\n"
                            f"confidence: {mistake.confidence:.1%} (episode {mistake.episode})")
            self.gallery.addItem(item)
        self.gallery_label.setText(f"{GALLERY_TITLE} ({len(mistakes)} shown)")

    def caption(self, mistake: Any) -> str:
        """A gallery item's text, each line cut to the cell (:func:`mistake_caption`)."""
        return mistake_caption(mistake, self.gallery.fontMetrics(), self.gallery.gridSize().width() - CAPTION_MARGIN)


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


def mistake_caption(mistake: Any, metrics: QFontMetrics, width: int) -> str:
    """Three lines, each fitting ``width`` pixels: the true class, "→" the predicted class, the confidence.
    A nested data set's class keeps its group ("Bengali/character12", group elided first: see
    :func:`elide_class_name`), so two classes of the same name in two alphabets are told apart."""
    arrow = "→ "
    return (f"{elide_class_name(mistake.true_class, metrics, width)}\n"
            f"{arrow}{elide_class_name(mistake.predicted_class, metrics, width - metrics.horizontalAdvance(arrow))}\n"
            f"{mistake.confidence:.0%} sure")
