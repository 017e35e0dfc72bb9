"""Inner-loop scrubber: watch one test episode being learned, step by step.

For a run of an algorithm with an inner loop (MAML, first-order MAML, ANIL, Reptile,
Baseline, Baseline++), the panel draws one seeded test episode of the run's own data,
runs the algorithm's own inner loop for N steps in a worker thread
(:func:`engine.scrubbing.adaptation_trajectory`) and shows the query accuracy and loss
after every step. A slider (or dragging the marker line on the plot) scrubs the step;
the query images below show what the model predicts at that step. Everything is
computed once per run of the loop, so scrubbing never calls the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPixmap, QShowEvent, QStaticText
from PySide6.QtWidgets import (QComboBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QSlider, QSplitter, QToolTip, QVBoxLayout,
                               QWidget)

from engine.config import ALGORITHM_CONFIGS
from engine.errors import EngineError
from engine.scrubbing import (AdaptationTrajectory, TestEpisode, adaptation_trajectory, check_inner_loop,
                              has_inner_loop, inner_loop_algorithms, inner_loop_steps, sample_test_episode)
from engine.training.run_store import RunRecord
from studio.datasets import load_data_cached
from studio.panels.adapt_cards import pixels_to_qimage
from studio.plots import PALETTE
from studio.panels.background_job import BackgroundJobMixin
from studio.panels.widgets import spin_box
from studio.worker import WorkerHandle

THUMB = 48              # query thumbnails (28 px glyphs scaled up)
SUPPORT_THUMB = 40
TILE_WIDTH = 100
TILE_HEIGHT = THUMB + 38
TILE_GAP = 5
GRID_HEADER = 104       # width of the class names left of the query rows
MAX_STEPS = 500
MIN_DEFAULT_STEPS = 10
DEFAULT_QUERIES = 3
CLASSES_PER_SUPPORT_ROW = 5
RIGHT, WRONG = "#2e7d32", "#c62828"
ACCURACY_COLOUR, LOSS_COLOUR, SUPPORT_COLOUR = "#1f77b4", "#d62728", "#9a9a9a"


def short_class_name(name: str, limit: int = 16) -> str:
    """A compact label: ``"Alphabet_01_Zukiish/character07"`` -> ``"Zukiish 07"``; other names are elided."""
    if "/" in name:
        group, leaf = name.rsplit("/", 1)
        digits = "".join(ch for ch in leaf if ch.isdigit())
        name = f"{group.split('/')[-1].split('_')[-1]} {digits or leaf}"
    return name if len(name) <= limit else name[: limit - 1] + "…"


def default_steps(test_steps: int) -> int:
    """N shown by default: twice the algorithm's adaptation steps, at least 10, at most MAX_STEPS."""
    return int(min(MAX_STEPS, max(MIN_DEFAULT_STEPS, 2 * test_steps)))


def _thumbnail(pixels: Any, size: int = THUMB) -> QPixmap:
    """uint8 [C, H, W] -> a square pixmap (an integer enlargement keeps its pixels sharp)."""
    image = pixels_to_qimage(pixels)
    mode = (Qt.TransformationMode.FastTransformation if size % image.width() == 0
            else Qt.TransformationMode.SmoothTransformation)
    return QPixmap.fromImage(image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))


# -- the worker job ---------------------------------------------------------------------------------
@dataclass
class ScrubOutput:
    """A finished (or cancelled) run of the inner loop, ready to show."""

    run_name: str
    checkpoint: Path
    checkpoint_step: int
    algorithm_title: str
    episode: TestEpisode
    trajectory: AdaptationTrajectory


def scrub_job(record: RunRecord, checkpoint: Path, device: str, *, n_way: int, n_shot: int, n_query: int,
              seed: int, steps: int) -> Callable[[Any, Any], ScrubOutput]:
    """The function :func:`run_in_worker` runs: load the checkpoint and its data, draw the episode, run the loop."""

    def job(progress: Any, should_stop: Any) -> ScrubOutput:
        from engine.training.checkpoint import load_algorithm

        algorithm, ckpt = load_algorithm(checkpoint, device=device)
        check_inner_loop(algorithm)
        data = load_data_cached(ckpt.config.data, split=ckpt.split)
        episode = sample_test_episode(ckpt, n_way=n_way, n_shot=n_shot, n_query=n_query, seed=seed, data=data)
        task = episode.task
        trajectory = adaptation_trajectory(algorithm, task.support_x, task.support_y, task.query_x, task.query_y,
                                           steps=steps, progress=progress, should_stop=should_stop)
        return ScrubOutput(record.name, checkpoint, ckpt.step, ckpt.config.algorithm.title, episode, trajectory)

    return job


# -- widgets ----------------------------------------------------------------------------------------
class QueryTile:
    """One query image and the prediction shown for it at the current step (drawn by :class:`QueryGrid`)."""

    def __init__(self, pixmap: QPixmap, true_label: int, true_name: str, rect: QRect) -> None:
        self.pixmap = pixmap
        self.true_label = true_label
        self.true_name = true_name
        self.rect = rect
        self.predicted = -1
        self.predicted_name = ""
        self.probability = 0.0
        self.correct = False
        self.probabilities: np.ndarray | None = None   # [n_way] at the current step, for the tooltip

    def text(self) -> str:
        """What the tile shows under the image: mark, predicted class, probability."""
        return f"{'✓' if self.correct else '✗'} {self.predicted_name} {self.probability:.0%}"


class QueryGrid(QWidget):
    """The query images as tiles, one row per true class, painted in one pass.

    One widget instead of one per image, with the texts laid out once (``QStaticText``), so that
    moving the slider repaints quickly even with many query images.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.tiles: list[QueryTile] = []
        self.names: list[str] = []
        self.colours: list[QColor] = []
        self._headers: list[tuple[QRect, int]] = []
        self._bold = QFont(self.font())
        self._bold.setBold(True)
        self._name_texts: list[QStaticText] = []
        self._header_texts: list[QStaticText] = []
        self._percent_texts = [QStaticText(f"{p}%") for p in range(101)]
        self._marks = {True: QStaticText("✓"), False: QStaticText("✗")}
        self._borders = {True: QPen(QColor(RIGHT), 2), False: QPen(QColor(WRONG), 2)}
        self._white, self._track, self._grey = QColor("#ffffff"), QColor("#e6e6e6"), QColor("#404040")
        self._size = QSize(0, 0)

    def set_episode(self, episode: TestEpisode, names: list[str], colours: list[str]) -> None:
        """Lay out the tiles of ``episode``'s query images (rows: true classes, in label order)."""
        self.names, self.colours = names, [QColor(c) for c in colours]
        metrics_bold = QFontMetrics(self._bold)
        metrics = QFontMetrics(self.font())
        self._name_texts = [QStaticText(metrics_bold.elidedText(n, Qt.TextElideMode.ElideRight, TILE_WIDTH - 26))
                            for n in names]
        self._header_texts = [QStaticText(metrics.elidedText(n, Qt.TextElideMode.ElideRight, GRID_HEADER - 22))
                              for n in names]
        for text in self._name_texts + self._header_texts + self._percent_texts + list(self._marks.values()):
            text.setTextFormat(Qt.TextFormat.PlainText)
        labels = episode.task.query_y.tolist()
        columns: dict[int, int] = {}
        self.tiles, self._headers = [], []
        rows = sorted(set(labels))
        row_of = {label: row for row, label in enumerate(rows)}
        for index, label in enumerate(labels):
            column = columns.get(label, 0)
            columns[label] = column + 1
            rect = QRect(GRID_HEADER + column * (TILE_WIDTH + TILE_GAP), row_of[label] * (TILE_HEIGHT + TILE_GAP),
                         TILE_WIDTH, TILE_HEIGHT)
            pixmap = _thumbnail(episode.query_pixels[index])
            self.tiles.append(QueryTile(pixmap, label, episode.class_names[label], rect))
        self._headers = [(QRect(0, row_of[label] * (TILE_HEIGHT + TILE_GAP), GRID_HEADER, TILE_HEIGHT), label)
                         for label in rows]
        width = GRID_HEADER + max(columns.values(), default=0) * (TILE_WIDTH + TILE_GAP)
        self._size = QSize(width, len(rows) * (TILE_HEIGHT + TILE_GAP))
        self.setFixedSize(self._size)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self._size

    def show_step(self, probabilities: np.ndarray, correct: np.ndarray) -> None:
        """probabilities: [Q, n_way] of one step; correct: [Q] bool. Updates every tile and repaints once."""
        predicted = probabilities.argmax(1)
        for tile, row, label, right in zip(self.tiles, probabilities, predicted.tolist(), correct.tolist()):
            tile.predicted, tile.predicted_name = label, self.names[label]
            tile.probability, tile.correct, tile.probabilities = float(row[label]), bool(right), row
        self.update()

    def tile_at(self, point: QPoint) -> QueryTile | None:
        return next((tile for tile in self.tiles if tile.rect.contains(point)), None)

    def event(self, event: QEvent) -> bool:  # noqa: D102 - tooltips of the tiles, built when asked
        if event.type() == QEvent.Type.ToolTip:
            tile = self.tile_at(event.pos())
            if tile is None or tile.probabilities is None:
                QToolTip.hideText()
                event.ignore()
                return True
            ranking = np.argsort(-tile.probabilities)[:5]
            lines = "\n".join(f"{self.names[c]}: {tile.probabilities[c]:.1%}" for c in ranking)
            QToolTip.showText(event.globalPos(), f"true class: {tile.true_name}\n{lines}", self, tile.rect)
            return True
        return super().event(event)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(event.rect(), self.palette().window())
        for rect, label in self._headers:
            if rect.intersects(event.rect()):
                y = rect.center().y() - 8
                painter.fillRect(QRect(rect.x() + 2, y + 3, 10, 10), self.colours[label])
                painter.setPen(QColor("#202020"))
                painter.drawStaticText(rect.x() + 18, y, self._header_texts[label])
        for tile in self.tiles:
            if tile.rect.intersects(event.rect()):
                self._paint_tile(painter, tile)
        painter.end()

    def _paint_tile(self, painter: QPainter, tile: QueryTile) -> None:
        rect = tile.rect
        border = self._borders[tile.correct]
        painter.fillRect(rect, self._white)
        painter.setPen(border)
        painter.drawRect(rect.adjusted(1, 1, -1, -1))
        painter.drawPixmap(rect.x() + (rect.width() - tile.pixmap.width()) // 2, rect.y() + 4, tile.pixmap)
        if tile.predicted < 0:
            return
        colour = self.colours[tile.predicted]
        top = rect.y() + THUMB + 5
        painter.setFont(self._bold)
        painter.drawStaticText(rect.x() + 6, top, self._marks[tile.correct])
        painter.setPen(colour)
        painter.drawStaticText(rect.x() + 20, top, self._name_texts[tile.predicted])
        bar_width = rect.width() - 46
        painter.fillRect(rect.x() + 6, top + 19, bar_width, 6, self._track)
        painter.fillRect(rect.x() + 6, top + 19, int(bar_width * tile.probability + 0.5), 6, colour)
        painter.setFont(self.font())
        painter.setPen(self._grey)
        percent = self._percent_texts[int(round(100 * tile.probability))]
        painter.drawStaticText(rect.right() - 4 - int(percent.size().width()), top + 14, percent)


class EpisodeView(QWidget):
    """The support images by class on top, then the query images (one row per true class) as tiles."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.names: list[str] = []
        self.colours: list[str] = []
        self.grid = QueryGrid()
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._support: QWidget | None = None
        self.placeholder = QLabel("Press Run to adapt to a test episode; its support and query images appear here.")
        self.placeholder.setStyleSheet("color: #808080;")
        self.placeholder.setWordWrap(True)
        self.support_heading = self._heading("")
        self.query_heading = self._heading("Query set: prediction at the selected step (one row per true class)")
        self._layout.addWidget(self.placeholder)
        self._layout.addWidget(self.support_heading)
        self._support_slot = QVBoxLayout()
        self._layout.addLayout(self._support_slot)
        self._layout.addWidget(self.query_heading)
        self._layout.addWidget(self.grid)
        self._layout.addStretch(1)
        for widget in (self.support_heading, self.query_heading, self.grid):
            widget.hide()

    @property
    def tiles(self) -> list[QueryTile]:
        return self.grid.tiles

    def set_episode(self, episode: TestEpisode) -> None:
        """Build the thumbnails of ``episode`` (once per run of the loop)."""
        self.placeholder.hide()
        self.names = [short_class_name(name) for name in episode.class_names]
        self.colours = [PALETTE[i % len(PALETTE)] for i in range(len(self.names))]
        if self._support is not None:
            self._support_slot.removeWidget(self._support)
            self._support.deleteLater()
        self._support = self._support_strip(episode)
        self._support_slot.addWidget(self._support)
        self.support_heading.setText(f"Support set: {episode.n_shot} image(s) per class")
        self.grid.set_episode(episode, self.names, self.colours)
        for widget in (self.support_heading, self.query_heading, self.grid):
            widget.show()

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = QLabel(text)
        label.setStyleSheet("font-weight: bold; margin-top: 4px;")
        return label

    def _class_label(self, label: int, full_name: str, width: int) -> QLabel:
        """A coloured square and the class's short name, elided to ``width`` pixels (full name as tooltip)."""
        chip = QLabel()
        name = QFontMetrics(chip.font()).elidedText(self.names[label], Qt.TextElideMode.ElideRight, width - 18)
        chip.setText(f"<span style='color:{self.colours[label]}'>■</span> {name}")
        chip.setToolTip(full_name)
        chip.setMaximumWidth(width)
        return chip

    def _support_strip(self, episode: TestEpisode) -> QWidget:
        strip_widget = QWidget()
        strip = QGridLayout(strip_widget)
        strip.setContentsMargins(0, 0, 0, 0)
        strip.setHorizontalSpacing(12)
        strip.setVerticalSpacing(2)
        support_y = episode.task.support_y.tolist()
        per_row = max(1, CLASSES_PER_SUPPORT_ROW // max(1, episode.n_shot))
        width = max(88, episode.n_shot * (SUPPORT_THUMB + 2))
        for label, full_name in enumerate(episode.class_names):
            group = QHBoxLayout()
            group.setSpacing(2)
            for index in [i for i, y in enumerate(support_y) if y == label]:
                image = QLabel()
                image.setPixmap(_thumbnail(episode.support_pixels[index], SUPPORT_THUMB))
                image.setToolTip(f"support image of {full_name}")
                group.addWidget(image)
            group.addStretch(1)
            column, row = label % per_row, 2 * (label // per_row)
            strip.addWidget(self._class_label(label, full_name, width), row, column)
            strip.addLayout(group, row + 1, column)
        strip.setColumnStretch(min(per_row, len(episode.class_names)), 1)
        return strip_widget

    def show_step(self, probabilities: np.ndarray, correct: np.ndarray) -> None:
        """probabilities: [Q, n_way] of one step; correct: [Q] bool."""
        self.grid.show_step(probabilities, correct)


class TrajectoryPlot(pg.GraphicsLayoutWidget):
    """Query accuracy (top) and cross-entropy loss (bottom) against the inner step, with step markers.

    ``marker_dragged(step)`` fires when the user drags the step marker of either plot.
    """

    marker_dragged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.accuracy_plot = self.addPlot(row=0, col=0)
        self.loss_plot = self.addPlot(row=1, col=0)
        self.loss_plot.setXLink(self.accuracy_plot)
        for plot, title, label in ((self.accuracy_plot, "Accuracy after each inner step", "accuracy"),
                                   (self.loss_plot, "Cross-entropy loss", "loss")):
            plot.setTitle(title, size="10pt")
            plot.setLabel("left", label)
            plot.setLabel("bottom", "inner step")
            plot.getAxis("left").setWidth(48)
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.showGrid(x=False, y=True, alpha=0.25)
            plot.setMouseEnabled(x=False, y=False)
            plot.addLegend(offset=(-8, 8), labelTextSize="9pt")
        self.accuracy_plot.setYRange(0, 1.02, padding=0)
        dashed = Qt.PenStyle.DashLine
        self.query_accuracy = self.accuracy_plot.plot([], [], pen=pg.mkPen(ACCURACY_COLOUR, width=2), name="query")
        self.support_accuracy = self.accuracy_plot.plot([], [], pen=pg.mkPen(SUPPORT_COLOUR, width=1.5, style=dashed),
                                                        name="support")
        self.query_loss = self.loss_plot.plot([], [], pen=pg.mkPen(LOSS_COLOUR, width=2), name="query")
        self.support_loss = self.loss_plot.plot([], [], pen=pg.mkPen(SUPPORT_COLOUR, width=1.5, style=dashed),
                                                name="support")
        self.markers = [self._step_marker(plot) for plot in (self.accuracy_plot, self.loss_plot)]
        self.dots = [pg.ScatterPlotItem(size=9, pen=pg.mkPen("#ffffff", width=1.5), brush=pg.mkBrush(colour))
                     for colour in (ACCURACY_COLOUR, LOSS_COLOUR)]
        self.accuracy_plot.addItem(self.dots[0])
        self.loss_plot.addItem(self.dots[1])
        # labels (text hangs below the point) mid-height in the accuracy plot, high in the loss plot
        self.train_lines = [self._reference_line(plot, "#2ca02c", "training inner steps: {value:.0f}", position)
                            for plot, position in ((self.accuracy_plot, 0.5), (self.loss_plot, 0.93))]
        self.default_lines = [self._reference_line(plot, "#ff7f0e", "adapt default: {value:.0f}", position)
                              for plot, position in ((self.accuracy_plot, 0.37), (self.loss_plot, 0.8))]

    def _step_marker(self, plot: pg.PlotItem) -> pg.InfiniteLine:
        line = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=pg.mkPen("#303030", width=2),
                               hoverPen=pg.mkPen("#000000", width=3))
        line.setZValue(50)
        line.hide()
        line.sigDragged.connect(lambda item: self.marker_dragged.emit(int(round(item.value()))))
        plot.addItem(line, ignoreBounds=True)
        return line

    @staticmethod
    def _reference_line(plot: pg.PlotItem, colour: str, label: str, position: float) -> pg.InfiniteLine:
        pen = pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DotLine)
        line = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pen, label=label,
                               labelOpts={"position": position, "color": colour, "anchors": [(0, 0), (0, 0)],
                                          "fill": pg.mkBrush(255, 255, 255, 200)})
        line.hide()
        plot.addItem(line, ignoreBounds=True)
        return line

    def set_trajectory(self, trajectory: AdaptationTrajectory) -> None:
        steps = np.arange(trajectory.steps + 1)
        self.query_accuracy.setData(steps, trajectory.query_accuracy.numpy())
        self.support_accuracy.setData(steps, trajectory.support_accuracy.numpy())
        self.query_loss.setData(steps, trajectory.query_loss.numpy())
        self.support_loss.setData(steps, trajectory.support_loss.numpy())
        for lines, value in ((self.train_lines, trajectory.train_steps),
                             (self.default_lines, trajectory.default_steps)):
            for line in lines:
                shown = value is not None and value <= trajectory.steps
                line.setVisible(shown)
                if shown:
                    line.setValue(value)
        for marker in self.markers:
            marker.setBounds((0, trajectory.steps))
            marker.show()
        self.accuracy_plot.setXRange(0, max(1, trajectory.steps), padding=0.02)
        self.loss_plot.enableAutoRange(axis="y")

    def set_step(self, step: int) -> None:
        """Move the step markers and the dots on the query curves to ``step``."""
        for marker in self.markers:
            marker.setValue(step)
        for dot, curve in zip(self.dots, (self.query_accuracy, self.query_loss)):
            ys = curve.getData()[1]
            if ys is not None and 0 <= step < len(ys):
                dot.setData([step], [ys[step]])

    def n_points(self) -> int:
        data = self.query_accuracy.getData()[0]
        return 0 if data is None else len(data)


# -- the panel --------------------------------------------------------------------------------------
class ScrubberPanel(QWidget, BackgroundJobMixin):
    """The "Inner loop" view: pick a run and an episode, run its inner loop, scrub the steps."""

    progress_unit = "step"

    scrubbed = Signal(object)     # ScrubOutput, after it is shown
    error = Signal(str)

    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.main_window = window
        self.output: ScrubOutput | None = None
        self._records: dict[str, RunRecord] = {}
        self._probabilities: np.ndarray | None = None     # [T, Q, n_way]
        self._correct: np.ndarray | None = None            # [T, Q]
        self._handle: WorkerHandle | None = None
        self._running = False
        self._build()
        self.refresh_runs()
        window.runs_panel.selection_changed.connect(self.follow_selection)
        window.training_ended.connect(self._refresh_if_visible)

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("scrubber_run")
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(24)
        self.run_combo.setToolTip("Runs of algorithms with an inner loop (" + ", ".join(
            ALGORITHM_CONFIGS[name].title for name in inner_loop_algorithms()) + ") that have a checkpoint.")
        self.run_combo.currentIndexChanged.connect(self._run_changed)
        self.steps_spin = spin_box(1, MAX_STEPS, MIN_DEFAULT_STEPS, "N: inner steps to run and record "
                                     "(default: twice the algorithm's adaptation steps, at least 10).")
        self.seed_spin = spin_box(0, 1_000_000, 0, "Seed of the test episode (the same seed gives the same "
                                    "episode as evaluation's first episode).")
        self.n_way_spin = spin_box(2, 50, 5, "Classes in the test episode.")
        self.n_shot_spin = spin_box(1, 50, 1, "Support images per class.")
        self.n_query_spin = spin_box(1, 30, DEFAULT_QUERIES, "Query images per class.")
        self.new_episode_button = QPushButton("New episode")
        self.new_episode_button.setToolTip("Next seed: draw another test episode and run the inner loop on it.")
        self.new_episode_button.clicked.connect(self.new_episode)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("scrubber_run_button")
        self.run_button.setToolTip("Adapt to the episode for N steps and record every step.")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setObjectName("scrubber_progress")
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        self.status_label = QLabel("")
        self.status_label.setObjectName("scrubber_status")
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        run_row = QHBoxLayout()
        run_row.addWidget(QLabel("Run"))
        run_row.addWidget(self.run_combo, 1)
        run_row.addWidget(QLabel("Steps N"))
        run_row.addWidget(self.steps_spin)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress)
        episode_row = QHBoxLayout()
        for label, widget in (("Episode seed", self.seed_spin), ("N-way", self.n_way_spin),
                              ("K-shot", self.n_shot_spin), ("Queries per class", self.n_query_spin)):
            episode_row.addWidget(QLabel(label))
            episode_row.addWidget(widget)
        episode_row.addWidget(self.new_episode_button)
        episode_row.addStretch(1)

        self.plot = TrajectoryPlot()
        self.plot.setMinimumWidth(280)
        self.plot.marker_dragged.connect(lambda step: self.slider.setValue(step))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("scrubber_slider")
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.valueChanged.connect(self._set_step)
        self.step_label = QLabel("step –")
        self.step_label.setMinimumWidth(90)
        self.readout = QLabel("")
        self.readout.setObjectName("scrubber_readout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.episode_view = EpisodeView()
        scroll = QScrollArea()
        scroll.setWidget(self.episode_view)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumWidth(300)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.plot, 1)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.step_label)
        slider_row.addWidget(self.slider, 1)
        left_layout.addLayout(slider_row)
        left_layout.addWidget(self.readout)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(scroll)
        body.setStretchFactor(0, 1)
        body.setStretchFactor(1, 1)
        body.setSizes([520, 480])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(run_row)
        layout.addLayout(episode_row)
        layout.addWidget(self.status_label)
        layout.addWidget(body, 1)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(900, 600)

    # -- runs -----------------------------------------------------------------------------------
    def _refresh_if_visible(self, *_: Any) -> None:
        """After a training run: re-read the runs now if this view is on screen (else when it is shown),
        so that a hidden view adds no work to the GUI thread at the end of every run."""
        if self.isVisible():
            self.refresh_runs()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh_runs()

    def refresh_runs(self) -> None:
        """Re-read the run history: runs with an inner loop and a checkpoint (keeps the current choice)."""
        current = self.run_combo.currentData()
        records = [r for r in self.main_window.store.list_runs() if has_inner_loop(r.algorithm) and _checkpoint(r)]
        self._records = {str(r.run_dir): r for r in records}
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for record in records:
            title = ALGORITHM_CONFIGS[record.algorithm].title
            self.run_combo.addItem(f"{record.name}  ({title}, {record.steps_done:,} steps)", str(record.run_dir))
        index = self.run_combo.findData(current) if current is not None else -1
        self.run_combo.setCurrentIndex(index if index >= 0 else (0 if records else -1))
        self.run_combo.blockSignals(False)
        if self.run_combo.currentData() != current:
            self._run_changed()
        self._update_buttons()
        if not records:
            names = ", ".join(ALGORITHM_CONFIGS[n].title for n in inner_loop_algorithms())
            self.status_label.setText(f"No run with an inner loop yet. Train one of {names}; its runs appear "
                                      "here once they have a checkpoint.")

    def follow_selection(self, records: list[RunRecord]) -> None:
        """Select the run chosen in the Runs table (when exactly one is)."""
        if len(records) != 1:
            return
        record = records[0]
        if not has_inner_loop(record.algorithm):
            title = ALGORITHM_CONFIGS[record.algorithm].title if record.algorithm in ALGORITHM_CONFIGS \
                else record.algorithm
            self.status_label.setText(f"Run {record.name} uses {title}, which adapts without an inner loop; "
                                      "pick a MAML, Reptile or Baseline run to scrub its steps.")
            return
        index = self.run_combo.findData(str(record.run_dir))
        if index < 0:
            self.refresh_runs()
            index = self.run_combo.findData(str(record.run_dir))
        if index >= 0:
            self.run_combo.setCurrentIndex(index)
        else:
            self.status_label.setText(f"Run {record.name} has no checkpoint yet.")

    def selected_record(self) -> RunRecord | None:
        key = self.run_combo.currentData()
        return self._records.get(key) if key is not None else None

    def _run_changed(self) -> None:
        """A new run: episode shape and N default to its configuration."""
        record = self.selected_record()
        self._update_buttons()
        if record is None:
            return
        try:
            config = self.main_window.store.read_config(record.run_dir)
        except (EngineError, OSError) as error:
            self.status_label.setText(f"Cannot read the configuration of run {record.name}: {error}")
            return
        self.steps_spin.setValue(default_steps(inner_loop_steps(config.algorithm).test))
        self.n_way_spin.setValue(config.task.n_way)
        self.n_shot_spin.setValue(config.task.n_shot)
        self.status_label.setText(_describe_run(record, config))

    # -- running --------------------------------------------------------------------------------
    def new_episode(self) -> WorkerHandle | None:
        """Move to the next seed and run the loop on that episode."""
        self.seed_spin.setValue(self.seed_spin.value() + 1)
        return self.start()

    def start(self) -> WorkerHandle | None:
        record = self.selected_record()
        if record is None or self._running:
            return None
        checkpoint = _checkpoint(record)
        if checkpoint is None:
            self._failed(f"run {record.name} has no checkpoint file any more")
            return None
        job = scrub_job(record, checkpoint, self.main_window.device_panel.device(), n_way=self.n_way_spin.value(),
                        n_shot=self.n_shot_spin.value(), n_query=self.n_query_spin.value(),
                        seed=self.seed_spin.value(), steps=self.steps_spin.value())
        self.status_label.setText(f"Adapting run {record.name} to test episode {self.seed_spin.value()}…")
        return self._launch(job)

    def _update_buttons(self) -> None:
        has_run = self.selected_record() is not None
        self.run_button.setEnabled(has_run and not self._running)
        self.new_episode_button.setEnabled(has_run and not self._running)
        self.cancel_button.setEnabled(self._running)
        self.run_combo.setEnabled(self.run_combo.count() > 0)

    def _failed(self, message: str) -> None:
        self._finished()
        self.status_label.setText(f"<span style='color:{WRONG}'>Inner loop failed: {message}</span>")
        self.error.emit(message)
        self.main_window.show_error("Inner-loop scrubber", message)

    # -- results --------------------------------------------------------------------------------
    def _show(self, output: ScrubOutput) -> None:
        self._finished()
        self.output = output
        trajectory = output.trajectory
        self._probabilities = trajectory.query_probabilities.numpy()
        self._correct = trajectory.query_correct.numpy()
        self.plot.set_trajectory(trajectory)
        self.episode_view.set_episode(output.episode)
        episode = output.episode
        stopped = (f" Stopped at step {trajectory.steps} of {trajectory.requested_steps}."
                   if trajectory.stopped else "")
        self.status_label.setText(
            f"Run <b>{output.run_name}</b> ({output.algorithm_title}, checkpoint at step {output.checkpoint_step:,})"
            f" · test episode {episode.seed}: {episode.n_way}-way {episode.n_shot}-shot, "
            f"{len(trajectory.query_y)} query images · step 0 = {_step_zero_meaning(trajectory)}.{stopped}")
        self.slider.blockSignals(True)
        self.slider.setRange(0, trajectory.steps)
        self.slider.setTickInterval(max(1, trajectory.steps // 20))
        self.slider.setEnabled(True)
        self.slider.blockSignals(False)
        start = trajectory.default_steps if trajectory.default_steps <= trajectory.steps else trajectory.steps
        if self.slider.value() == start:
            self._set_step(start)
        else:
            self.slider.setValue(start)
        self.scrubbed.emit(output)

    def _set_step(self, step: int) -> None:
        """Show step ``step`` (precomputed: no model call)."""
        if self.output is None or self._probabilities is None or self._correct is None:
            return
        trajectory = self.output.trajectory
        step = int(min(max(step, 0), trajectory.steps))
        self.plot.set_step(step)
        self.step_label.setText(f"step {step} / {trajectory.steps}")
        self.readout.setText(
            f"Step {step}: query accuracy <b>{trajectory.query_accuracy[step].item():.1%}</b>, "
            f"query loss <b>{trajectory.query_loss[step].item():.3f}</b> · support accuracy "
            f"{trajectory.support_accuracy[step].item():.1%}, support loss {trajectory.support_loss[step].item():.3f}")
        self.episode_view.show_step(self._probabilities[step], self._correct[step])

    def shown_step(self) -> int:
        return self.slider.value()


def _checkpoint(record: RunRecord) -> Path | None:
    """The run's best checkpoint, else its last one, else None."""
    for path in (record.best_checkpoint, record.last_checkpoint):
        if path.is_file():
            return path
    return None


def _describe_run(record: RunRecord, config: Any) -> str:
    counts = inner_loop_steps(config.algorithm)
    trained = f"{counts.train} inner step(s) in training, " if counts.train is not None else ""
    return (f"Run <b>{record.name}</b>: {config.algorithm.title}, {trained}{counts.test} step(s) when adapting by "
            f"default. Press Run to watch a test episode being learned.")


def _step_zero_meaning(trajectory: AdaptationTrajectory) -> str:
    if trajectory.train_steps is None:
        return "the new head before fitting (random read-out)"
    return "the meta-learned initialisation"
